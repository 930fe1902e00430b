"""How many replicas of a model fit on a device at once: the multi-seed trainer's chunk size."""

from __future__ import annotations

import torch

__all__ = ["bytes_per_replica", "free_bytes", "replicas_that_fit"]


def bytes_per_replica(
    parameters: int, units_per_layer: list[int], batch_size: int, bytes_per_value: int = 4
) -> int:
    """Weights, gradients, Adam's two moments and the best-epoch copy (5x the parameters), plus the batch's
    activations kept for the backward pass (about 4 values per hidden unit per example)."""
    return bytes_per_value * (5 * parameters + 4 * batch_size * sum(units_per_layer))


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


def replicas_that_fit(
    per_replica: int, device: torch.device, *, wanted: int, fraction: float = 0.5, cap: int | None = None
) -> int:
    """The number of replicas to train together: as many as ``fraction`` of the free memory holds, at most
    ``wanted`` (and ``cap``: on a CPU the gain flattens past a few dozen), at least one."""
    n = int(free_bytes(device) * fraction // max(per_replica, 1))
    if cap is None:
        cap = 1024 if device.type == "cuda" else 32
    return max(1, min(wanted, n, cap))
