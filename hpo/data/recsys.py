"""Recommendation logs with known answers: impressions of items to users, with clicks, purchases after clicks and
dwell time, generated from latent factors whose relatedness is a dial (the MMoE paper's synthetic idea carried to
sparse IDs and to tasks that depend on each other).

Each impression draws a user and an item by Zipf-like popularity (rank ``r`` has weight ``r^-zipf``) and a
context uniformly. Users and items have latent factors ``u, v`` in R^f (N(0, 1/f) each) and items a popularity
bias. A click happens with probability ``sigmoid(a + s (u . v) + bias_item + ctx)``; a purchase, only after a
click, with probability ``sigmoid(b + s (u . v') + ...)`` where ``v' = rho v + sqrt(1 - rho^2) w`` (``w`` fresh
factors): ``relatedness`` = ``rho`` is the cosine of the two behaviours' item factors, so 1 means one preference
drives both and 0 unrelated ones. ``a`` and ``b`` are solved so that the click rate and the purchase rate among
clicks are the requested ones; dwell time (seconds, log-normal around the click preference) exists only after a
click.

Tasks (``labels``): ``entire_space`` gives ``click`` and ``purchase`` (clicked and bought) on every impression,
ESMM's and AITM's labels; ``on_click`` gives ``click`` and ``conversion`` (bought) defined only where there was
a click, the subset task a conversion model is trained on. ``dwell`` (regression, defined only after a click) is
added with ``dwell: true``. Inputs: the ``user``, ``item``, ``item_category``, ``context`` and ``user_segment`` IDs
(categorical; with ``sparse: ids`` the user and item IDs, with ``sparse: all`` every ID field, are read through
embedding tables), ``extra_fields`` more ID fields (attributes of the user or the item, as logs carry them), and
two continuous columns (user activity, item price). The provenance records the truth: achieved rates and, per
task, the AUC of the true probabilities on the test rows (the best any model can reach).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import roc_auc_score

from hpo.data._tabular import Split, TabularDataset
from hpo.schema import InputSpec, SparseField, TaskSpec

__all__ = ["RecsysConfig", "make_recsys"]


class RecsysConfig(BaseModel):
    """Generator settings (``dataset: {kind: recsys, ...}`` in a study)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["recsys"] = "recsys"
    n_users: int = Field(10_000, ge=2)
    n_items: int = Field(5_000, ge=2)
    n_contexts: int = Field(16, ge=1)
    item_categories: int = Field(100, ge=1)
    user_segments: int = Field(50, ge=1)
    zipf: float = Field(1.1, ge=0)
    factors: int = Field(8, ge=1)
    strength: float = Field(3.0, ge=0)
    relatedness: float = Field(0.5, ge=-1, le=1)
    click_rate: float = Field(0.1, gt=0, lt=1)
    purchase_rate: float = Field(0.05, gt=0, lt=1)  # among clicks
    labels: Literal["entire_space", "on_click"] = "entire_space"
    dwell: bool = False
    # which ID fields are read through embedding tables (sparse fields) instead of one-hot rows: none (the
    # one-hot path), `ids` (user and item), or `all` (every ID field, the extra ones included)
    sparse: Literal["none", "ids", "all"] = "none"
    # more ID fields, as logs carry them (a user's city, device, an item's author, brand): each a fixed random
    # attribute of the user (even-numbered) or the item (odd), of `extra_vocab` values; they repeat what the user
    # and item IDs say, so the labels and the known answers do not change
    extra_fields: int = Field(0, ge=0, le=200)
    extra_vocab: int = Field(1000, ge=2)
    n_train: int = Field(50_000, ge=1)
    n_valid: int = Field(10_000, ge=1)
    n_test: int = Field(10_000, ge=1)
    seed: int = Field(0, ge=0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _offset_for_rate(score: np.ndarray, rate: float) -> float:
    """The intercept ``a`` with ``mean(sigmoid(a + score)) = rate`` (bisection: the mean is monotone in ``a``)."""
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _sigmoid(mid + score).mean() < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _popular(rng: np.random.Generator, n_ids: int, zipf: float, size: int) -> np.ndarray:
    """IDs drawn with probability proportional to ``rank^-zipf`` (ranks shuffled over the IDs)."""
    weights = np.arange(1, n_ids + 1, dtype=np.float64) ** -zipf
    ranked = rng.choice(n_ids, size=size, p=weights / weights.sum())
    return rng.permutation(n_ids)[ranked]


def _oracle_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def _world(cfg: RecsysConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Users' and items' latent factors and attributes: the truth every impression is drawn from."""
    f = cfg.factors
    u = rng.normal(0, 1 / np.sqrt(f), (cfg.n_users, f))  # drawn in this order: the data depends on it
    v = rng.normal(0, 1 / np.sqrt(f), (cfg.n_items, f))
    w = rng.normal(0, 1 / np.sqrt(f), (cfg.n_items, f))
    return {
        "u": u,
        "v": v,
        "v_buy": cfg.relatedness * v + np.sqrt(1 - cfg.relatedness**2) * w,
        "item_bias": rng.normal(0, 0.5, cfg.n_items),
        "ctx_effect": rng.normal(0, 0.3, cfg.n_contexts),
        "category": rng.integers(0, cfg.item_categories, cfg.n_items),
        "segment": rng.integers(0, cfg.user_segments, cfg.n_users),
        "activity": rng.gamma(2.0, 1.0, cfg.n_users),
        "price": rng.lognormal(3.0, 1.0, cfg.n_items),
    }


def _labels(
    cfg: RecsysConfig, rng: np.random.Generator, click_score: np.ndarray, buy_score: np.ndarray
) -> tuple[list[TaskSpec], list[np.ndarray], list[np.ndarray]]:
    """The tasks, their labels (NaN where undefined) and their true probabilities (NaN for regression)."""
    n = len(click_score)
    p_click = _sigmoid(_offset_for_rate(click_score, cfg.click_rate) + click_score)
    click = rng.random(n) < p_click
    # the purchase rate is set among clicks: the intercept is solved on the clicked rows' scores
    b = _offset_for_rate(buy_score[click], cfg.purchase_rate) if click.any() else 0.0
    p_buy = _sigmoid(b + buy_score)
    buy = click & (rng.random(n) < p_buy)
    tasks, ys, truth = [TaskSpec("click")], [click.astype(np.float32)], [p_click]
    if cfg.labels == "entire_space":
        tasks.append(TaskSpec("purchase"))
        ys.append(buy.astype(np.float32))
        truth.append(p_click * p_buy)
    else:
        tasks.append(TaskSpec("conversion"))
        ys.append(np.where(click, buy, np.nan).astype(np.float32))
        truth.append(p_buy)
    if cfg.dwell:
        tasks.append(TaskSpec("dwell", "regression"))
        dwell = np.exp(2.5 + 0.5 * click_score + rng.normal(0, 0.5, n))
        ys.append(np.where(click, np.log1p(dwell), np.nan).astype(np.float32))
        truth.append(np.full(n, np.nan))
    return tasks, ys, truth


def make_recsys(cfg: RecsysConfig | None = None) -> TabularDataset:
    """Generate the log; see the module docstring."""
    cfg = cfg or RecsysConfig()
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_train + cfg.n_valid + cfg.n_test
    world = _world(cfg, rng)
    user = _popular(rng, cfg.n_users, cfg.zipf, n)
    item = _popular(rng, cfg.n_items, cfg.zipf, n)
    ctx = rng.integers(0, cfg.n_contexts, n)
    affinity = np.einsum("nf,nf->n", world["u"][user], world["v"][item])
    click_score = cfg.strength * affinity + world["item_bias"][item] + world["ctx_effect"][ctx]
    buy_score = cfg.strength * np.einsum("nf,nf->n", world["u"][user], world["v_buy"][item])
    buy_score = buy_score - 0.3 * np.log(world["price"][item])
    tasks, ys, truth = _labels(cfg, rng, click_score, buy_score)
    click = ys[0] == 1

    cont = np.stack([np.log1p(world["activity"][user]), np.log(world["price"][item])], axis=1)
    cont = (cont - cont[: cfg.n_train].mean(0)) / cont[: cfg.n_train].std(0)
    fields = _fields(cfg, rng, user, item, ctx, world)
    spec, one_hot_names, cat = _inputs(cfg, fields)
    y = np.stack(ys, axis=1)
    bounds = np.cumsum([0, cfg.n_train, cfg.n_valid, cfg.n_test])
    xt, ct, yt = (torch.from_numpy(a) for a in (cont.astype(np.float32), cat.astype(np.int64), y))
    names = ("train", "valid", "test")
    splits = {s: Split(xt[a:z], ct[a:z], yt[a:z]) for s, a, z in zip(names, bounds[:-1], bounds[1:])}
    test = slice(int(bounds[2]), int(bounds[3]))
    provenance: dict[str, Any] = {
        "dataset": "recsys",
        "generator": "hpo.data.recsys (latent factors, Zipf popularity, purchases only after clicks)",
        "config": cfg.model_dump(exclude={"kind"}),
        "click_rate": float(click.mean()),
        "purchase_rate_among_clicks": float((y[click, 1] == 1).mean()) if click.any() else None,
        "oracle_test_auc": {
            t.name: _oracle_auc(y[test, k].astype(np.float64), truth[k][test])
            for k, t in enumerate(tasks)
            if t.kind == "binary"
        },
    }
    provenance["sparse_fields"] = [  # generated IDs: every value is known, there is no out-of-vocabulary row
        {"name": f.name, "vocabulary": f.vocab, "out_of_vocabulary_row": False} for f in spec.sparse
    ]
    return TabularDataset(
        f"recsys-rho{cfg.relatedness:g}-seed{cfg.seed}",
        spec,
        tuple(tasks),
        splits,
        ("user_activity", "item_price"),
        one_hot_names,
        provenance,
    )


def _fields(
    cfg: RecsysConfig,
    rng: np.random.Generator,
    user: np.ndarray,
    item: np.ndarray,
    ctx: np.ndarray,
    world: dict[str, np.ndarray],
) -> list[tuple[str, int, np.ndarray]]:
    """Every ID field as (name, vocabulary, 0-based values): the five of the model, then the extra ones (drawn
    after everything else, so the labels are the same with or without them)."""
    fields = [
        ("user", cfg.n_users, user),
        ("item", cfg.n_items, item),
        ("item_category", cfg.item_categories, world["category"][item]),
        ("context", cfg.n_contexts, ctx),
        ("user_segment", cfg.user_segments, world["segment"][user]),
    ]
    for k in range(cfg.extra_fields):
        owner, size, who = (user, cfg.n_users, "user") if k % 2 == 0 else (item, cfg.n_items, "item")
        attribute = _popular(rng, cfg.extra_vocab, cfg.zipf, size)  # a popular city, brand, author...
        fields.append((f"{who}_attr{k}", cfg.extra_vocab, attribute[owner]))
    return fields


def _inputs(
    cfg: RecsysConfig, fields: list[tuple[str, int, np.ndarray]]
) -> tuple[InputSpec, tuple[str, ...], np.ndarray]:
    """The input spec, the one-hot fields' names and the code matrix: one-hot fields' global codes first, then
    the sparse fields' own codes (0-based: the generator has no out-of-vocabulary value)."""
    embed = {"none": set(), "ids": {"user", "item"}, "all": {f[0] for f in fields}}[cfg.sparse]
    one_hot = [f for f in fields if f[0] not in embed]
    sparse = [f for f in fields if f[0] in embed]
    cards = tuple(v for _, v, _ in one_hot)
    offsets = np.cumsum([0, *cards[:-1]]) if cards else np.zeros(0, dtype=np.int64)
    columns = [codes + offset for (_, _, codes), offset in zip(one_hot, offsets, strict=True)]
    columns += [codes for _, _, codes in sparse]
    n = len(fields[0][2])
    cat = np.stack(columns, axis=1) if columns else np.zeros((n, 0), dtype=np.int64)
    spec = InputSpec(2, cards, tuple(SparseField(name, v) for name, v, _ in sparse))
    return spec, tuple(name for name, _, _ in one_hot), cat
