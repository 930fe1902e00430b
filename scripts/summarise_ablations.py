"""One table and one figure over every ablation of the Figure-3 finding (issue 14) that has been run.

Each ablation (``studies/ablations/NAME.yaml``) is a sweep over p whose report wrote ``ablation_NAME_seed_losses.csv``,
``_findings.csv`` and ``_convergence.csv`` into one folder (``scripts/run_ablations.sh``). This reads them and, per
ablation, puts side by side: what it changed (the study file's own words), runs per p, the median test loss at each
p, the change of the median from p = 1 to p = 0.5 relative to p = 1 with its bootstrap interval (each p's runs
resampled on their own, and paired by run with the Wilcoxon signed-rank test, Holm-corrected over the ablations
summarised), Spearman's rho of p
and the loss, how many runs stopped at the epoch cap, and the report's verdict on "Shared-Bottom's loss rises as p
falls". The paper's Figure 3 shows the loss at p = 0.5 well above the loss at p = 1; an ablation "recovers the
pattern" when its verdict is "holds".

    python scripts/summarise_ablations.py REPORTS_FOLDER OUT_STEM   # writes OUT_STEM.csv and OUT_STEM.html
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from scipy import stats as sps

from hpo.report.escape import esc
from hpo.report.figures import _layout
from hpo.report.render import figures_html, render_page, table_html
from hpo.report.stats import holm

LOSS = "mean over tasks"
STUDIES = Path(__file__).resolve().parents[1] / "studies" / "ablations"


def changed(name: str) -> str:
    """What the ablation changes, from its study file's header ("...README.md): <this>")."""
    head = " ".join(
        line.lstrip("# ").strip() for line in (STUDIES / f"{name}.yaml").read_text().splitlines()[:3]
    )
    m = re.search(r"README\.md\): (.*?)(?: Everything else| Ablation|$)", head)
    return m.group(1).strip() if m else name


def relative_change(
    lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, n: int = 4000
) -> tuple[float, ...]:
    """(median(lo) / median(hi) - 1) with a percentile bootstrap 95% interval, each p resampled on its own."""
    point = np.median(lo) / np.median(hi) - 1
    boot = (
        np.median(rng.choice(lo, (n, len(lo))), axis=1) / np.median(rng.choice(hi, (n, len(hi))), axis=1) - 1
    )
    q_lo, q_hi = np.quantile(boot, [0.025, 0.975])
    return float(point), float(q_lo), float(q_hi)


def paired_relative_change(
    losses: pd.DataFrame, lo: float, hi: float, rng: np.random.Generator, n: int = 4000
) -> tuple[float, float, float, int]:
    """The same change with runs resampled together: run s of an ablation trains on the same data weights, inputs
    and initialisation at every p, so its two losses differ by p alone. Returns the interval, the Wilcoxon
    signed-rank p of the per-run differences (p = 0.5 against p = 1) and the number of paired runs."""
    by_run = losses.pivot_table(index="seed", columns="value", values=LOSS)[[lo, hi]].dropna()
    a, b = by_run[lo].to_numpy(dtype=float), by_run[hi].to_numpy(dtype=float)
    idx = rng.integers(0, len(a), (n, len(a)))
    boot = np.median(a[idx], axis=1) / np.median(b[idx], axis=1) - 1
    q_lo, q_hi = np.quantile(boot, [0.025, 0.975])
    return float(q_lo), float(q_hi), float(sps.wilcoxon(a - b).pvalue), len(a)


def summarise(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, medians = [], []
    for path in sorted(folder.glob("ablation_*_seed_losses.csv")):
        name = path.name.removeprefix("ablation_").removesuffix("_seed_losses.csv")
        losses = pd.read_csv(path)
        conv = pd.read_csv(folder / f"ablation_{name}_convergence.csv")
        found = pd.read_csv(folder / f"ablation_{name}_findings.csv")
        per_p = losses.groupby("value")[LOSS]
        ps = sorted(per_p.groups)
        rho, rho_p = sps.spearmanr(losses.value, losses[LOSS])
        rng = np.random.default_rng(0)  # per ablation: its interval does not depend on which others exist
        change, c_lo, c_hi = relative_change(
            losses.loc[losses.value == ps[0], LOSS].to_numpy(),
            losses.loc[losses.value == ps[-1], LOSS].to_numpy(),
            rng,
        )
        pc_lo, pc_hi, w_p, paired_runs = paired_relative_change(
            losses, ps[0], ps[-1], np.random.default_rng(0)
        )
        rows.append(
            {
                "ablation": name,
                "changed": changed(name),
                "runs_per_p": int(per_p.size().min()),
                **{f"median_p{p:g}": float(per_p.median()[p]) for p in ps},
                "relative_change_p1_to_p0.5": change,
                "change_ci95_low": c_lo,
                "change_ci95_high": c_hi,
                "spearman_rho": float(rho),
                "spearman_p": float(rho_p),
                "paired_runs": paired_runs,
                "paired_change_ci95_low": pc_lo,
                "paired_change_ci95_high": pc_hi,
                "wilcoxon_p": w_p,
                "runs_at_epoch_cap": int(conv.runs_at_cap.sum()),
                "runs": int(conv.runs.sum()),
                "verdict": str(found.verdict.iloc[0]),
            }
        )
        medians += [{"ablation": name, "p": p, "median": float(per_p.median()[p])} for p in ps]
    table = pd.DataFrame(rows)
    if len(table):  # one family: every ablation's paired test of p = 0.5 against p = 1
        table["wilcoxon_p_holm"] = holm(table.wilcoxon_p.tolist())
    return table, pd.DataFrame(medians)


def figure(medians: pd.DataFrame) -> go.Figure:
    """Median test loss against p, each ablation relative to its own median at p = 1 (the paper's pattern is a
    curve that rises to the left)."""
    fig = go.Figure()
    for i, (name, m) in enumerate(medians.groupby("ablation", sort=True)):
        m = m.sort_values("p")
        ref = float(m["median"].iloc[-1])
        fig.add_trace(
            go.Scatter(
                x=m.p,
                y=m["median"] / ref,
                mode="lines+markers",
                name=name,
                line_color=qualitative.Dark24[i % len(qualitative.Dark24)],
            )
        )
    fig.add_hline(y=1.0, line_dash="dot", line_color="gray")
    fig.update_xaxes(title_text="task correlation p")
    fig.update_yaxes(title_text="median test loss / median at p = 1")
    return _layout(
        fig, "Shared-Bottom: median test loss against p, per ablation (relative to its own p = 1)", 520
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="folder with the ablation reports' CSVs")
    ap.add_argument("out", help="output stem: writes OUT.csv and OUT.html")
    args = ap.parse_args()
    table, medians = summarise(Path(args.folder))
    table.to_csv(f"{args.out}.csv", index=False)
    shown = table.drop(columns=["changed"]).rename(columns=lambda c: c.replace("_", " "))
    body = (
        "<h1>Ablations of the MMoE paper's Figure 3: does Shared-Bottom's loss rise as p falls?</h1>"
        f"<p>{len(table)} ablations, each one setting changed from the baseline (studies/ablations/). The verdict is the "
        "sweep report's: <i>holds</i> needs Spearman's rho of p and loss below 0 (p &lt; 0.05) and the median's "
        "change from p = 1 to p = 0.5 above 0 with its bootstrap interval (each p's runs resampled on their own). "
        "The design pairs runs across p (run s sees the same data and initialisation at every p), so the paired "
        "interval and the Wilcoxon signed-rank test of the per-run changes are given too, Holm-corrected over "
        "the ablations in this table.</p>"
        f"{figures_html([('Median loss against p, relative to p = 1', figure(medians))])}"
        f"<h2>Per ablation</h2>{table_html(shown)}"
        "<h2>What each ablation changed</h2><ul>"
        + "".join(f"<li><b>{esc(r.ablation)}</b>: {esc(r.changed)}</li>" for r in table.itertuples())
        + "</ul>"
        f"<p class='muted'>{esc('Written by scripts/summarise_ablations.py from ' + args.folder)}</p>"
    )
    Path(f"{args.out}.html").write_text(render_page("ablations of Figure 3", body, 1), encoding="utf-8")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["changed"]))


if __name__ == "__main__":
    main()
