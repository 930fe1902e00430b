"""The vectorised chunk's size: memory, and on a CPU the activations that keep a chunk faster than lone runs."""

from __future__ import annotations

import torch

from hpo.models import InputSpec, TaskSpec, probe_model
from hpo.training.memory import (
    CPU_CHUNK_ACTIVATION_BYTES,
    activation_bytes_per_replica,
    bytes_per_replica,
    cpu_chunk_cap,
    replicas_that_fit,
)

CENSUS = InputSpec(n_continuous=7, cardinalities=(9, 52, 47, 17, 3, 7, 24, 15, 5, 9))
TASKS = (TaskSpec("income"), TaskSpec("marital"))
CPU = torch.device("cpu")


def _activations(arch: str, **hyper: object) -> int:
    units = [u.units for u in probe_model(arch, CENSUS, TASKS, **hyper).layer_units()]
    return activation_bytes_per_replica(units, 1024)


def test_activations_are_the_part_of_a_replicas_bytes_that_scales_with_the_batch() -> None:
    assert activation_bytes_per_replica([100, 8, 8], 1024) == 4 * 4 * 1024 * 116
    assert bytes_per_replica(1000, [100, 8, 8], 1024) == 5 * 4 * 1000 + activation_bytes_per_replica(
        [100, 8, 8], 1024
    )


def test_a_cpu_chunk_holds_small_models_together_and_trains_wide_ones_alone() -> None:
    """The cap follows the activations: the MMoE paper's census size (8 experts of 16, towers of 8; 2.2 MiB at
    batch 1024) trains 7 seeds at once, a tuned full-space PLE (three levels of 7 experts x 292) one."""
    paper = _activations("mmoe", n_experts=8, expert_units=(16,), tower_units=(8,))
    assert 2 << 20 < paper < 3 << 20
    assert cpu_chunk_cap(paper) == CPU_CHUNK_ACTIVATION_BYTES // paper == 7
    wide = _activations("ple", n_levels=3, n_specific=2, n_shared=3, expert_units=(292,), tower_units=(256,))
    assert wide > CPU_CHUNK_ACTIVATION_BYTES and cpu_chunk_cap(wide) == 1
    assert cpu_chunk_cap(0) == CPU_CHUNK_ACTIVATION_BYTES  # never a division by zero


def test_replicas_that_fit_applies_the_cap_on_the_cpu_only_when_told_the_activations() -> None:
    small = 1 << 10  # bytes per replica: memory never binds here
    assert replicas_that_fit(small, CPU, wanted=30) == 30
    assert replicas_that_fit(small, CPU, wanted=100) == 32  # the CPU's fixed cap
    assert replicas_that_fit(small, CPU, wanted=30, activation_bytes=34 << 20) == 1
    assert replicas_that_fit(small, CPU, wanted=30, activation_bytes=4 << 20) == 4
    assert replicas_that_fit(small, CPU, wanted=3, activation_bytes=1 << 20) == 3  # never more than wanted
    assert replicas_that_fit(small, CPU, wanted=30, cap=2, activation_bytes=1 << 20) == 2  # a given cap wins
