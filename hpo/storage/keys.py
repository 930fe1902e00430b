"""The names of the attributes hpo stores on Optuna studies and trials: one module, one namespace.

hpo writes every attribute as ``hpo.<name>`` (``hpo.ticket``, ``hpo.metrics``, ...), so its own keys never collide
with a user's or another tool's in the dashboard. Readers go through :func:`plain`, which gives the plain-named
view (``ticket``, ``metrics``) and also accepts the un-namespaced names that databases written before the
namespace hold, so existing databases still open.

Every name is declared here once, as a constant that writers and readers both use (``keys.key(keys.TICKET)``,
``keys.plain(t.user_attrs).get(keys.TICKET)``); tests/test_layering.py refuses an attribute name written as a string
literal anywhere else, so a renamed or misspelt attribute is an import error, not a silent ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NAMES", "PREFIX", "key", "plain", "tag"]  # and every attribute name's constant

PREFIX = "hpo."

# a tuning study's attributes (written when it is created, and by the settled rule)
SPEC = "spec"  # the resolved study spec it was tuned under
ARCHITECTURE = "architecture"  # the architecture it tunes
SPEC_NAME = "spec_name"  # the (sub-)study's name
DATASET = "dataset"  # the dataset's description (``info()``)
PROVENANCE = "provenance"  # where the data came from
CHANGES = "changes"  # definition changes accepted by --allow-changed
TICKETS_TARGET = "tickets_target"  # how many tickets the settled rule has queued so far
STOP_REASON = "stop_reason"  # why tuning stopped (settled, max, timeout), None while it runs
STOPPED_AT = "stopped_at"  # the ticket count it stopped at
TIMEOUT_AT = "timeout_at"  # when a study's timeout ran out
SETTLE_HISTORY = "settle_history"  # each judgement of the settled rule
BOUND_HITS = "bound_hits"  # the best configuration's parameters on a bound
SEED_SD = "seed_sd"  # the seed-to-seed sd the settled rule's tolerance comes from
SEED_SD_PROBE = "seed_sd_probe"  # the probe that measured it: trial, seeds, every value, seeds left out
SEED_SD_SUPERSEDED = "seed_sd_superseded"  # an earlier probe without per-seed values, measured again
SEED_SD_PARTIAL = "seed_sd_partial"  # a probe in progress: trial, first seed, the values finished so far
SPACE_EXPANSIONS = "space_expansions"  # the search ranges the settled rule widened (expand: true)

# a tuning trial's attributes
TICKET = "ticket"  # the ticket (queued slot) the trial runs
RESAMPLES = "resamples"  # fresh proposals a duplicate asked for
UNTRIED_POINT = "untried_point"  # the ticket carries an untried grid point
DUPLICATE_OF = "duplicate_of"  # an earlier trial with the same configuration
SAME_AS_FAILED = "same_as_failed"  # the earlier duplicate had failed
REUSED_FROM = "reused_from"  # the trial whose result was taken
SURPLUS = "surplus"  # a claim or trial that lost its ticket to another
TICKET_OWNER = "ticket_owner"  # the trial that owns the ticket
PROPOSAL_SECONDS = "proposal_seconds"  # the sampler's time for this proposal
WORKER_ID = "worker_id"  # the worker's database id
SAMPLER_SEED = "sampler_seed"  # the sampler seed derived from it
SAMPLER_VIEW = "sampler_view"  # the trials the GP saw as collapsed, and as what
MODEL_ORIGIN = "model_origin"  # built-in or the plugin file/module
MODEL_CONFIG = "model_config"  # the architecture's hyperparameters
TRAIN_CONFIG = "train_config"  # the TrainConfig it trained with
INIT_SEED = "init_seed"  # the initialisation seed
DATA_SEED = "data_seed"  # the data-order seed
VERSIONS = "versions"  # package versions
CODE_REVISION = "code_revision"  # the git revision of the code
KERNEL = "kernel"  # compiled kernels or the fallback, and why
DEFINITION_CHANGES = "definition_changes"  # the study's accepted changes when it ran
UNITS_PER_LAYER = "units_per_layer"  # hidden units at each depth
PARAMETER_COUNT = "parameter_count"  # trainable parameters
LIVE = "live"  # the running trial's worker and epoch
THREADS = "threads"  # CPU threads it trained with
METRICS = "metrics"  # split -> task -> metric of the best epoch
EPOCHS_RUN = "epochs_run"  # epochs trained
BEST_EPOCH = "best_epoch"  # the epoch selected
WALL_TIME = "wall_time"  # seconds of training
RESUMED_AFTER = "resumed_after"  # the epoch a stopped chunk's checkpoint took it up after
DEVICE = "device"  # where it trained
CURVE = "curve"  # the loss curve, one point per epoch
PRUNED_REASON = "pruned_reason"  # why it was pruned

# a retrain study's attributes, and its chunk trials'
TUNING_TRIAL = "tuning_trial"  # the tuning trial whose configuration is retrained (-1: the defaults)
TUNING_VALUES = "tuning_values"  # that trial's validation values
CHUNK_SIZE = "chunk_size"  # seeds per vectorised run
FRESH_DATA = "fresh_data"  # every seed draws its own synthetic dataset
CROSS = "cross"  # the crossed seed design, if any
DEFAULT = "default"  # the default configurations' retrain
REPLICATE = "replicate"  # the tuning replicate it belongs to
SEEDS = "seeds"  # a chunk's seeds
HELDOUT_SPLIT = "heldout_split"  # the held-out split a crossed chunk redrew
DATASET_SEEDS = "dataset_seeds"  # each seed's dataset seed (fresh data)
GATE_UTILISATION = "gate_utilisation"  # gate readings on the test split
REPLICAS = "replicas"  # replicas in the chunk's run
SELECTION = "selection"  # retrain.select: every candidate's probe, and which was chosen

# a select study's attributes (retrain.select), and its tickets'
CANDIDATES = "candidates"  # the tuning trials probed, best tuning value first, fixed when the probe is queued
CANDIDATE = "candidate"  # the tuning trial a ticket probes
PROBE_VALUES = "probe_values"  # its validation objective on each probe seed (NaN: diverged)
PROBE_DONE = (
    "probe_done"  # probe seed -> its value, written as each finishes (a killed ticket's retry reuses them)
)
PROBE_REUSED = "probe_reused"  # the probe seeds a ticket took from a killed ticket of the same candidate
# each probe seed's CPU thread count: a float sum's order, so a value's last bits, can depend on it
PROBE_THREADS = "probe_threads"

# ticket claims (hpo/storage/claims.py, on storages without SQL)
TRIAL = "trial"  # the claiming trial's number
TOKEN = "token"  # a claim's unique token

# kept by hpo's storage layer on storages without SQL (a gRPC proxy, a journal file)
SEED_RESULTS = "seed_results"  # a retrain chunk's per-seed rows (hpo.storage.results)
HEARTBEAT = "heartbeat"  # the running trial's last beat (hpo.storage.heartbeat)

# Optuna's own system attributes that hpo reads (written by Optuna, not by hpo)
OPTUNA_FAILED_TRIAL = "failed_trial"  # a retried trial's original (RetryFailedTrialCallback)
OPTUNA_FIXED_PARAMS = "fixed_params"  # the parameters enqueued with a WAITING trial

# every name above: what the layering test looks for outside this module
NAMES = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and k != "PREFIX" and isinstance(v, str)
)


def key(name: str) -> str:
    """The stored name of attribute ``name``."""
    return PREFIX + name


def tag(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every name namespaced, for ``enqueue_trial(user_attrs=...)`` and the like."""
    return {key(k): v for k, v in values.items()}


def plain(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The plain-named view of stored attributes: ``hpo.x`` read as ``x``; a legacy ``x`` where no ``hpo.x``."""
    out = {k: v for k, v in attrs.items() if not k.startswith(PREFIX)}
    out.update({k[len(PREFIX) :]: v for k, v in attrs.items() if k.startswith(PREFIX)})
    return out
