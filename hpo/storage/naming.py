"""How hpo names what it stores, in one place that search writes by and the report reads by.

* tuning study of an architecture: ``SPEC/ARCH``; its retraining: ``SPEC/ARCH/retrain``;
* retrain seed ``s`` initialises with seed ``s`` and orders the data with seed ``s + DATA_SEED_OFFSET`` (two
  distinct random streams), which the report states in its provenance; in a crossed retrain (``retrain.cross``
  with ``data`` levels) seed ``s`` is cell ``(s // data, s % data)``: initialisation seed ``s // data`` and
  data-order seed ``s % data + DATA_SEED_OFFSET``;
* replicate ``r`` of a study: ``SPEC.rep<r>``; the retraining of the default configurations: ``SPEC.default``.
"""

from __future__ import annotations

__all__ = ["DATA_SEED_OFFSET", "retrain_study_name", "seeds_of", "tuning_study_name"]

DATA_SEED_OFFSET = 7919  # data order is its own random stream, distinct from initialisation


def tuning_study_name(spec: str, arch: str) -> str:
    return f"{spec}/{arch}"


def retrain_study_name(spec: str, arch: str) -> str:
    return f"{tuning_study_name(spec, arch)}/retrain"


def seeds_of(seed: int, cross_data: int | None = None) -> tuple[int, int]:
    """(initialisation seed, data-order seed) of retrain seed ``seed``; ``cross_data``: the number of data-order
    levels of a crossed retrain."""
    if cross_data:
        init, data = divmod(seed, cross_data)
        return init, data + DATA_SEED_OFFSET
    return seed, seed + DATA_SEED_OFFSET
