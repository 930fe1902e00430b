"""The ``hpo`` command line. Each command is a thin layer over the package; user mistakes (``HpoError``) become
one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from hpo.errors import ConfigError, HpoError, Interrupted, mask_secrets
from hpo.limits import MAX_SEEDS, MAX_TRIALS, MAX_WORKERS
from hpo.logs import duration
from hpo.search import interrupts


def _count(lo: int, hi: int) -> Any:
    """A command-line count checked against its allowed range, which the one-line error names."""

    def check(value: int | None) -> int | None:
        if value is not None and not lo <= value <= hi:
            raise typer.BadParameter(f"{value} is out of range; allowed: {lo} to {hi}")
        return value

    return check


@contextlib.contextmanager
def _resumable() -> Iterator[None]:
    """Ctrl-C or SIGTERM: one line saying what was re-queued and how to resume, exit code 128 + the signal (Typer
    turns a bare KeyboardInterrupt into a silent 130 before :func:`main` could see it)."""
    try:
        yield
    except Interrupted as exc:
        typer.echo(mask_secrets(one_line(str(exc))), err=True)
        raise typer.Exit(128 + interrupts.received()) from None


MAX_THREADS = 1024
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        callback=_count(1, MAX_THREADS),
        help="CPU threads per training process (default: the cores this process may use, shared among the "
        "workers on this machine); wins over training.threads",
    ),
]


def _fix_threads(threads: int | None) -> None:
    """``--threads``: fixed for this process and every worker it starts (they read it from the environment)."""
    if threads is not None:
        import os

        from hpo.cores import THREADS_ENV

        os.environ[THREADS_ENV] = str(threads)


def _check_bind(host: str, port: int, option: str) -> None:
    """Fail in one line, before any server starts, when ``host:port`` cannot be listened on (a port in use, an
    address that is not this machine's), naming the address and what to change."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        hint = (
            f"choose another {option}"
            if exc.errno == 98
            else "give --host an address of this machine (127.0.0.1 for this machine only, 0.0.0.0 for all)"
        )
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}") from None


AllowChangedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-changed",
        help="continue a study whose definition (data, spaces, objective, training, budget, seed) changed; "
        "the change is recorded on the study and every later trial",
    ),
]


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tune and compare multi-task learning architectures under one hidden-unit budget.",
)


@app.callback()
def _root(
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help="debug, info, warning or error (default $HPO_LOG_LEVEL or warning); JSON lines when not a terminal",
        ),
    ] = None,
) -> None:
    """hpo: Optuna studies, multi-seed retraining and HTML comparison reports for multi-task models."""
    from hpo.logs import LEVELS, configure

    if log_level is not None and log_level.lower() not in LEVELS:
        raise ConfigError(f"--log-level {log_level!r} is not a level; allowed: {', '.join(LEVELS)}")
    configure(log_level)


@app.command("models")
def models_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
    plugin: Annotated[
        list[str] | None, typer.Option(help="a plugin file or module to load first (repeatable)")
    ] = None,
) -> None:
    """List the registered architectures (built-in, installed through the hpo.models entry points, and
    --plugin ones), their tunable hyperparameters and where their code comes from."""
    from pathlib import Path

    from hpo.models import list_models, load_plugins

    load_plugins(list(plugin or []), Path.cwd())
    entries = list_models()
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="architectures")
    # names are never cut (they are what a study types); the other columns wrap, and a long word folds
    table.add_column(
        "name", style="bold", no_wrap=True, min_width=max((len(e.name) for e in entries), default=4)
    )
    table.add_column("description", overflow="fold")
    table.add_column("tunable parameters", overflow="fold")
    table.add_column("code", overflow="fold")
    for e in entries:
        table.add_row(e.name, e.description, ", ".join(p.name for p in e.params), f"{e.origin} ({e.route})")
    Console().print(table)


data_app = typer.Typer(no_args_is_help=True, help="Prepare, inspect and fetch datasets.")
app.add_typer(data_app, name="data")

DataDirOpt = Annotated[
    str | None, typer.Option("--data-dir", help="data directory (default: $HPO_DATA_DIR or ../shared/data)")
]


@data_app.command("info")
def data_info_cmd(
    dataset: Annotated[str, typer.Argument(help="census-income, synthetic, recsys, or a dataset YAML file")],
    group: Annotated[int, typer.Option(help="census task group (1 or 2)")] = 1,
    p: Annotated[float, typer.Option(help="synthetic: task correlation")] = 0.5,
    seed: Annotated[int, typer.Option(help="synthetic and recsys: seed")] = 0,
    relatedness: Annotated[
        float, typer.Option(help="recsys: cosine of click and purchase preferences")
    ] = 0.5,
    labels: Annotated[str, typer.Option(help="recsys: entire_space or on_click")] = "entire_space",
    sparse: Annotated[
        str, typer.Option(help="recsys: ID fields through embedding tables: none, ids or all")
    ] = "none",
    extra_fields: Annotated[int, typer.Option(help="recsys: more ID fields (user and item attributes)")] = 0,
    variant: Annotated[str, typer.Option(help="census: paper or leakage-free")] = "paper",
    drop: Annotated[
        list[str] | None, typer.Option(help="census: a further column to drop (repeatable)")
    ] = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rows per split, feature counts, one-hot width, positive rates, the labels' Pearson correlation, and per
    task the single feature column that predicts it best (leakage shows here before any tuning)."""
    from hpo.data.checks import summary_lines
    from hpo.data.leakage import single_feature_auc
    from hpo.data.registry import load_dataset

    ds = load_dataset(
        dataset,
        group=group,
        data_dir=data_dir,
        synthetic={"p": p, "seed": seed},
        recsys={
            "relatedness": relatedness,
            "labels": labels,
            "seed": seed,
            "sparse": sparse,
            "extra_fields": extra_fields,
        },
        variant=variant,
        drop=tuple(drop or ()),
    )
    info = ds.info()
    info["best_single_feature"] = {
        task: ranked[0] for task, ranked in single_feature_auc(ds).items() if ranked
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    for line in summary_lines(info):
        typer.echo(line)


@data_app.command("fetch")
def data_fetch_cmd(
    dataset: Annotated[str, typer.Argument(help="census-income")],
    data_dir: DataDirOpt = None,
    url: Annotated[str | None, typer.Option(help="archive (.zip) or base URL to download from")] = None,
) -> None:
    """Download a public dataset into the data directory and verify its checksums."""
    from hpo.data.census import UCI_URL, default_data_dir, fetch_census
    from hpo.errors import DataError

    if dataset != "census-income":
        raise DataError(f"unknown dataset {dataset!r} to fetch; known: census-income")
    target = data_dir or str(default_data_dir())
    out = fetch_census(target, url or UCI_URL)
    for stem, path in out.items():
        typer.echo(f"{stem}: {path} (checksum verified)")


UnfinishedOpt = Annotated[
    bool,
    typer.Option(
        "--unfinished",
        help="retrain the best configurations so far although tuning has trials queued or running, or a "
        "convergence budget not yet judged (refused without it)",
    ),
]
StorageOpt = Annotated[
    str | None, typer.Option("--storage", help="storage URL (default: $HPO_STORAGE or sqlite:///hpo.db)")
]


@app.command("init")
def init_cmd(
    folder: Annotated[str, typer.Argument(help="the folder to create (or fill) with a study of your own")],
    dataset: Annotated[
        str,
        typer.Option("--dataset", help="synthetic, census-income, or the path of a dataset YAML file"),
    ] = "synthetic",
) -> None:
    """Write a study folder (study, search spaces, README with the commands) that validates and runs as written."""
    from hpo.search.scaffold import init_study

    written = init_study(folder, dataset)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"next: hpo validate {written[0]}")


@app.command("validate")
def validate_cmd(
    path: Annotated[str, typer.Argument(help="a study, search-space or dataset YAML file")],
    samples: Annotated[int, typer.Option(help="random configurations to build per architecture")] = 200,
) -> None:
    """Check a file; report every problem at once. Studies: sample and build configurations under the budget."""
    from hpo.search.validate import validate_file

    for line in validate_file(path, samples=samples):
        typer.echo(line)


@app.command("run")
def run_cmd(
    study: Annotated[str, typer.Argument(help="study YAML")],
    storage: StorageOpt = None,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", callback=_count(1, MAX_TRIALS), help="trials per architecture")
    ] = None,
    workers: Annotated[
        int, typer.Option(callback=_count(0, MAX_WORKERS), help="worker processes (0: only queue the trials)")
    ] = 1,
    devices: Annotated[
        str, typer.Option(help="cpu, auto, or cuda:0,cuda:1,... (workers spread over them)")
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", help="no live progress")] = False,
    threads: ThreadsOpt = None,
    allow_changed: AllowChangedOpt = False,
) -> None:
    """Tune every architecture of a study: one Optuna study per architecture in the storage. Rerun to resume."""
    _fix_threads(threads)
    from hpo.search.launch import dismiss_workers, spawn_workers, worker_args

    # workers 1.. start now, held, so that their imports (seconds) overlap this process's own and its checks
    held = (
        spawn_workers(
            lambda i: [*worker_args(study, devices.split(","), i), "--held"],
            storage,
            workers - 1,
            first=1,
            sharing=workers,
            held=True,
        )
        if workers > 1
        else []
    )
    try:
        specs = _run_specs(study, storage, n_trials, workers, devices, quiet, allow_changed, held)
    finally:
        dismiss_workers(held)  # those never released (a refused input, a sweep): they leave, touching nothing
    from hpo.search.status import storage_status
    from hpo.storage.engine import mask_url, normalise_url

    url = normalise_url(storage)
    names = {spec.name for spec in specs}
    for entry in storage_status(url):
        if entry["spec"] in names and "best" in entry:
            where = f"{entry['spec']} " if len(specs) > 1 else ""
            typer.echo(f"{where}{entry['architecture']}: best {_best(entry)}")
    typer.echo(f"storage: {mask_url(url)}")


def _run_specs(
    study: str,
    storage: str | None,
    n_trials: int | None,
    workers: int,
    devices: str,
    quiet: bool,
    allow_changed: bool,
    held: list[Any],
) -> list[Any]:
    """``hpo run``'s work: each spec of the study file (several for a sweep) run in turn; the ``held`` workers
    serve a single spec only (a sweep's specs start their own workers)."""
    from hpo.config.study import load_study
    from hpo.search.runner import run_study
    from hpo.storage.engine import normalise_url

    specs = load_study(study).expand()
    if len(specs) > 1:
        from hpo.search.launch import dismiss_workers

        dismiss_workers(held)
    url = normalise_url(storage)
    with _resumable():
        for spec in specs:
            run_study(
                spec,
                url,
                n_trials=n_trials,
                workers=workers,
                devices=devices.split(","),
                quiet=quiet,
                allow_changed=allow_changed,
                held=held if len(specs) == 1 and held else None,
            )
    return specs


def _objective(entry: dict[str, Any]) -> tuple[str, str]:
    """A status entry's objective name and which way is better (``higher`` or ``lower``)."""
    name = (entry.get("objectives") or [None])[0] or "objective"
    return name, "higher" if (entry.get("directions") or ["maximize"])[0] == "maximize" else "lower"


def _best(entry: dict[str, Any]) -> str:
    """``valid y1 MSE 1.6439 (lower is better; trial 2)``: the value with its metric and direction."""
    name, direction = _objective(entry)
    return f"{name} {entry['best']['value']:.4f} ({direction} is better; trial {entry['best']['number']})"


def _seeds(entry: dict[str, Any]) -> str:
    """``mean test income AUC over 30 seeds 0.9455 (higher is better)``: a retraining's seeds, never its best."""
    name, direction = _objective(entry)
    # a chunk's value is the mean over its seeds ("... (mean over the chunk's seeds)"); this mean is over them all
    name = name.split(" (mean over")[0]
    seeds = entry["seeds"]
    return f"mean {name} over {seeds['trained']} seeds {seeds['mean']:.4f} ({direction} is better)"


def _running(running: list[dict[str, Any]]) -> str:
    """``trial 6 at epoch 5 (valid income AUC 0.9401)``: how far each running trial has come, as last written."""
    parts = []
    for r in running:
        at = f"trial {r['number']} at epoch {r['epoch']}" if "epoch" in r else f"trial {r['number']} starting"
        if isinstance(r.get("value"), float):
            # the trainer's name for the metric (``income.auc``, ``loss``) as the objective's reads: income AUC
            task, _, metric = str(r.get("metric")).rpartition(".")
            at += f" (valid {f'{task} {metric.upper()}' if task else metric} {r['value']:.4f})"
        parts.append(at)
    return ", ".join(parts)


def _left(w: dict[str, Any]) -> str:
    """``mean 6.1 min a trial over 14 (2.0 min to 9.5 min); 16 left (running or queued): about 1.6 h of one
    worker``: a running trial is counted whole, so the estimate errs long."""
    return (
        f"mean {duration(w['mean_s'])} a trial over {w['timed']} ({duration(w['min_s'])} to "
        f"{duration(w['max_s'])}); {w['queued']} left (running or queued): about {duration(w['left_s'])} of one worker"
    )


def _total(t: dict[str, Any]) -> str:
    """``in all: 283 left (running or queued) in 13 studies, about 21.3 h of one worker (10.7 h over the 2 trials
    running now); 30 more in 1 study with nothing timed yet``."""
    out = f"in all: {t['queued']} left (running or queued) in {t['studies']} studies, about {duration(t['left_s'])} of one worker"
    if t["left_s_over_running"] is not None and t["running"] > 1:
        out += f" ({duration(t['left_s_over_running'])} over the {t['running']} trials running now)"
    if t["untimed_studies"]:
        n = t["untimed_studies"]
        out += (
            f"; {t['untimed_queued']} more in {n} {'study' if n == 1 else 'studies'} with nothing timed yet"
        )
    return out


def _storage_hint(storage: str | None) -> str:
    """The ``--storage`` a hint must repeat (the user's own; none when it came from the default)."""
    from hpo.storage.engine import mask_url

    return f" --storage {mask_url(storage)}" if storage else ""


@app.command("worker")
def worker_cmd(
    study: Annotated[str, typer.Argument(help="study YAML (or, with --stored, the spec's name)")],
    storage: StorageOpt = None,
    stored: Annotated[
        bool,
        typer.Option("--stored", help="run the spec stored on the studies (no YAML needed on this machine)"),
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    worker_index: Annotated[
        int,
        typer.Option(
            callback=_count(0, MAX_WORKERS - 1),
            help="labels this worker's live line (sampler seeds come from the database)",
        ),
    ] = 0,
    deadline: Annotated[float | None, typer.Option(help="stop after this UNIX time")] = None,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
    threads: ThreadsOpt = None,
    allow_changed: AllowChangedOpt = False,
    held: Annotated[
        bool,
        typer.Option("--held", hidden=True, help="wait on stdin for the launcher's go (hpo run's children)"),
    ] = False,
) -> None:
    """Join a study from any machine: run its queued trials until none is left."""
    _fix_threads(threads)
    from hpo.config.study import load_study
    from hpo.search.processes import with_signals
    from hpo.search.studies import stored_spec
    from hpo.search.worker import prepare_worker, run_worker

    # started by `hpo run` before its checks (--held): get ready, then wait for its go, or leave at end of input
    if held:
        from hpo.search.launch import wait_for_go

        prepare_worker(device)
        go, deadline = wait_for_go(sys.stdin)
        if not go:
            return
    specs = [stored_spec(storage, study)] if stored else load_study(study).expand()
    for spec in specs:
        with _resumable():
            stats = with_signals(
                lambda spec=spec: run_worker(
                    spec,
                    storage,
                    device=device,
                    worker_index=worker_index,
                    deadline=deadline,
                    allow_changed=allow_changed,
                )
            )
        if not quiet:
            typer.echo(f"worker {worker_index}: {spec.name}: ran {stats.trials_run} trials {stats.by_arch}")


@app.command("status")
def status_cmd(
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Studies in the storage: architecture, trials by state, best value and parameters (for a retraining, the
    mean over its seeds so far instead: its best seed means nothing), the epoch each running trial has reached,
    and the time queued trials (a retrain's waiting chunks) are likely to take, at the mean of the timed ones, for
    one worker; a last line sums it over every study (and divides it over the trials running now)."""
    from hpo.search.status import storage_status, work_left

    entries = storage_status(storage)
    if as_json:
        typer.echo(json.dumps(entries, indent=2, default=str))
        return
    if not entries:
        typer.echo("no studies")
    for e in entries:
        counts = ", ".join(f"{k} {v}" for k, v in e["trials"].items() if v)
        best = f"; best {_best(e)}" if "best" in e else ""
        if e.get("seeds", {}).get("trained"):
            best = f"; {_seeds(e)}"
        left = f"; {_left(e['wall_time'])}" if "wall_time" in e else ""
        now = f"; {_running(e['running'])}" if e.get("running") else ""
        typer.echo(f"{e['study']}: {counts or 'no trials'}{best}{now}{left}")
    if (total := work_left(entries)) is not None and len(entries) > 1:
        typer.echo(_total(total))


@app.command("dashboard")
def dashboard_cmd(
    storage: StorageOpt = None,
    port: Annotated[int, typer.Option(callback=_count(1, 65535), help="port")] = 8080,
    host: Annotated[str, typer.Option(help="address to bind; 127.0.0.1 keeps it local")] = "127.0.0.1",
) -> None:
    """Start the real optuna-dashboard on the same storage (bound to 127.0.0.1 unless told otherwise)."""
    import optuna_dashboard

    from hpo.storage.engine import mask_url, normalise_url, open_storage

    st = open_storage(storage, heartbeat=False, create=False)
    _check_bind(host, port, "--port")
    typer.echo(f"optuna-dashboard on http://{host}:{port} for {mask_url(normalise_url(storage))}")
    optuna_dashboard.run_server(st, host=host, port=port)


@app.command("proxy")
def proxy_cmd(
    storage: StorageOpt = None,
    port: Annotated[int, typer.Option(callback=_count(1, 65535), help="port to serve on")] = 13000,
    host: Annotated[str, typer.Option(help="address to bind; 0.0.0.0 serves other machines")] = "127.0.0.1",
    create: Annotated[
        bool, typer.Option("--create", help="create the SQLite file if it does not exist")
    ] = False,
) -> None:
    """Serve a database to many workers through Optuna's gRPC storage proxy: workers then use
    --storage grpc://HOST:PORT and need no database connection of their own."""
    import optuna

    from hpo.storage.engine import mask_url, normalise_url
    from hpo.storage.proxy import served_storage

    url = normalise_url(storage)
    _check_bind(host, port, "--port")
    served = served_storage(
        url, create=create
    )  # refuses a storage that is not a SQL database  # Optuna's cache, and a trial's state changes one at a time
    typer.echo(
        f"gRPC storage proxy on {host}:{port} for {mask_url(url)}; workers: --storage grpc://{host}:{port}"
    )
    optuna.storages.run_grpc_proxy_server(served, host=host, port=port)


@app.command("retrain")
def retrain_cmd(
    study: Annotated[str, typer.Argument(help="study YAML (or, with --stored, the spec's name)")],
    seeds: Annotated[
        int | None,
        typer.Option(
            callback=_count(1, MAX_SEEDS), help="seeds per architecture (default: the spec's retrain.seeds)"
        ),
    ] = None,
    storage: StorageOpt = None,
    stored: Annotated[
        bool,
        typer.Option("--stored", help="use the spec stored on the studies (no YAML needed on this machine)"),
    ] = False,
    workers: Annotated[int, typer.Option(callback=_count(1, MAX_WORKERS), help="worker processes")] = 1,
    devices: Annotated[str, typer.Option(help="cpu, auto, or cuda:0,cuda:1,...")] = "auto",
    join: Annotated[
        bool,
        typer.Option(
            "--join", help="queue nothing: take the probe tickets and seed chunks another process queued"
        ),
    ] = False,
    worker_index: Annotated[
        int,
        typer.Option(callback=_count(0, MAX_WORKERS - 1), help="picks this worker's device from --devices"),
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
    threads: ThreadsOpt = None,
    unfinished: UnfinishedOpt = False,
) -> None:
    """Retrain each best configuration from scratch over many seeds once tuning has finished; rerun to resume."""
    _fix_threads(threads)
    from hpo.config.study import load_study
    from hpo.search.retrain import require_finished_tuning, retrain_specs, run_retrain_specs
    from hpo.search.studies import stored_spec

    specs = [stored_spec(storage, study)] if stored else retrain_specs(load_study(study))
    require_finished_tuning([] if join or unfinished else specs, storage)  # every spec before any trains
    with _resumable():
        joined = run_retrain_specs(
            specs, storage, seeds=seeds, workers=workers, devices=devices.split(","), worker_index=worker_index,
            join_only=join, stored=stored,
        )  # fmt: skip
    if join and not any(joined):
        from hpo.storage.engine import mask_url, normalise_url

        raise ConfigError(
            f"nothing of {specs[0].name} is queued for retraining in {mask_url(normalise_url(storage))}; "
            f"queue it first with `hpo retrain {study}{_storage_hint(storage)}` (without --join)"
        )
    if not quiet:
        typer.echo(
            f"retraining of {len(specs[0].architectures)} architectures x {len(specs)} studies done; "
            f"next: hpo report {study}{_storage_hint(storage)}"
        )


@app.command("report")
def report_cmd(
    study: Annotated[str, typer.Argument(help="study YAML")],
    out: Annotated[str | None, typer.Option(help="HTML file (default reports/NAME.html)")] = None,
    storage: StorageOpt = None,
    from_tables: Annotated[
        str | None,
        typer.Option(
            "--from-tables", help="folder written by `hpo export`: report from it instead of a storage"
        ),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="a progress report of a study still running: architectures and replicates not started yet "
            "are named, not an error",
        ),
    ] = False,
) -> None:
    """Write the self-contained HTML comparison report, and its tables as CSV beside it. Before the retraining it
    is a progress report: how settled each architecture's tuning is, and no verdict."""
    from hpo.config.study import load_study
    from hpo.report.html import write_report
    from hpo.report.output import staged_folder

    spec = load_study(study)
    final = Path(out or f"reports/{spec.name}.html")
    with staged_folder(final.parent) as stage:  # the page and its CSVs appear whole or not at all
        if spec.sweep is not None:
            from hpo.report.sweep import write_sweep_report

            if partial:
                raise ConfigError(
                    "--partial: a sweep's report has no progress form; report it when it has run"
                )
            write_sweep_report(spec, stage / final.name, storage, tables=from_tables)
        else:
            write_report(spec, stage / final.name, storage, tables=from_tables, partial=partial)
    typer.echo(f"report: {final}")


@app.command("export")
def export_cmd(
    study: Annotated[str, typer.Argument(help="study YAML")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    out: Annotated[str, typer.Option(help="output directory")] = "reports",
    storage: StorageOpt = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial", help="export what exists of a study still running (later replicates may not)"
        ),
    ] = False,
) -> None:
    """Write the study's results as a folder of tables (CSV or Parquet) and one JSON file of attributes per
    sub-study: everything `hpo report --from-tables` needs to render the report again without the database."""
    from hpo.config.study import load_study
    from hpo.report.collect import export
    from hpo.report.output import staged_folder

    skipped: list[str] = []
    with staged_folder(out) as stage:  # every table appears whole or not at all
        written = export(load_study(study), storage, stage, fmt, partial=partial, skipped=skipped)
    for path in written:
        typer.echo(f"wrote {Path(out) / path.relative_to(stage)}")
    if skipped:
        typer.echo(f"not yet in the storage, left out: {', '.join(skipped)}")


@app.command("demo")
def demo_cmd(
    data_dir: DataDirOpt = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    storage: Annotated[str, typer.Option(help="storage URL")] = "sqlite:///hpo-demo.db",
    out: Annotated[str, typer.Option(help="HTML report")] = "reports/demo.html",
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """The main job: tune Shared-Bottom, MMoE and PLE on census-income, retrain over seeds, write the report."""
    from pathlib import Path

    from hpo.demo import run_demo

    with _resumable():
        run_demo(storage=storage, out=Path(out), device=device, data_dir=data_dir, quiet=quiet)


_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(message: str) -> str:
    """The message with every line-breaking character escaped (a file name may hold one), so it stays one line."""
    return "".join(c.encode("unicode_escape").decode() if c in _LINE_BREAKS else c for c in message)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Every error a user can cause — ours and the command line's — is one line on stderr (URL
    passwords masked) with a non-zero exit; anything else is a bug and keeps its traceback."""
    try:
        rv = app(args=argv, prog_name="hpo", standalone_mode=False)
    except HpoError as exc:
        typer.echo(f"error: {mask_secrets(one_line(str(exc)))}", err=True)
        return 2
    except Interrupted as exc:
        typer.echo(mask_secrets(one_line(str(exc))), err=True)
        return 128 + interrupts.received()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 128 + interrupts.received()
    except Exception as exc:
        from hpo.storage.engine import describe_storage_fault

        if (fault := describe_storage_fault(exc)) is not None:
            typer.echo(f"error: {mask_secrets(one_line(fault))}", err=True)
            return 2
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # the command line's usage errors
            msg = mask_secrets(one_line(exc.format_message()))
            typer.echo(f"error: {msg} (see hpo --help)", err=True)
            return int(exc.exit_code) or 2
        if type(exc).__name__ == "Abort":
            typer.echo("aborted", err=True)
            return 1
        raise
    return rv if isinstance(rv, int) else 0


_SIGNAL_EXITS = {128 + signal.SIGINT: signal.SIGINT, 128 + signal.SIGTERM: signal.SIGTERM}


def entry() -> None:
    """The ``hpo`` command: :func:`main`, and a command stopped by Ctrl-C or SIGTERM, once it has cleaned up and
    said so, ends killed by that signal, as an untrapped process would (and as Python itself ends on an unhandled
    Ctrl-C). A calling shell then sees 130 or 143 and, in a loop or script, stops as well instead of going on to
    the next command. The kill is the last exit handler, after worker threads are joined and the log flushed, and
    it also makes the ending not depend on whether an extension happened to run code when the signal landed
    (CPython then flags the interrupt as unhandled and would itself end by SIGINT, even for a SIGTERM)."""
    code = main()
    signum = _SIGNAL_EXITS.get(code)
    if signum is not None:

        def die() -> None:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        atexit.register(die)
    sys.exit(code)


if __name__ == "__main__":
    entry()
