"""How hpo names what it stores, in one place that search writes by and the report reads by.

* tuning study of an architecture: ``SPEC/ARCH``; its retraining: ``SPEC/ARCH/retrain``;
* retrain seed ``s`` initialises with seed ``s`` and orders the data with seed ``s + DATA_SEED_OFFSET`` (two
  distinct random streams), which the report states in its provenance.
"""

from __future__ import annotations

__all__ = ["DATA_SEED_OFFSET", "retrain_study_name", "seeds_of", "tuning_study_name"]

DATA_SEED_OFFSET = 7919  # data order is its own random stream, distinct from initialisation


def tuning_study_name(spec: str, arch: str) -> str:
    return f"{spec}/{arch}"


def retrain_study_name(spec: str, arch: str) -> str:
    return f"{tuning_study_name(spec, arch)}/retrain"


def seeds_of(seed: int) -> tuple[int, int]:
    """(initialisation seed, data-order seed) of retrain seed ``seed``."""
    return seed, seed + DATA_SEED_OFFSET
