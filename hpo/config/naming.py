"""How hpo names what it stores, in one place that search writes by and the report reads by.

* tuning study of an architecture: ``SPEC/ARCH``; its retraining: ``SPEC/ARCH/retrain``; the probe of its best
  configurations that chooses which one is retrained (``retrain.select``): ``SPEC/ARCH/select``;
* retrain seed ``s`` initialises with seed ``s`` and orders the data with seed ``s + DATA_SEED_OFFSET`` (two
  distinct random streams), which the report states in its provenance; in a crossed retrain (``retrain.cross``
  with ``init``, ``data`` and ``splits`` levels) seed ``s`` is cell :func:`cross_cell`: held-out split
  ``s // (init * data)`` (0: the dataset's own), initialisation seed and data-order seed as above within it;
* replicate ``r`` of a study: ``SPEC.rep<r>``; the retraining of the default configurations: ``SPEC.default``.
"""

from __future__ import annotations

__all__ = [
    "DATA_SEED_OFFSET",
    "cross_cell",
    "retrain_study_name",
    "seeds_of",
    "select_study_name",
    "tuning_study_name",
]

DATA_SEED_OFFSET = 7919  # data order is its own random stream, distinct from initialisation


def tuning_study_name(spec: str, arch: str) -> str:
    return f"{spec}/{arch}"


def retrain_study_name(spec: str, arch: str) -> str:
    return f"{tuning_study_name(spec, arch)}/retrain"


def select_study_name(spec: str, arch: str) -> str:
    return f"{tuning_study_name(spec, arch)}/select"


def seeds_of(seed: int, cross_data: int | None = None) -> tuple[int, int]:
    """(initialisation seed, data-order seed) of retrain seed ``seed``; ``cross_data``: the number of data-order
    levels of a crossed retrain."""
    if cross_data:
        init, data = divmod(seed, cross_data)
        return init, data + DATA_SEED_OFFSET
    return seed, seed + DATA_SEED_OFFSET


def cross_cell(seed: int, cross: dict[str, int]) -> tuple[int, int, int]:
    """(split seed, initialisation seed, data-order seed) of retrain seed ``seed`` of a crossed retrain
    (``retrain.cross``: ``init``, ``data`` and ``splits`` levels): split ``seed // (init * data)``, then
    :func:`seeds_of` within the block."""
    split, within = divmod(seed, cross["init"] * cross["data"])
    return (split, *seeds_of(within, cross["data"]))
