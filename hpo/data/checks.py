"""Checks a dataset must pass before any training, and the summary ``hpo data info`` and ``hpo validate`` print.

A task with one class in the validation split makes every trial's AUC undefined (each would be pruned with a
message about the metric, not about the data); a test split with one class makes the report's test scores
meaningless. Both are found here, at load time, with the split named.
"""

from __future__ import annotations

from typing import Any

import torch

from hpo.data._tabular import SPLITS, TabularDataset
from hpo.data.columns import normalise_label

__all__ = ["label_spellings", "split_problems", "summary_lines"]

MAX_LABEL_VALUES = 50


def split_problems(ds: TabularDataset) -> list[tuple[str, str, str]]:
    """``(task, split, what is wrong)`` for every binary task with one class and every regression task without
    spread, in every split."""
    problems = []
    for k, task in enumerate(ds.tasks):
        for split in SPLITS:
            y = ds.splits[split].y
            values = y.reshape(-1, y.shape[-1])[:, k].double()
            values = values[~torch.isnan(values)]  # the rows where the task is defined
            n = int(values.numel())
            if task.kind == "binary" and n:
                positives = int(values.sum())
                if positives in (0, n):
                    problems.append(
                        (
                            task.name,
                            split,
                            f"has a single class in the {split} split ({positives} of {n} rows positive); "
                            "a binary task needs both in every split",
                        )
                    )
            if n == 0:
                problems.append((task.name, split, f"is defined on no row of the {split} split"))
            elif task.kind == "binary":
                pass
            elif n < 2 or float(values.std()) == 0.0:
                problems.append(
                    (
                        task.name,
                        split,
                        f"has no spread in the {split} split (every value is {float(values[0])})",
                    )
                )
    return problems


def label_spellings(
    seen: dict[str, dict[str, tuple[str, set[str]]]], suffix: str | None
) -> tuple[list[str], dict[str, str]]:
    """Label values one file holds and another does not (``seen``: task -> split -> (file, values)).

    Returns the warnings and, per task, a hint for its error message; a value that differs only by a trailing
    character suggests ``label_suffix``. Splits cut from one file are not compared (a rare value may simply fall
    in one of them), nor are columns with more than 50 values (not a label column's spelling problem)."""
    warnings: list[str] = []
    hints: dict[str, str] = {}
    for task, by_split in seen.items():
        train_file, train_values = by_split["train"]
        for split, (file, values) in by_split.items():
            if file == train_file or len(values | train_values) > MAX_LABEL_VALUES:
                continue
            only_here, only_train = sorted(values - train_values), sorted(train_values - values)
            if not only_here:
                continue
            warnings.append(
                f"task {task!r}: label values {only_here} appear in {file} ({split}) but not in {train_file} "
                f"(which has {only_train or sorted(train_values)})"
            )
            hints[task] = f"; {file} spells its labels {sorted(values)}, {train_file} {sorted(train_values)}"
            last = {v[-1] for v in only_here if v}
            if (
                suffix is None
                and len(last) == 1
                and {normalise_label(v, next(iter(last))) for v in only_here} <= train_values
            ):
                hints[task] += f": set `label_suffix: {next(iter(last))!r}` in the dataset YAML"
    return warnings, hints


def _sparse_line(f: dict[str, Any]) -> str:
    """One sparse field as ``hpo data info`` prints it: how it is coded and how much of it training knows."""
    if f.get("hash_buckets") is not None:
        coded = f"hashed into {f['hash_buckets']} buckets"
    elif not f.get("out_of_vocabulary_row", True):
        coded = f"vocabulary {f['vocabulary']} (every value known)"
    else:
        coded = f"vocabulary {f['vocabulary']} (out-of-vocabulary row included"
        coded += (
            f", min count {f['min_count']}, {f['rare_values_folded']} rare values folded)"
            if f.get("min_count")
            else ")"
        )
    values = (
        f"{f['slots']} values per row pooled by {f['pooling']}" if f["slots"] > 1 else "one value per row"
    )
    dim = f"embedding width {f['dim']}" if f.get("dim") else "embedding width from the study's field_dim"
    unseen = f["unseen_rate"]
    return (
        f"    sparse field {f['name']}: {coded}, {values}, {dim}; {f['seen_in_train']} rows used in training; "
        f"values out of vocabulary or never seen in training: valid {unseen['valid']:.1%}, test "
        f"{unseen['test']:.1%}"
    )


def summary_lines(info: dict[str, Any]) -> list[str]:
    """The facts to read before tuning, as text: sizes, features, per-split label balance, missing values,
    inferred columns, leakage candidates and warnings."""
    lines = [
        f"{info['name']}: rows {info['rows']}",
        f"  features: {info['continuous_features']} continuous, {info['categorical_features']} categorical, "
        f"{info.get('sparse_features', 0)} sparse (embedded), one-hot width {info['one_hot_width']}",
    ]
    for f in info.get("categorical_fields", []):
        if f.get("path") == "embedding":
            lines.append(_sparse_line(f))
            continue
        lines.append(
            f"    field {f['name']}: vocabulary {f['vocabulary']}, {f['seen_in_train']} seen in training; rows with a "
            f"value training never shows: valid {f['unseen_rate']['valid']:.1%}, test {f['unseen_rate']['test']:.1%}"
        )
    for t in info["tasks"]:
        if rates := t.get("positive_rate"):
            shown = ", ".join(f"{s} {rates[s]:.4f}" for s in SPLITS)
            lines.append(f"  task {t['name']} ({t['kind']}): positive rate {shown}")
        else:
            lines.append(
                f"  task {t['name']} ({t['kind']}): mean {t['mean']:.4g}, std {t['std']:.4g} (train)"
            )
        if defined := t.get("defined_rows"):
            shown = ", ".join(f"{s} {defined[s]}" for s in SPLITS)
            lines.append(f"    defined on a subset of rows: {shown} (its loss and metrics use only these)")
    if info.get("label_pearson") is not None:
        lines.append(f"  label Pearson (train): {info['label_pearson']:.3f}")
    provenance = info.get("provenance", {})
    if dropped := provenance.get("dropped_columns"):
        lines.append(f"  dropped columns: {', '.join(dropped)}")
    imputed = provenance.get("imputed_median", {})
    for col, counts in provenance.get("missing", {}).items():
        shown = ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS)
        how = (
            f"imputed with the training median {imputed[col]:.4g}, indicator column '{col} missing'"
            if col in imputed
            else "its own category"
        )
        lines.append(f"  missing values in {col}: {shown} ({how})")
    for task, best in info.get("best_single_feature", {}).items():
        lines.append(f"  best single feature for {task} (train AUC): {best['column']} {best['auc']:.3f}")
    if oracle := provenance.get("oracle_test_auc"):
        shown = ", ".join(f"{t} {a:.4f}" for t, a in oracle.items() if a is not None)
        lines.append(f"  known answer: the true probabilities' test AUC (no model can do better): {shown}")
    lines += [f"  inferred {note}" for note in provenance.get("column_inference", [])]
    lines += [f"  warning: {w}" for w in provenance.get("warnings", [])]
    return lines
