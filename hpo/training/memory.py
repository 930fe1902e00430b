"""How many replicas of a model fit on a device at once: the multi-seed trainer's chunk size."""

from __future__ import annotations

import torch

__all__ = [
    "CPU_CHUNK_ACTIVATION_BYTES",
    "activation_bytes_per_replica",
    "bytes_per_replica",
    "cpu_chunk_cap",
    "free_bytes",
    "replicas_that_fit",
]


def bytes_per_replica(
    parameters: int, units_per_layer: list[int], batch_size: int, bytes_per_value: int = 4
) -> int:
    """Weights, gradients, Adam's two moments and the best-epoch copy (5x the parameters), plus the batch's
    activations kept for the backward pass (about 4 values per hidden unit per example)."""
    return 5 * bytes_per_value * parameters + activation_bytes_per_replica(
        units_per_layer, batch_size, bytes_per_value
    )


def activation_bytes_per_replica(
    units_per_layer: list[int], batch_size: int, bytes_per_value: int = 4
) -> int:
    """One batch's activations kept for the backward pass: about 4 values per hidden unit per example."""
    return bytes_per_value * 4 * batch_size * sum(units_per_layer)


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


# On a CPU, seeds trained as one vectorised model share each operation's fixed cost, and that is all they share:
# once a step's activations leave the caches, a chunk is slower per seed than lone runs. bench/chunk.py (one thread,
# census rows, batch 1024) found R = 4-8 seeds at most 10% faster per seed at the MMoE paper's size (2.2 MiB of
# activations per seed), no gain at 4 MiB, and 1.2-2.4x slower per seed at 10-34 MiB with 16-32 seeds; the tuned
# census configurations of the full spaces (PLE with 2044 units per layer) ran 2.5x slower per seed at 30 than
# at 1 (bench/PROFILE.md, eighteenth pass). A fixed byte count, not a timing, so the chunk never depends on the
# machine's load.
CPU_CHUNK_ACTIVATION_BYTES = 16 << 20


def cpu_chunk_cap(activation_bytes: int) -> int:
    """The most seeds a CPU chunk holds: as many as keep the step's activations within
    :data:`CPU_CHUNK_ACTIVATION_BYTES` (see :func:`activation_bytes_per_replica`), at least one."""
    return max(1, CPU_CHUNK_ACTIVATION_BYTES // max(activation_bytes, 1))


def replicas_that_fit(
    per_replica: int,
    device: torch.device,
    *,
    wanted: int,
    fraction: float = 0.5,
    cap: int | None = None,
    activation_bytes: int | None = None,
) -> int:
    """The number of replicas to train together: as many as ``fraction`` of the free memory holds, at most
    ``wanted`` (and ``cap``: on a CPU the gain flattens past a few dozen, and with ``activation_bytes`` per
    replica, :func:`cpu_chunk_cap`), at least one."""
    n = int(free_bytes(device) * fraction // max(per_replica, 1))
    if cap is None:
        cap = 1024 if device.type == "cuda" else 32
        if device.type != "cuda" and activation_bytes is not None:
            cap = min(cap, cpu_chunk_cap(activation_bytes))
    return max(1, min(wanted, n, cap))
