"""``<section id="selection">``: how the configuration each architecture retrained was chosen.

By default it is the best tuning trial, which trained once from one seed: a configuration that trains from some
starting weights and not from others can win on its luckiest draw, and only the retraining shows it. With
``retrain.select`` the best few configurations were trained again on a handful of fresh seeds (validation split
only) and the best mean was retrained; this section lays out every candidate's probe, so a reader sees what was
chosen over what, and by how much.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from hpo.report.collect import ReportData
from hpo.report.escape import esc
from hpo.report.render import table_html
from hpo.report.section import Context, Draw, Section, Tables
from hpo.storage import keys

__all__ = ["SELECTION", "selection_frame"]


def _attrs(data: ReportData) -> dict[tuple[int, str], dict[str, Any]]:
    """Each (replicate, architecture)'s retrain study attributes, in the study's architecture order."""
    attrs = data.retrains_by_replicate
    order = [a.name for a in data.spec.architectures]
    return dict(sorted(attrs.items(), key=lambda kv: (order.index(kv[0][1]), kv[0][0])))


def selection_frame(data: ReportData) -> pd.DataFrame:
    """One row per probed candidate: its tuning value, its probe seeds' mean, lowest and highest validation
    objective, how many diverged, and whether it was retrained."""
    rows = []
    for (rep, arch), attrs in _attrs(data).items():
        record = attrs.get(keys.SELECTION)
        if not record:
            continue
        for rank, c in enumerate(record["candidates"], start=1):
            values = np.asarray(c.get("probe_values") or [], dtype=float)
            finite = values[np.isfinite(values)]
            rows.append(
                {
                    "architecture": arch,
                    "replicate": rep,
                    "tuning_rank": rank,
                    "tuning_trial": c["trial"],
                    "tuning_value": c["tuning_value"],
                    "probe_mean": math.nan if c.get("probe_mean") is None else c["probe_mean"],
                    "probe_lowest": float(finite.min()) if len(finite) else math.nan,
                    "probe_highest": float(finite.max()) if len(finite) else math.nan,
                    "probe_seeds": len(values),
                    "diverged": int(np.isnan(values).sum()),
                    "retrained": bool(c["chosen"]),
                }
            )
    return pd.DataFrame(rows)


def _summary(frame: pd.DataFrame) -> str:
    """Where the probe changed the choice, and by how much the tuned best fell short on fresh seeds."""
    groups = list(frame.groupby(["architecture", "replicate"], sort=False))
    changed = []
    for (arch, rep), g in groups:
        chosen, first = g[g.retrained].iloc[0], g.iloc[0]
        if chosen.tuning_trial != first.tuning_trial:
            label = f"{arch}" + (f" (replicate {rep})" if frame.replicate.nunique() > 1 else "")
            changed.append(
                f"{label}: trial {int(chosen.tuning_trial)} (tuning rank {int(chosen.tuning_rank)}, probe mean "
                f"{chosen.probe_mean:.4f}) over the best tuning trial {int(first.tuning_trial)} (tuning "
                f"{first.tuning_value:.4f}, probe mean {first.probe_mean:.4f})"
            )
    if not changed:
        return (
            f"In all {len(groups)} architecture-replicates the best tuning trial also had the best probe mean: "
            "the retrained configurations are the ones tuning picked."
        )
    return (
        f"In {len(changed)} of {len(groups)} architecture-replicates the probe retrained another configuration "
        f"than the best tuning trial: {'; '.join(changed)}."
    )


def _html(ctx: Context, tables: Tables, draw: Draw) -> str:
    frame = tables["selection"]
    head = '<section id="selection"><h2>How the retrained configurations were chosen</h2>'
    if frame.empty:
        return (
            f'{head}<p class="muted">Each architecture retrained its best tuning trial, a configuration trained '
            "once from one seed. A configuration that learns from some initialisations and not from others can "
            "win tuning on one lucky draw; <code>retrain: {select: {candidates: 3, seeds: 4}}</code> trains the "
            "best few again on fresh seeds (validation split only) and retrains the best mean.</p></section>"
        )
    select = ctx.spec.retrain.select
    seeds = f"{select.seeds} fresh seeds" if select is not None else "fresh seeds"
    return (
        f"{head}<p>The best {int(frame.groupby(['architecture', 'replicate']).size().max())} configurations of "
        f"each tuning, by tuning value (one trial, one seed), were trained again on {esc(seeds)} apart from every "
        "tuning and retrain seed, scored on the validation split (the test split stays unseen), and the best "
        "mean was retrained; a diverged seed counts at the chance level. "
        f"{esc(_summary(frame))}</p>{table_html(frame)}</section>"
    )


SELECTION = Section("selection", lambda ctx: {"selection": selection_frame(ctx.data)}, _html)
