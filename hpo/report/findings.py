"""The MMoE paper's synthetic observations (docs/science.md, synthetic data), judged from a sweep's runs, in
words.

Each observation becomes a verdict (``holds``, ``partly``, ``does not hold``) with the effect sizes and tests
behind it, computed from the per-run test losses of a sweep over the task correlation ``p``:

1. both MoE models beat Shared-Bottom at every p (Figure 4): paired by run (run s of every architecture trains on
   the same dataset), the share of runs each MoE model wins, with a sign test, Holm-corrected over models and p;
2. MMoE's loss barely moves with p while OMoE's degrades as p falls (Figure 4): the change of the median loss from
   the highest to the lowest p, with a bootstrap 95% interval, paired by run where the runs at both values are
   the same runs (they are in hpo's sweeps: a run's data and initialisation do not depend on p), with the Wilcoxon
   signed-rank test of the per-run changes; each value's runs resampled on their own otherwise (:func:`change_by_run`). "Barely moves" needs
   positive evidence: the whole interval within +-10% of the median at the highest p (an equivalence margin);
   "degrades" needs the interval above 0;
3. Shared-Bottom's loss rises as p falls (Figure 3): Spearman's correlation of p and the loss over every run, and
   the same change of the median;
4. trainability (Figure 5): Shared-Bottom's tail of bad runs (90th percentile minus median) is the widest at every
   p; OMoE's tail widens at low p and MMoE's does not (bootstrap interval of the change).

Medians, not means: a few runs that fail to train move a mean by more than p does (the report shows both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from hpo.report.stats import holm, sign_test

__all__ = ["FLAT_MARGIN", "Change", "Finding", "change_by_run", "paired_changes", "paper_findings"]

LOSS = "mean over tasks"
NAMES = {"shared_bottom": "Shared-Bottom", "omoe": "OMoE", "mmoe": "MMoE"}
FLAT_MARGIN = 0.10  # "barely moves": the change's interval within +-10% of the median at the highest p


@dataclass(frozen=True)
class Finding:
    claim: str
    verdict: str  # "holds", "partly", "does not hold", "cannot be judged"
    evidence: str


def _runs(losses: pd.DataFrame, arch: str, p: float) -> np.ndarray:
    sel = losses[(losses.architecture == arch) & (losses.value == p)]
    return sel[LOSS].to_numpy(dtype=float)


def _change(
    a: np.ndarray, b: np.ndarray, stat: Callable[[np.ndarray], float], rng: np.random.Generator, n: int = 2000
) -> tuple[float, float, float]:
    """``stat(a) - stat(b)`` with a percentile bootstrap 95% interval (each sample resampled on its own)."""
    point = stat(a) - stat(b)
    ia = rng.integers(0, len(a), (n, len(a)))
    ib = rng.integers(0, len(b), (n, len(b)))
    boot = np.array([stat(a[i]) - stat(b[j]) for i, j in zip(ia, ib, strict=True)])
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(point), float(lo), float(hi)


@dataclass(frozen=True)
class Change:
    """``stat`` at the low p minus at the high p, with a bootstrap 95% interval; paired by run where every run
    trained at both values (run s of a sweep draws the same data weights, inputs and initialisation at every p,
    so its two losses differ by p alone), with the Wilcoxon signed-rank test of the per-run differences."""

    point: float
    lo: float
    hi: float
    paired: bool
    runs: int
    wilcoxon_p: float | None

    def says(self) -> str:
        """How the interval was made, in words, for the evidence."""
        if not self.paired:
            return "runs resampled within each p"
        test = f"; Wilcoxon signed-rank p = {self.wilcoxon_p:.2g}" if self.wilcoxon_p is not None else ""
        return f"paired by run, {self.runs} runs{test}"


def change_by_run(
    losses: pd.DataFrame,
    arch: str,
    lo: float,
    hi: float,
    stat: Callable[[np.ndarray], float],
    rng: np.random.Generator,
    n: int = 2000,
) -> Change:
    """:class:`Change` of ``arch``'s per-run loss from ``hi`` to ``lo``: runs resampled together (paired) when the
    two values share at least two runs, else each value's runs resampled on their own."""
    by_run = losses[losses.architecture == arch].pivot_table(index="seed", columns="value", values=LOSS)
    both = by_run[[lo, hi]].dropna() if lo in by_run and hi in by_run else pd.DataFrame()
    if len(both) < 2:
        point, c_lo, c_hi = _change(_runs(losses, arch, lo), _runs(losses, arch, hi), stat, rng, n)
        return Change(point, c_lo, c_hi, False, 0, None)
    a, b = both[lo].to_numpy(dtype=float), both[hi].to_numpy(dtype=float)
    idx = rng.integers(0, len(a), (n, len(a)))
    boot = np.array([stat(a[i]) - stat(b[i]) for i in idx])
    c_lo, c_hi = np.quantile(boot, [0.025, 0.975])
    d = a - b
    w = float(sps.wilcoxon(d).pvalue) if np.any(d != 0) else None
    return Change(stat(a) - stat(b), float(c_lo), float(c_hi), True, len(a), w)


def _median(x: np.ndarray) -> float:
    return float(np.median(x))


def _tail(x: np.ndarray) -> float:
    return float(np.quantile(x, 0.9) - np.median(x))


def _fmt(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 1e-3 else f"{x:.4f}"


def _moe_beats_sb(losses: pd.DataFrame, ps: list[float], moes: list[str]) -> Finding:
    tests = []
    for m in moes:
        for p in ps:
            sel = losses[losses.value == p].pivot_table(index="seed", columns="architecture", values=LOSS)
            d = (sel["shared_bottom"] - sel[m]).dropna().to_numpy()
            tests.append((m, p, float((d > 0).mean()), sign_test(d), float(np.median(d))))
    corrected = holm([t[3] for t in tests])
    won = [(t, q) for t, q in zip(tests, corrected, strict=True) if t[2] > 0.5 and q < 0.05]
    parts = []
    for m in moes:
        rows = [(t, q) for t, q in zip(tests, corrected, strict=True) if t[0] == m]
        shares = [t[2] for t, _ in rows]
        parts.append(
            f"{NAMES[m]} has the lower loss in {min(shares):.0%}-{max(shares):.0%} of paired runs across p "
            f"(sign test, Holm-corrected over the {len(tests)} tests of {len(moes)} models x {len(ps)} values of p: "
            f"p <= {max(q for _, q in rows):.2g}; median paired gap "
            f"{_fmt(min(t[4] for t, _ in rows))} to {_fmt(max(t[4] for t, _ in rows))} MSE)"
        )
    verdict = "holds" if len(won) == len(tests) else ("does not hold" if not won else "partly")
    lost = [
        f"{NAMES[t[0]]} at p = {t[1]:g}" for t, q in zip(tests, corrected, strict=True) if (t, q) not in won
    ]
    tail = f"; not significant: {', '.join(lost)}" if lost else ""
    return Finding(
        "Both MoE models beat Shared-Bottom at every p (Figure 4)", verdict, "; ".join(parts) + tail
    )


def _mmoe_flat_omoe_degrades(
    losses: pd.DataFrame, lo: float, hi: float, rng: np.random.Generator, margin: float = FLAT_MARGIN
) -> Finding:
    found = {}
    for m in ("mmoe", "omoe"):
        c = change_by_run(losses, m, lo, hi, _median, rng)
        found[m] = (c.point, c.lo, c.hi, _median(_runs(losses, m, hi)), c.says())
    mm, om = found["mmoe"], found["omoe"]
    mmoe_flat = -margin * mm[3] <= mm[1] and mm[2] <= margin * mm[3]
    omoe_worse = om[1] > 0
    sel = losses[losses.value == lo].pivot_table(index="seed", columns="architecture", values=LOSS)
    d = (sel["omoe"] - sel["mmoe"]).dropna().to_numpy()
    evidence = (
        f"From p = {hi:g} to p = {lo:g} the median loss of MMoE changes by {_fmt(mm[0])} ({mm[0] / mm[3]:+.0%}; "
        f"95% interval {_fmt(mm[1])} to {_fmt(mm[2])}, {mm[4]}) and OMoE's by {_fmt(om[0])} "
        f"({om[0] / om[3]:+.0%}; {_fmt(om[1])} to {_fmt(om[2])}, {om[4]}); at p = {lo:g} MMoE beats OMoE in {(d > 0).mean():.0%} of paired runs "
        f"(sign test p = {sign_test(d):.2g}, uncorrected); MMoE's change is "
        f"{'' if mmoe_flat else 'not '}shown to lie within +-{margin:.0%} (the study's flat_margin), OMoE's "
        f"{'is' if omoe_worse else 'is not'} shown to be a rise"
    )
    verdict = (
        "holds" if mmoe_flat and omoe_worse else ("partly" if mmoe_flat or omoe_worse else "does not hold")
    )
    return Finding(
        "MMoE's loss barely moves with p while OMoE's degrades as p falls (Figure 4)", verdict, evidence
    )


def _sb_rises(losses: pd.DataFrame, lo: float, hi: float, rng: np.random.Generator) -> Finding:
    sb = losses[losses.architecture == "shared_bottom"]
    rho, p_value = sps.spearmanr(sb.value, sb[LOSS])
    c = change_by_run(losses, "shared_bottom", lo, hi, _median, rng)
    change, c_lo, c_hi = c.point, c.lo, c.hi
    rises = rho < 0 and p_value < 0.05 and c_lo > 0
    medians = sb.groupby("value")[LOSS].median()
    evidence = (
        f"Spearman's rho of p and the loss over {len(sb)} runs = {rho:.3f} (p = {p_value:.2g}); the median loss "
        f"changes by {_fmt(change)} from p = {hi:g} to p = {lo:g} (95% interval {_fmt(c_lo)} to {_fmt(c_hi)}, "
        f"{c.says()}); "
        f"medians per p range {_fmt(medians.min())} to {_fmt(medians.max())}"
    )
    verdict = "holds" if rises else ("partly" if rho < 0 and p_value < 0.05 else "does not hold")
    return Finding("Shared-Bottom's loss rises as p falls (Figure 3)", verdict, evidence)


def _trainability(losses: pd.DataFrame, ps: list[float], rng: np.random.Generator) -> Finding:
    lo, hi = min(ps), max(ps)
    tails = {(m, p): _tail(_runs(losses, m, p)) for m in ("shared_bottom", "omoe", "mmoe") for p in ps}
    sb_widest = [p for p in ps if tails[("shared_bottom", p)] > max(tails[("omoe", p)], tails[("mmoe", p)])]
    omc = change_by_run(losses, "omoe", lo, hi, _tail, rng)
    mmc = change_by_run(losses, "mmoe", lo, hi, _tail, rng)
    om, mm = (omc.point, omc.lo, omc.hi), (mmc.point, mmc.lo, mmc.hi)
    parts_hold = [len(sb_widest) == len(ps), om[1] > 0, not mm[1] > 0]
    evidence = (
        f"The tail of bad runs (90th percentile minus median) is widest for Shared-Bottom at {len(sb_widest)} of "
        f"{len(ps)} values of p (Shared-Bottom {_fmt(min(tails[('shared_bottom', p)] for p in ps))} to "
        f"{_fmt(max(tails[('shared_bottom', p)] for p in ps))}); from p = {hi:g} to {lo:g} OMoE's tail changes by "
        f"{_fmt(om[0])} (95% interval {_fmt(om[1])} to {_fmt(om[2])}) and MMoE's by {_fmt(mm[0])} "
        f"({_fmt(mm[1])} to {_fmt(mm[2])}; {mmc.says()}): OMoE's {'is' if om[1] > 0 else 'is not'} shown to widen, MMoE's "
        f"{'is' if mm[1] > 0 else 'is not'}"
    )
    verdict = "holds" if all(parts_hold) else ("does not hold" if not any(parts_hold) else "partly")
    return Finding(
        "Trainability: Shared-Bottom has the widest spread; OMoE's widens at low p and MMoE's does not (Figure 5)",
        verdict,
        evidence,
    )


def paper_findings(
    losses: pd.DataFrame, key: str, *, seed: int = 0, margin: float = FLAT_MARGIN
) -> list[Finding]:
    """The paper's observations that this sweep can judge (a sweep over ``p`` with the models each names);
    ``margin``: the study's ``sweep.flat_margin``."""
    if key != "p" or losses.empty:
        return []
    rng = np.random.default_rng(seed)
    ps = sorted(float(v) for v in losses.value.unique())
    archs = set(losses.architecture)
    out: list[Finding] = []
    if len(ps) < 2:
        return out
    lo, hi = ps[0], ps[-1]
    moes = [m for m in ("mmoe", "omoe") if m in archs]
    if "shared_bottom" in archs and moes:
        out.append(_moe_beats_sb(losses, ps, moes))
    if {"mmoe", "omoe"} <= archs:
        out.append(_mmoe_flat_omoe_degrades(losses, lo, hi, rng, margin))
    if "shared_bottom" in archs:
        out.append(_sb_rises(losses, lo, hi, rng))
    if {"shared_bottom", "omoe", "mmoe"} <= archs:
        out.append(_trainability(losses, ps, rng))
    return out


def _reading(row: dict[str, object], alpha: float = 0.05) -> str:
    """``flat`` when the change's interval lies within +-margin (equivalence shown); ``rises`` / ``falls`` when the
    interval excludes 0 and the Holm-corrected test agrees (unpaired changes: the interval alone); ``not separated``
    otherwise (neither a change nor its absence is shown)."""
    lo, hi, band = float(row["ci95_low"]), float(row["ci95_high"]), float(row["margin"])  # type: ignore[arg-type]
    if -band < lo and hi < band:
        return "flat"
    holm_p = row.get("holm_p")
    significant = holm_p is None or float(holm_p) < alpha  # type: ignore[arg-type]
    if lo > 0 and significant:
        return "rises"
    if hi < 0 and significant:
        return "falls"
    return "not separated"


def paired_changes(losses: pd.DataFrame, *, margin: float = FLAT_MARGIN, seed: int = 0) -> pd.DataFrame:
    """Per architecture, the median loss at every swept value against the top of the sweep, paired by run where
    the runs are shared (:func:`change_by_run`): the change with its bootstrap 95% interval, how many runs have a
    higher loss, the Wilcoxon signed-rank p Holm-corrected over that architecture's values (the family is named
    in ``holm_family_size``), and the reading against the study's ``flat_margin`` (a fraction of the median at the
    top): ``flat`` only when the whole interval lies within it."""
    rows = []
    for arch in sorted(set(losses.architecture)):
        values = sorted(float(v) for v in losses[losses.architecture == arch].value.unique())
        if len(values) < 2:
            continue
        top, rng = values[-1], np.random.default_rng(seed)
        wide = losses[losses.architecture == arch].pivot_table(index="seed", columns="value", values=LOSS)
        band = margin * float(np.median(_runs(losses, arch, top)))
        arch_rows = []
        for v in values[:-1]:
            c = change_by_run(losses, arch, v, top, _median, rng)
            both = wide[[v, top]].dropna()
            higher = int((both[v] > both[top]).sum()) if c.paired else None
            arch_rows.append(
                {"architecture": arch, "from": top, "to": v, "runs": c.runs if c.paired else None,
                 "paired": c.paired, "median_change": c.point, "ci95_low": c.lo, "ci95_high": c.hi,
                 "runs_higher": higher, "wilcoxon_p": c.wilcoxon_p, "margin": band}
            )  # fmt: skip
        tested = [r for r in arch_rows if r["wilcoxon_p"] is not None]
        for r, ph in zip(tested, holm([float(r["wilcoxon_p"]) for r in tested]), strict=True):
            r["holm_p"], r["holm_family_size"] = ph, len(tested)
        rows += [r | {"reading": _reading(r)} for r in arch_rows]
    return pd.DataFrame(rows)
