"""Every number in the tables of ``docs/results/README.md`` is checked against the CSVs beside it: a reviewer
reads the README, and a table that drifted from its data (a rerun, a hand edit) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
NAMES = {
    "Single-Task": "single_task",
    "Shared-Bottom": "shared_bottom",
    "OMoE": "omoe",
    "MMoE": "mmoe",
    "L2-Constrained": "l2_constrained",
    "Cross-Stitch": "cross_stitch",
    "Tensor-Factorization": "tensor_factorization",
    "CGC": "cgc",
    "PLE": "ple",
    "DSelect-k": "dselect_k",
    "AdaTT": "adatt",
    "ESMM": "esmm",
    "AITM": "aitm",
}
NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"


def parse_tables(lines: list[str], *, keep_bold: bool = False) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table in ``lines``: its header cells and rows of cells."""
    out: list[tuple[list[str], list[list[str]]]] = []
    current: tuple[list[str], list[list[str]]] | None = None
    for line in [*lines, ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            cells = cells if keep_bold else [c.replace("**", "") for c in cells]
            if current is None:
                current = (cells, [])
            elif not set("".join(cells)) <= set("-: "):
                current[1].append(cells)
        elif current is not None:
            out.append(current)
            current = None
    return out


def tables() -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table of the README (bold marks removed)."""
    return parse_tables((RESULTS / "README.md").read_text().splitlines())


def table(first_header: str, second_header: str) -> list[list[str]]:
    found = [rows for head, rows in tables() if head[:2] == [first_header, second_header]]
    assert found, f"no table headed {first_header} | {second_header}"
    return found[0]


def close(shown: str, value: float) -> None:
    """``shown`` is ``value`` rounded to the digits the README prints."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    assert float(shown) == pytest.approx(round(value, decimals), abs=0.6 * 10**-decimals), (shown, value)


def interval(cell: str) -> tuple[str, str, str]:
    m = re.match(rf"({NUMBER}) \[({NUMBER}), ({NUMBER})\]", cell)
    assert m, cell
    return m.group(1), m.group(2), m.group(3)


@pytest.mark.parametrize(("group", "tasks"), [(1, ("income", "marital")), (2, ("education", "marital"))])
def test_census_tables_match_their_csvs(group: int, tasks: tuple[str, str]) -> None:
    comp = pd.read_csv(RESULTS / f"paper_census_group{group}_quick_comparison.csv")
    cost = pd.read_csv(RESULTS / f"paper_census_group{group}_quick_cost.csv").set_index("architecture")
    rows = table("architecture", tasks[0])
    assert len(rows) == comp.architecture.nunique()  # every architecture of the run, none left out
    for name, *cells, params in rows:
        arch = NAMES[name]
        for task, cell in zip(tasks, cells, strict=True):
            r = comp[(comp.architecture == arch) & (comp.task == task)].iloc[0]
            for shown, value in zip(interval(cell), (r["mean"], r.ci95_low, r.ci95_high), strict=True):
                close(shown, value)
            if m := re.search(rf"median ({NUMBER})", cell):
                close(m.group(1), r["median"])
        assert int(params.replace(",", "")) == cost.loc[arch, "parameters"]
        best = {task: comp[comp.task == task]["mean"].max() for task in tasks}
    for task, cell_index in zip(tasks, (1, 2), strict=True):  # the bold mark sits on each column's best mean
        raw = [r for r in (RESULTS / "README.md").read_text().splitlines() if r.startswith("| ")]
        bold = [
            line.split("|")[1].strip()
            for line in raw
            if line.split("|")[cell_index + 1].strip().startswith("**")
        ]
        winners = {NAMES[b] for b in bold if b in NAMES}
        top = comp[(comp.task == task) & (comp["mean"] == best[task])].architecture.iloc[0]
        assert top in winners, (task, top, winners)


def section_tables(heading: str) -> list[tuple[list[str], list[list[str]]]]:
    """The tables (header cells, rows) under the README section whose ``## `` heading starts with ``heading``."""
    text = (RESULTS / "README.md").read_text()
    parts = re.split(r"^## ", text, flags=re.M)
    found = [p for p in parts if p.startswith(heading)]
    assert found, f"no section headed {heading!r}"
    return parse_tables(found[0].splitlines(), keep_bold=True)


@pytest.mark.parametrize(
    ("stem", "heading", "tasks"),
    [
        ("paper_census_group1_cpu", "Group 1, epochs tuned", ("income", "marital")),
        (
            "paper_census_group1_leakage_free_cpu",
            "Group 1, leakage-free, epochs tuned",
            ("income", "marital"),
        ),
        ("paper_census_group2_cpu", "Group 2, epochs tuned", ("education", "marital")),
    ],
)
def test_epochs_tuned_census_tables_match_their_csvs(stem: str, heading: str, tasks: tuple[str, str]) -> None:
    """The CPU-size census runs with epochs tuned: the comparison table (intervals, bold best, parameters) and the
    chosen configurations (tuned epochs, epochs run, learning rate, units, trials, bounds) against their CSVs."""
    comp = pd.read_csv(RESULTS / f"{stem}_comparison.csv")
    cost = pd.read_csv(RESULTS / f"{stem}_cost.csv").set_index("architecture")
    trials = pd.read_csv(RESULTS / f"{stem}_trials.csv")
    searched = pd.read_csv(RESULTS / f"{stem}_searched.csv").set_index("architecture")
    found = {tuple(head[:2]): rows for head, rows in section_tables(heading)}
    rows = found[("architecture", tasks[0])]
    assert len(rows) == comp.architecture.nunique() == 11
    for name, *cells, params in rows:
        arch = NAMES[name]
        for task, cell in zip(tasks, cells, strict=True):
            r = comp[(comp.architecture == arch) & (comp.task == task)].iloc[0]
            bold = cell.startswith("**")
            cell = cell.replace("**", "")
            for shown, value in zip(interval(cell), (r["mean"], r.ci95_low, r.ci95_high), strict=True):
                close(shown, value)
            if m := re.search(rf"median ({NUMBER})", cell):
                close(m.group(1), r["median"])
            assert bold == (r["mean"] == comp[comp.task == task]["mean"].max()), (arch, task)
        assert int(params.replace(",", "")) == cost.loc[arch, "parameters"]
    assert (searched.space_ceiling == 256).all() and (searched.max_units_per_layer_used <= 256).all()
    rows = found[("architecture", "tuned epochs")]
    assert len(rows) == 11
    for name, epochs, run, lr, units, n_trials, bound in rows:
        arch = NAMES[name]
        c = cost.loc[arch]
        t = trials[(trials.architecture == arch) & (trials.number == c.tuned_trial)].iloc[0]
        assert int(epochs) == int(t.param_epochs)
        close(run, c.mean_epochs)
        assert float(lr) == float(f"{t.param_lr:.2g}")
        assert units == str(c.units_per_layer)
        assert int(n_trials) == searched.loc[arch, "complete_trials"]
        want = searched.loc[arch, "best_on_bound"]
        assert bound == ("-" if pd.isna(want) or not str(want) else str(want))


@pytest.mark.parametrize(
    ("first", "stem", "runs"),
    [("p", "paper_synthetic_correlation", 200), ("stream p", "capacity_figure4", 100)],
)
def test_synthetic_figure4_table_matches_its_csv(first: str, stem: str, runs: int) -> None:
    """Figure 4 at full size (fixed rows) and in the capacity regime (a stream): mean, interval and median."""
    comp = pd.read_csv(RESULTS / f"{stem}_comparison.csv")
    comp = comp[comp.task == "mean over tasks"]
    rows = table(first, "Shared-Bottom")
    assert [float(r[0]) for r in rows] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    for p, *cells in rows:
        for arch, cell in zip(("shared_bottom", "omoe", "mmoe"), cells, strict=True):
            r = comp[(comp.architecture == arch) & np.isclose(comp.p, float(p))].iloc[0]
            assert r.seeds == runs
            for shown, value in zip(interval(cell), (r["mean"], r.ci95_low, r.ci95_high), strict=True):
                close(shown, value)
            close(re.search(rf"median ({NUMBER})", cell).group(1), r["median"])  # type: ignore[union-attr]


def test_synthetic_figure3_table_matches_its_csv() -> None:
    comp = pd.read_csv(RESULTS / "paper_synthetic_shared_bottom_comparison.csv")
    comp = comp[comp.task == "mean over tasks"].set_index("p")
    rows = {r[0]: r[1:] for r in table("p", "0.5")}
    ps = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    for p, cell in zip(ps, rows["mean [95% CI]"], strict=True):
        for shown, value in zip(interval(cell), comp.loc[p, ["mean", "ci95_low", "ci95_high"]], strict=True):
            close(shown, value)
    for p, cell in zip(ps, rows["median"], strict=True):
        close(cell, comp.loc[p, "median"])


@pytest.mark.parametrize(
    ("first", "stem"), [("p", "paper_synthetic_correlation"), ("stream p", "capacity_figure4")]
)
def test_paired_win_counts_and_sign_tests_match_the_seed_losses(first: str, stem: str) -> None:
    """Paired by run: wins, the sign test's p, and (where shown) the median per-run difference with its percentile
    bootstrap interval (4,000 resamples of runs, a generator seeded 0 for each cell)."""
    losses = pd.read_csv(RESULTS / f"{stem}_seed_losses.csv")
    wide = losses.pivot_table(index=["value", "seed"], columns="architecture", values="mean over tasks")
    pairs = (("mmoe", "shared_bottom"), ("omoe", "shared_bottom"), ("mmoe", "omoe"))
    signed = rf"[+-]?{NUMBER[2:]}"
    for p, *cells in table(first, "MMoE < Shared-Bottom"):
        at = wide.loc[float(p)]
        for (a, b), cell in zip(pairs, cells, strict=True):
            m = re.match(rf"(\d+)/(\d+), p = ({NUMBER})(?:; ({signed}) \[({signed}), ({signed})\])?$", cell)
            assert m, cell
            wins, n = int((at[a] < at[b]).sum()), int((at[a] != at[b]).sum())
            assert (int(m.group(1)), int(m.group(2))) == (wins, n), (p, a, b)
            pv = sps.binomtest(wins, n, 0.5).pvalue
            shown = m.group(3)
            digits = len(re.sub(r"\D", "", re.sub(r"e.*", "", shown)).lstrip("0")) or 1  # significant digits
            assert float(shown) == float(f"{pv:.{digits}g}"), (p, a, b, shown, pv)
            if m.group(4):
                x = (at[a] - at[b]).to_numpy()
                rng = np.random.default_rng(0)
                boot = [np.median(x[rng.integers(0, len(x), len(x))]) for _ in range(4000)]
                for shown_value, value in zip(
                    m.groups()[3:], (np.median(x), *np.percentile(boot, [2.5, 97.5]))
                ):
                    close(shown_value, float(value))


def test_show_your_work_tables_match_their_csvs() -> None:
    """The census group-1 study of issue 16: replicates, variance components and default against tuned."""
    stem = RESULTS / "census_group1_show_your_work"
    reps = pd.read_csv(f"{stem}_replicates.csv")
    rows = table("architecture", "replicate")
    assert len(rows) == len(reps)
    for (name, rep, trial, *cells), r in zip(rows, reps.itertuples(), strict=True):
        assert (NAMES[name], int(rep), int(trial)) == (r.architecture, r.replicate, r.tuning_trial)
        for shown, value in zip(
            cells,
            (r.valid_at_selection, r.retrained_valid_mean, r.retrained_test_mean, r.optimism),
            strict=True,
        ):
            close(shown, value)
    var = pd.read_csv(f"{stem}_variance.csv")
    rows = table("architecture", "task")
    assert len(rows) == len(var)
    for (name, task, *cells), r in zip(rows, var.itertuples(), strict=True):
        assert (NAMES[name], task) == (r.architecture, r.task)
        for shown, value in zip(
            cells, (r.sd_init, r.sd_data_order, r.sd_residual, r.sd_tuning, r.share_tuning), strict=True
        ):
            close(shown, value)
    dvt = pd.read_csv(f"{stem}_default_vs_tuned.csv")
    rows = [
        r for head, rows in tables() if head[:3] == ["architecture", "task", "default mean"] for r in rows
    ]
    assert len(rows) == len(dvt)
    for (name, task, default, tuned, gain), r in zip(rows, dvt.itertuples(), strict=True):
        assert (NAMES[name], task) == (r.architecture, r.task)
        close(default, r.default_mean)
        close(tuned, r.tuned_mean)
        for shown, value in zip(interval(gain), (r.gain, r.gain_ci95_low, r.gain_ci95_high), strict=True):
            close(shown, value)


def test_ablation_table_matches_the_summary_and_the_summary_its_runs() -> None:
    """The ablations' summary is what scripts/summarise_ablations.py computes from the committed per-run losses, and
    the README's ablation table shows it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "summarise", RESULTS.parents[1] / "scripts" / "summarise_ablations.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    computed, _ = module.summarise(RESULTS / "ablations")
    committed = pd.read_csv(RESULTS / "ablations_summary.csv")
    pd.testing.assert_frame_equal(committed, computed, check_exact=False, rtol=1e-12)
    rows = {r[0]: r for r in table("ablation", "what changed")}
    assert set(rows) == set(committed.ablation)
    for _, r in committed.iterrows():
        _, _, lo_p, hi_p, change, rho, cap, verdict = rows[r.ablation]
        close(lo_p, r["median_p0.5"])
        close(hi_p, r["median_p1"])
        m = re.match(rf"([+-]{NUMBER})% \[([+-]{NUMBER})%, ([+-]{NUMBER})%\]", change)
        assert m, change
        for shown, value in zip(
            m.groups(), (r["relative_change_p1_to_p0.5"], r.change_ci95_low, r.change_ci95_high), strict=True
        ):
            close(shown, 100 * value)
        close(rho.split(" ")[0], r.spearman_rho)
        assert cap == f"{r.runs_at_epoch_cap}/{r.runs}" and verdict == r.verdict


SPARSE_RUNS = {  # the recsys funnel's purchase AUC per input path and embedding initialisation, as the README heads them
    "N(0, 1/dim), default": "recsys_funnel_sparse",
    "N(0, 1)": "ablations/recsys_funnel_sparse_init_n01/recsys_funnel_sparse",
    "N(0, 1e-8)": "ablations/recsys_funnel_sparse_init_1e-4/recsys_funnel_sparse",
    "one-hot IDs": "recsys_funnel",
}


def test_sparse_id_tables_match_their_csvs() -> None:
    """The funnel with sparse IDs: the main table (click, purchase, dwell over 10 seeds) and the initialisation
    ablation (test purchase AUC of every run, the one-hot run included) against each run's CSVs."""
    found = {tuple(head[:2]): (head, rows) for head, rows in section_tables("Sparse IDs")}
    _, rows = found[("architecture", "test click AUC, mean [95% interval], 10 seeds")]
    check_intervals(rows, "recsys_funnel_sparse", ("click", "purchase", "dwell"))
    head, rows = found[("architecture", "N(0, 1/dim), default")]
    for column, title in enumerate(head[1:], start=1):
        comp = pd.read_csv(RESULTS / f"{SPARSE_RUNS[title.replace('**', '')]}_comparison.csv")
        for name, *cells in rows:
            r = comp[(comp.architecture == NAMES[name]) & (comp.task == "purchase")].iloc[0]
            close(cells[column - 1].replace("**", ""), r["mean"])


def check_intervals(rows: list[list[str]], stem: str, tasks: tuple[str, ...]) -> None:
    """Every architecture of the run, each cell ``mean [low, high]`` its CSV's for that task."""
    comp = pd.read_csv(RESULTS / f"{stem}_comparison.csv")
    assert len(rows) == comp.architecture.nunique()
    for name, *cells in rows:
        for task, cell in zip(tasks, cells, strict=True):
            r = comp[(comp.architecture == NAMES[name]) & (comp.task == task)].iloc[0]
            shown = interval(cell.replace("**", ""))
            for text, value in zip(shown, (r["mean"], r.ci95_low, r.ci95_high), strict=True):
                close(text, value)


def test_ten_million_row_table_matches_its_csvs() -> None:
    found = {tuple(head[:2]): rows for head, rows in section_tables("Scale: 10 million")}
    rows = found[("architecture", "test click AUC, mean [95% interval], 2 seeds")]
    check_intervals(rows, "recsys_10m", ("click", "purchase"))
    cost = pd.read_csv(RESULTS / "recsys_10m_cost.csv")
    assert set(cost.parameters) == {20727048, 20693704}  # "20.7 million parameters"


def snapshot_tables() -> dict[str, list[list[str]]]:
    """The README's tables of full-space runs in progress, each after a line ``Snapshot of `STUDY.repN```: the
    replicate's name -> its rows."""
    lines = (RESULTS / "README.md").read_text().splitlines()
    out: dict[str, list[list[str]]] = {}
    for i, line in enumerate(lines):
        m = re.match(r"(?:Snapshot|Final state) of `([\w.]+)`", line)
        if m:
            start = next(j for j in range(i, len(lines)) if lines[j].startswith("|"))
            ((_, rows),) = parse_tables(
                lines[start : next(j for j in range(start, len(lines)) if not lines[j].startswith("|"))]
            )
            out[m.group(1)] = rows
    return out


def test_settled_run_snapshots_match_their_exports() -> None:
    """Each in-progress table (trials so far, every judgement of the settled rule, tolerance, bound hits, widened
    ranges) against the export committed beside it: the trials table and the studies' attributes."""
    found = snapshot_tables()
    assert "census_group1_leakage_free_full.rep1" in found
    for name, rows in found.items():
        export = RESULTS / "runs" / name.split(".")[0]
        attrs = pd.read_json(export / f"{name}_attrs.json", typ="series")["study_attrs"]
        trials = pd.read_csv(export / f"{name}_trials.csv")
        assert [NAMES[r[0]] for r in rows] == list(attrs), name  # every architecture, in the study's order
        for label, complete, judged, tolerance, hits, wide in rows:
            arch, a = NAMES[label], attrs[NAMES[label]]
            assert int(complete) == ((trials.architecture == arch) & (trials.state == "COMPLETE")).sum(), arch
            history = a.get("settle_history") or []
            if not history:  # not judged yet (fewer than `min` trials finished)
                assert (judged, tolerance, hits) == ("none yet", "n/a", "none"), arch
                continue
            shown = judged.split("; ")
            assert len(shown) == len(history), arch
            for cell, h in zip(shown, history, strict=True):
                m = re.match(rf"(\d+): ({NUMBER}|n/a) \[({NUMBER}|n/a)\] -> (.+)", cell)
                assert m and int(m.group(1)) == h["trials"] and m.group(4) == h["decision"], (arch, cell)
                for got, want in ((m.group(2), h["gain"]), (m.group(3), h["gain_high"])):
                    assert got == "n/a" if want is None else float(got) == pytest.approx(want, rel=0.06), cell
            if history[-1].get("tolerance") is None:  # no tolerance: the probe had too few healthy seeds
                assert tolerance == "n/a", arch
            else:
                assert float(tolerance) == pytest.approx(history[-1]["tolerance"], rel=0.06), arch
            assert hits == (", ".join(history[-1]["bound_hits"]) or "none"), arch
            expected = [
                f"{w['param']} {w['from'][0]:g}..{w['from'][1]:g} -> {w['to'][0]:g}..{w['to'][1]:g} at {w['trials']}"
                for w in a.get("space_expansions") or []
            ]
            assert wide == ("; ".join(expected) or "none"), arch


def check_capacity_summary(prefix: str, cells: list[list[str]]) -> None:
    """Rows ``p, runs, mean [interval], median, best epoch, runs at cap`` of a capacity sweep against its report's
    comparison (mean over tasks) and convergence tables, ``capacity_<prefix>_*.csv``."""
    comp = pd.read_csv(RESULTS / f"capacity_{prefix}_comparison.csv")
    comp = comp[comp.task == "mean over tasks"].set_index("p")
    conv = pd.read_csv(RESULTS / f"capacity_{prefix}_convergence.csv").set_index("p")
    assert [r[0] for r in cells] == ["0.5", "0.7", "0.9", "1.0"], prefix
    for p, runs, mean, median, best, at_cap in cells:
        c = comp.loc[float(p)]
        assert int(runs) == c.seeds == conv.loc[float(p), "runs"] == 100
        for shown, value in zip(interval(mean), (c["mean"], c.ci95_low, c.ci95_high), strict=True):
            close(shown, value)
        close(median, c["median"])
        assert float(best) == conv.loc[float(p), "best_epoch_median"]
        assert int(at_cap) == conv.loc[float(p), "runs_at_cap"]


def test_capacity_figure3_tables_match_their_csvs() -> None:
    """Issue 36's Figure 3 in the streamed regime: the summary table against the report's CSVs, and the paired
    per-run changes (median, bootstrap interval, count, Wilcoxon p, the +-10% reading) recomputed from the runs."""
    check_capacity_summary("fig3", table("p", "runs"))
    losses = pd.read_csv(RESULTS / "capacity_fig3_seed_losses.csv")
    wide = losses.pivot(index="seed", columns="value", values="mean over tasks")
    for a, b, change, higher, p_value, reading in table("from p", "to p"):
        x = (wide[float(b)] - wide[float(a)]).to_numpy()
        m = re.match(rf"([+-]?{NUMBER[2:]})(?: \[([+-]?{NUMBER[2:]}), ([+-]?{NUMBER[2:]})\])?", change)
        assert m, change
        close(m.group(1), float(np.median(x)))
        assert higher == f"{int((x > 0).sum())} of 100"
        pv = sps.wilcoxon(x).pvalue
        digits = len(re.sub(r"\D", "", re.sub(r"e.*", "", p_value)).lstrip("0")) or 1
        assert float(p_value) == float(f"{pv:.{digits}g}"), (a, b, p_value, pv)
        if m.group(2):  # the interval: percentile bootstrap of the median change, 4,000 resamples, seed 0
            rng = np.random.default_rng(0)
            boot = [np.median(x[rng.integers(0, len(x), len(x))]) for _ in range(4000)]
            lo, hi = np.percentile(boot, [2.5, 97.5])
            close(m.group(2), lo)
            close(m.group(3), hi)
            margin = 0.1 * np.median(wide[float(a)])
            inside = -margin < lo and hi < margin
            first = reading.split(" ")[
                0
            ]  # yes: inside the margin; no: beyond it; otherwise not shown either way
            assert (first == "yes") == inside and (first == "no") == (lo > margin or hi < -margin), reading


def test_capacity_figure3_changes_sentence_matches_its_csv() -> None:
    """The README's sentence on the report's paired-changes section: the readings and numbers of the CSV."""
    ch = pd.read_csv(RESULTS / "capacity_fig3_changes.csv").set_index("to")
    assert list(ch.reading) == ["rises"] * 3 and (ch.holm_family_size == 3).all()
    text = (RESULTS / "README.md").read_text()
    m = re.search(r"changes of the median ([^;]+); Holm p ([^;]+);", text)
    assert m, "the sentence on capacity_fig3_changes.csv"
    shown = [c.strip() for c in m.group(1).split(",")]
    holm_shown = [c.strip() for c in m.group(2).split(",")]
    for v, change, hp in zip((0.9, 0.7, 0.5), shown, holm_shown, strict=True):
        close(change, ch.loc[v, "median_change"])
        assert float(hp) == pytest.approx(ch.loc[v, "holm_p"], rel=0.1, abs=5e-5), (v, hp)
    fixed = pd.read_csv(RESULTS / "paper_synthetic_shared_bottom_changes.csv")
    assert set(fixed.reading) == {"not separated"}


def test_capacity_figure3_variants_table_matches_their_csvs() -> None:
    """Issue 36's Figure-3 variants: each row against its variant's report tables (comparison, convergence, the
    paired-changes reading against p = 1), and the declared verdict quoted for each finished variant."""
    rows = table("variant", "p")
    assert rows, "the variants table"
    text = " ".join((RESULTS / "README.md").read_text().split())  # one line: a sentence may wrap anywhere
    for variant in sorted({r[0] for r in rows}):
        prefix = RESULTS / f"capacity_{variant}"
        changes = pd.read_csv(f"{prefix}_changes.csv").set_index("to")
        mine = [r for r in rows if r[0] == variant]
        check_capacity_summary(variant, [r[1:7] for r in mine])
        for p, against in ((r[1], r[7]) for r in mine):
            if float(p) == 1.0:
                assert against == ""
                continue
            reading, change, holm = (x.strip() for x in against.split(","))
            ch = changes.loc[float(p)]
            assert reading == ch.reading, (variant, p)
            close(change, ch.median_change)
            assert float(holm.removeprefix("Holm p ")) == pytest.approx(ch.holm_p, rel=0.05), (variant, p)
        verdict = pd.read_csv(f"{prefix}_findings.csv").verdict.iloc[0]
        assert (
            f"`{variant}`" in text
            and f"declared verdict **{verdict}** (`capacity_{variant}_findings.csv`" in text
        )


def test_capacity_figure4_verdicts_changes_and_interaction_match_their_csvs() -> None:
    """Issue 36's Figure 4 in the streamed regime: the declared verdicts quoted as the findings CSV has them, the
    paired-changes readings as the changes CSV has them, and the post hoc interaction table (OMoE's change from
    p = 1 minus MMoE's, per run) recomputed from the runs."""
    text = " ".join((RESULTS / "README.md").read_text().split())
    start = text.index("**Figure 4 in this regime, run at size**")
    section = text[start : text.index("**How long, and where.**", start)]
    conv = pd.read_csv(RESULTS / "capacity_figure4_convergence.csv")
    m = re.search(
        r"median best epoch (\d+)-(\d+) per cell, (\d+)-(\d+) runs of 100 per cell at the 400-epoch cap",
        section,
    )
    assert m, "the convergence sentence"
    assert (float(m.group(1)), float(m.group(2))) == (
        conv.best_epoch_median.min(),
        conv.best_epoch_median.max(),
    )
    assert (int(m.group(3)), int(m.group(4))) == (conv.runs_at_cap.min(), conv.runs_at_cap.max())
    curves = pd.read_csv(RESULTS / "capacity_figure4_loss_curves.csv")
    gaps = []
    for _, cell in curves.groupby(["p", "architecture"]):
        half = cell[cell.runs_training >= cell.runs / 2]  # the last step at which at least half still train
        last = half[half.step == half.step.max()].set_index("split")["median"]
        gaps.append(abs(last["train"] - last["valid"]))
    m = re.search(r"is within (\d\.\d+) of the median validation loss in every cell", section)
    assert m and max(gaps) <= float(m.group(1)) and round(max(gaps), 4) == float(m.group(1)), max(gaps)
    findings = pd.read_csv(RESULTS / "capacity_figure4_findings.csv").set_index("claim").verdict
    quoted = {
        "Both MoE models beat Shared-Bottom at every p": "holds",
        "MMoE's loss barely moves with p while OMoE's degrades as p falls": "partly",
        "Shared-Bottom's loss rises as p falls": "does not hold",
        "Trainability": "partly",
    }
    for claim, verdict in quoted.items():
        (csv_verdict,) = [v for c, v in findings.items() if str(c).startswith(claim)]
        assert csv_verdict == verdict and f"**{verdict}**" in section, claim
    changes = pd.read_csv(RESULTS / "capacity_figure4_changes.csv")
    readings = changes.groupby("architecture").reading.apply(lambda r: sorted(set(r)))
    assert readings["omoe"] == ["rises"] and readings["shared_bottom"] == ["not separated"]
    mmoe = changes[changes.architecture == "mmoe"].set_index("to").reading
    assert set(mmoe[mmoe.index <= 0.8]) == {"rises"} and mmoe[0.9] == "flat"
    assert "OMoE **rises** at every p < 1" in section and "**flat** at 0.9" in section
    losses = pd.read_csv(RESULTS / "capacity_figure4_seed_losses.csv")
    wide = losses.pivot_table(index="seed", columns=["architecture", "value"], values="mean over tasks")
    signed = rf"[+-]?{NUMBER[2:]}"
    rows = table("from p = 1 to p", "OMoE's change minus MMoE's [95% interval]")
    assert [float(r[0]) for r in rows] == [0.9, 0.8, 0.7, 0.6, 0.5]
    for p, cell, more, p_value in rows:
        lo = float(p)
        x = (
            (wide[("omoe", lo)] - wide[("omoe", 1.0)]) - (wide[("mmoe", lo)] - wide[("mmoe", 1.0)])
        ).to_numpy()
        m = re.match(rf"({signed}) \[({signed}), ({signed})\]$", cell)
        assert m, cell
        rng = np.random.default_rng(0)
        boot = [np.median(x[rng.integers(0, len(x), len(x))]) for _ in range(4000)]
        for shown, value in zip(m.groups(), (np.median(x), *np.percentile(boot, [2.5, 97.5])), strict=True):
            close(shown, float(value))
        assert more == f"{int((x > 0).sum())} of 100"
        pv = sps.wilcoxon(x).pvalue
        digits = len(re.sub(r"\D", "", re.sub(r"e.*", "", p_value)).lstrip("0")) or 1
        assert float(p_value) == float(f"{pv:.{digits}g}"), (p, p_value, pv)


def test_front_page_census_claim_matches_the_quick_runs() -> None:
    """The project README's "Results so far" quotes the quick census runs; a rerun that changes them fails here."""
    text = " ".join((RESULTS.parents[1] / "README.md").read_text().split())
    m = re.search(rf"on group 1 MMoE reaches test income AUC ({NUMBER}) and marital ({NUMBER})", text)
    assert m, "the README's census sentence is gone or reworded"
    comp = pd.read_csv(RESULTS / "paper_census_group1_quick_comparison.csv").set_index(
        ["architecture", "task"]
    )
    close(m.group(1), comp.loc[("mmoe", "income"), "mean"])
    close(m.group(2), comp.loc[("mmoe", "marital"), "mean"])
    m = re.search(
        rf"beats Single-Task only on group 1's income \(by ({NUMBER}) AUC, Holm p = ({NUMBER})\)", text
    )
    assert m, "the README's MMoE-against-Single-Task sentence is gone or reworded"
    for group, main in ((1, "income"), (2, "education")):
        pairs = pd.read_csv(RESULTS / f"paper_census_group{group}_quick_pairs.csv")
        pairs = pairs[pairs.task == main].set_index(["a", "b"]).holm_p
        against = {
            b: pairs.get(("mmoe", b), pairs.get((b, "mmoe"))) for b in ("shared_bottom", "single_task")
        }
        assert against["shared_bottom"] >= 0.05  # "on neither group's main task does it beat Shared-Bottom"
        assert (against["single_task"] < 0.05) == (group == 1)  # "beats Single-Task only on group 1's income"
        if group == 1:
            close(m.group(2), against["single_task"])
            means = pd.read_csv(RESULTS / "paper_census_group1_quick_comparison.csv").set_index(
                ["architecture", "task"]
            )
            close(m.group(1), means.loc[("mmoe", main), "mean"] - means.loc[("single_task", main), "mean"])


def test_front_page_settled_count_matches_the_snapshot() -> None:
    """The README's count of settled group-1 tuning runs is the final report's `#settled` table."""
    text = " ".join((RESULTS.parents[1] / "README.md").read_text().split())
    m = re.search(
        r"finished tuning group 1 \((\d+) of its (\d+) architecture-replicates settled, the other (\d+)", text
    )
    assert m, "the README's group-1 tuning sentence is gone or reworded"
    settled = pd.read_csv(RESULTS / "census_group1_leakage_free_full_settled.csv")
    assert int(m.group(2)) == len(settled)
    assert int(m.group(1)) == (settled.stop_reason == "settled").sum()
    assert int(m.group(3)) == (settled.stop_reason == "max").sum()


def test_retraining_progress_tables_match_the_seed_results() -> None:
    """Each ``Retraining of `STUDY``` table (seeds trained of those planned, wall time a seed) against the seed
    results exported beside it: every tuning run and architecture listed, none counted from another's file."""
    lines = (RESULTS / "README.md").read_text().splitlines()
    found = [
        (i, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r"Retraining of `([\w.]+)`", line))
    ]
    assert [name for _, name in found] == ["census_group1_leakage_free_full", "census_group2_full"]
    for i, study in found:
        start = next(j for j in range(i, len(lines)) if lines[j].startswith("|"))
        ((_, rows),) = parse_tables(
            lines[start : next(j for j in range(start, len(lines)) if not lines[j].startswith("|"))]
        )
        export = RESULTS / "runs" / study
        planned = 6 * 5  # retrain.cross of the study file: 6 initialisation x 5 data-order seeds
        runs = {f"replicate {r}": f"{study}.rep{r}" for r in (1, 2, 3)} | {
            "default configuration": f"{study}.default"
        }
        expected_rows = [
            (run, arch)
            for run in ("replicate 1",)
            for arch in ("single_task", "shared_bottom", "mmoe", "ple", "adatt")
        ]
        expected_rows += [(f"replicate {r}", a) for r in (2, 3) for a in ("shared_bottom", "mmoe")]
        expected_rows += [
            ("default configuration", a) for a in ("single_task", "shared_bottom", "mmoe", "ple", "adatt")
        ]
        assert [(run, NAMES[label]) for run, label, _, _ in rows] == expected_rows
        for run, label, trained, times in rows:
            path = export / f"{runs[run]}_seed_results.csv"
            empty = pd.DataFrame({"architecture": [], "wall_time": [], "replicas_in_run": []})
            seeds = pd.read_csv(path) if path.exists() else empty
            mine = seeds[seeds.architecture == NAMES[label]]
            mine = mine.wall_time / mine.replicas_in_run  # a chunk's time, shared by its seeds
            assert trained == f"{len(mine)} of {planned}", (run, label)
            if mine.empty:
                assert times == "-"
                continue
            shown = [float(t.replace(",", "")) for t in times.split(" / ")]
            assert shown == pytest.approx([mine.min(), mine.median(), mine.max()], abs=0.5), (run, label)


def test_front_page_recsys_claim_matches_the_funnel_run() -> None:
    """ "AdaTT, PLE, Shared-Bottom and AITM cannot be separated on purchases ..., ESMM and MMoE are below them"."""
    text = " ".join((RESULTS.parents[1] / "README.md").read_text().split())
    assert "AdaTT, PLE, Shared-Bottom and AITM cannot be separated on purchases" in text
    means = pd.read_csv(RESULTS / "recsys_funnel_comparison.csv").query("task == 'purchase'")
    assert means.set_index("architecture")["mean"].idxmax() == "adatt"
    pairs = pd.read_csv(RESULTS / "recsys_funnel_pairs.csv").query("task == 'purchase'")
    against = {
        (r.b if r.a == "adatt" else r.a): r.holm_p for r in pairs.itertuples() if "adatt" in (r.a, r.b)
    }
    assert all(against[a] >= 0.05 for a in ("ple", "shared_bottom", "aitm")), against
    assert all(against[a] < 0.05 for a in ("esmm", "mmoe")), against
    # "reading the user and item IDs through embedding tables ... did not help any architecture on that log"
    assert "through embedding tables instead of one-hot columns did not help any architecture" in text
    sparse = pd.read_csv(RESULTS / "recsys_funnel_sparse_comparison.csv").query("task == 'purchase'")
    both = (
        sparse.set_index("architecture")["mean"]
        .to_frame("embedded")
        .join(means.set_index("architecture")["mean"])
    )
    assert len(both) == 6 and (both.embedded < both["mean"]).all(), both


FULL_RUNS = [("census_group1_leakage_free_full", "income"), ("census_group2_full", "education")]


@pytest.mark.parametrize(("name", "main_task"), FULL_RUNS)
def test_full_verdict_tables_match_the_report(name: str, main_task: str) -> None:
    """A headline's two verdict tables (the main task, then never married) against the final report's CSVs:
    means and intervals, gaps, Holm p with and without the collapsed seeds, and the collapsed seeds counted by
    the report's own rule over the exported seed metrics."""
    from hpo.report.verdict import collapse_mask

    stem = RESULTS / name
    lines = (RESULTS / "README.md").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"Verdict of `{name}`"))
    main, marital = parse_tables(lines[at : at + 30])[:2]
    comp = pd.read_csv(f"{stem}_comparison.csv").set_index(["architecture", "task"])
    verdict = pd.read_csv(f"{stem}_verdict.csv").set_index(["task", "architecture"])
    without = pd.read_csv(f"{stem}_verdict_without_collapsed.csv").set_index(["task", "architecture"])
    metrics = pd.concat(
        pd.read_csv(f) for f in (RESULTS / "runs" / stem.name).glob("*.rep*_seed_metrics.csv")
    ).query("split == 'test' and metric == 'auc'")
    for task, (_, rows) in ((main_task, main), ("marital", marital)):
        assert [NAMES[r[0]] for r in rows] == ["single_task", "shared_bottom", "mmoe", "ple", "adatt"]
        for label, seeds, collapsed, mean, gap, p, gap_without, p_without in rows:
            arch = NAMES[label]
            c = comp.loc[(arch, task)]
            assert int(seeds) == c.seeds
            values = metrics[(metrics.architecture == arch) & (metrics.task == task)].value.to_numpy(float)
            assert len(values) == c.seeds and int(collapsed) == collapse_mask(values, "auc")[0].sum()
            for shown, value in zip(interval(mean), (c["mean"], c.ci95_low, c.ci95_high), strict=True):
                close(shown, value)
            if gap == "best":
                assert verdict.loc[task].best.iloc[0] == arch and gap_without == "best"
                continue
            v, w = verdict.loc[(task, arch)], without.loc[(task, arch)]
            for shown, value in zip(
                interval(gap.replace("+", "")), (v.gap, v.ci_low, v.ci_high), strict=True
            ):
                close(shown, value)
            close(gap_without, w.gap)
            assert float(p) == pytest.approx(v.holm_p, rel=0.05) and float(p_without) == pytest.approx(
                w.holm_p, rel=0.05
            )


@pytest.mark.parametrize(("name", "main_task"), FULL_RUNS)
def test_the_verdict_table_script_prints_the_headline_tables(name: str, main_task: str) -> None:
    """scripts/verdict_table.py, which prints a finished census report's verdict tables for the README, prints
    each full run's headline tables as they stand (the test above checks their numbers against the same CSVs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "verdict_table", RESULTS.parents[1] / "scripts" / "verdict_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = (RESULTS / "README.md").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"Verdict of `{name}`"))
    shown = [line for line in lines[at : at + 30] if line.startswith("|")]
    printed = [line for t in (main_task, "marital") for line in module.table(RESULTS / name, t).splitlines()]
    assert printed == shown


def test_group1_full_headline_sentences_match_the_report() -> None:
    """The headline's numbers outside the tables: Shared-Bottom against MMoE per tuning run, tuning's gain over
    the defaults, the tuning runs at their maximum."""
    text = " ".join((RESULTS / "README.md").read_text().split())
    stem = RESULTS / "census_group1_leakage_free_full"
    reps = pd.read_csv(f"{stem}_replicates.csv").set_index(["architecture", "replicate"]).retrained_test_mean
    for run in (1, 3):
        m = re.search(rf"run {run}: ({NUMBER}) against ({NUMBER})", text)
        assert m, run
        close(m.group(1), reps[("shared_bottom", run)])
        close(m.group(2), reps[("mmoe", run)])
        assert reps[("shared_bottom", run)] > reps[("mmoe", run)]
    gains = (
        pd.read_csv(f"{stem}_default_vs_tuned.csv").query("task == 'income'").set_index("architecture").gain
    )
    m = re.search(rf"reach ({NUMBER}), ({NUMBER}) and ({NUMBER}) income AUC above their default", text)
    assert m
    for shown, arch in zip(m.groups(), ("single_task", "ple", "adatt"), strict=True):
        close(shown, gains[arch])
    assert (gains[["shared_bottom", "mmoe"]] < 0).all()
    settled = pd.read_csv(f"{stem}_settled.csv")
    m = re.search(r"(\d+) of the (\d+) tuning runs stopped at their 32-trial maximum", text)
    assert m and int(m.group(1)) == (settled.stop_reason == "max").sum() and int(m.group(2)) == len(settled)


def test_group2_full_headline_sentences_match_the_report() -> None:
    """Group 2's numbers outside its tables: Shared-Bottom against MMoE (pooled and per tuning run, with and
    without the collapsed seeds), MMoE against Single-Task, tuning's gain over the defaults, the runs at their
    maximum, and the front page's summary of the same."""
    text = " ".join((RESULTS / "README.md").read_text().split())
    text = text[text.index("### Group 2 (the paper's inputs)") :]
    stem = RESULTS / "census_group2_full"
    pairs = pd.read_csv(f"{stem}_pairs.csv").query("task == 'education'").set_index(["a", "b"])
    row = pairs.loc[("shared_bottom", "mmoe")]
    m = re.search(
        rf"P\(Shared-Bottom beats MMoE\) = ({NUMBER}) \[({NUMBER}), ({NUMBER})\], Holm p = ({NUMBER})", text
    )
    assert m
    for shown, value in zip(
        m.groups(), (row.p_a_beats_b, row.ci95_low, row.ci95_high, row.holm_p), strict=True
    ):
        close(shown, value)
    front = " ".join((RESULTS.parents[1] / "README.md").read_text().split())
    m = re.search(rf"Group 2 .*?P\(Shared-Bottom beats MMoE\) = ({NUMBER}), Holm p = ({NUMBER})", front)
    assert m
    close(m.group(1), row.p_a_beats_b)
    close(m.group(2), row.holm_p)
    reps = pd.read_csv(f"{stem}_replicates.csv").set_index(["architecture", "replicate"]).retrained_test_mean
    m = re.search(
        rf"average ({NUMBER}), ({NUMBER}) and ({NUMBER}) \(({NUMBER}) without its 5 collapsed seeds\) against "
        rf"MMoE's ({NUMBER}), ({NUMBER}) and ({NUMBER})",
        text,
    )
    assert m
    shown = list(m.groups())
    for got, arch, run in zip(
        shown[:3] + shown[4:], ["shared_bottom"] * 3 + ["mmoe"] * 3, [1, 2, 3, 1, 2, 3], strict=True
    ):
        close(got, reps[(arch, run)])
    metrics = pd.read_csv(RESULTS / "runs" / stem.name / "census_group2_full.rep3_seed_metrics.csv").query(
        "split == 'test' and metric == 'auc' and task == 'education' and architecture == 'shared_bottom'"
    )
    assert (metrics.value <= 0.55).sum() == 5 and len(metrics) == 30
    close(m.group(4), metrics.value[metrics.value > 0.55].mean())
    st = pairs.loc[("single_task", "mmoe")]
    m = re.search(rf"P\(Single-Task beats MMoE\) = ({NUMBER}), Holm p = ({NUMBER})", text)
    assert m and float(m.group(2)) == pytest.approx(st.holm_p, rel=0.05)
    close(m.group(1), st.p_a_beats_b)
    gains = (
        pd.read_csv(f"{stem}_default_vs_tuned.csv")
        .query("task == 'education'")
        .set_index("architecture")
        .gain
    )
    m = re.search(
        rf"Tuning gained ({NUMBER}) \(Single-Task\), ({NUMBER}) \(MMoE\), ({NUMBER}) \(PLE\) and ({NUMBER}) \(AdaTT\)",
        text,
    )
    assert m
    for shown_gain, arch in zip(m.groups(), ("single_task", "mmoe", "ple", "adatt"), strict=True):
        close(shown_gain, gains[arch])
    assert gains["shared_bottom"] < 0
    settled = pd.read_csv(f"{stem}_settled.csv")
    m = re.search(r"(\d+) of the (\d+) tuning runs stopped at their 32-trial maximum", text)
    assert m and int(m.group(1)) == (settled.stop_reason == "max").sum() and int(m.group(2)) == len(settled)


def test_front_page_group1_full_verdict_matches_the_report() -> None:
    """The front page's and the headline's Shared-Bottom-against-MMoE figures are the final report's pair row."""
    pairs = pd.read_csv(RESULTS / "census_group1_leakage_free_full_pairs.csv").query("task == 'income'")
    row = pairs[(pairs.a == "shared_bottom") & (pairs.b == "mmoe")].iloc[0]
    assert not row["significant_at_0.05"]
    for path in (RESULTS.parents[1] / "README.md", RESULTS / "README.md"):
        text = " ".join(path.read_text().split())
        m = re.search(rf"P\(Shared-Bottom beats MMoE\) = ({NUMBER}).*?Holm p = ({NUMBER})", text)
        assert m, path
        close(m.group(1), row.p_a_beats_b)
        close(m.group(2), row.holm_p)


def test_select_ablation_table_matches_its_csv() -> None:
    """The table of what `retrain.select` would have chosen on group 1 against the ablation's CSV: every
    candidate's tuning value, probe seeds, probe mean and the choice, and each retrained candidate's test mean."""
    frame = pd.read_csv(RESULTS / "ablations" / "select_census_group1.csv")
    rows = table("tuning run", "candidate (tuning rank)")
    assert len(rows) == len(frame)
    for cells, (_, r) in zip(rows, frame.iterrows(), strict=True):
        run, cand, tuned, probes, mean, chosen, retrained = cells
        assert run == f"{r.run}, {next(k for k, v in NAMES.items() if v == r.architecture)}"
        assert cand == f"trial {r.tuning_trial} ({r.tuning_rank})"
        close(tuned, r.tuning_value)
        assert probes == ", ".join(r.probe_values.split())
        close(mean, r.probe_mean)
        assert (chosen == "yes") == bool(r.probe_chooses)
        if r.retrained_seeds:
            close(retrained.split(" ")[0], r.retrained_test_mean)
        else:
            assert retrained == "not retrained"


@pytest.mark.parametrize("stem", ["census_group1_leakage_free_full", "census_group2_full"])
def test_full_space_reports_name_the_same_bounds_in_searched_and_settled(stem: str) -> None:
    """A committed full-space report's `_searched.csv` names, per tuning replicate, the bound hits its
    `_settled.csv` names (the rule's judgement: widened ranges, the unit ceiling no bound)."""
    from tests.report.test_settled import bounds_by_replicate

    searched = bounds_by_replicate(RESULTS / f"{stem}_searched.csv")
    assert searched == bounds_by_replicate(RESULTS / f"{stem}_settled.csv") and searched
    assert not any("_units=2048" in b for b in searched.values())
