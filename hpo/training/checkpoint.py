"""A training run's state at an epoch boundary, on disk, so that a run whose process was stopped resumes there.

Why: on a CPU a tuned configuration of 2048-unit layers trains one seed for up to an hour (the census
retraining's, one thread a worker), and a worker stopped mid-chunk (a session's end, a pre-empted machine, Ctrl-C)
lost all of it: the chunk's retry trained every epoch again. With a checkpoint the retry continues from the last
epoch written, and ends with the same weights, curves and metrics as a run never stopped (the state holds the
weights, the best weights, the optimiser and loss-weighting state, every replica's data-order generator, early
stopping and curve, and the global random state; tests/training/test_checkpoint.py checks it to the bit).

A checkpoint belongs to one chunk of work: ``key`` fingerprints what it trains (architecture, configuration,
seeds, data), and a file written for another key is ignored. Writes go to a temporary file renamed into place, so
a process killed while writing leaves the previous checkpoint whole; a file that cannot be read is ignored with a
warning (training starts again from the first epoch, as without checkpoints). A state is written at most every
``every`` seconds (:data:`EVERY`), at the end of an epoch but the last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["Checkpoint", "fingerprint"]

log = logging.getLogger(__name__)

# seconds between writes (HPO_CHECKPOINT_SECONDS): a wide model's epoch on a CPU takes minutes, a small one's a
# fraction of a second, which a write each would slow
EVERY = float(os.environ.get("HPO_CHECKPOINT_SECONDS", "60"))


def fingerprint(**what: Any) -> str:
    """A short stable hash of ``what`` (JSON-able values): the key of a chunk's checkpoint."""
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpoint:
    """The checkpoint file of one chunk of work (see the module docstring)."""

    def __init__(self, path: Path, key: str, every: float | None = None) -> None:
        self.path, self.key, self.every = Path(path), key, EVERY if every is None else every
        self.resumed_epoch = 0  # the epoch :meth:`load` resumed after (0: none)
        self.failed = False  # a write failed: no more are tried
        self._saved = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The state written for this key, or None (no file, another key's, or unreadable)."""
        if not self.path.exists():
            return None
        try:
            state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a damaged file costs the epochs it held, nothing more
            log.warning("checkpoint %s unreadable (%s): training from the first epoch", self.path, exc)
            return None
        if state.get("key") != self.key:
            log.info("checkpoint %s belongs to other work: training from the first epoch", self.path)
            return None
        self.resumed_epoch = int(state["epoch"])
        return state

    def save(self, epoch: int, state: Callable[[], dict[str, Any]], *, force: bool = False) -> bool:
        """Write ``state()`` as of ``epoch`` if ``every`` seconds have passed since the last write (or ``force``);
        True when written."""
        if self.failed or (not force and time.monotonic() - self._saved < self.every):
            return False
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({**state(), "key": self.key, "epoch": epoch}, tmp)
            os.replace(tmp, self.path)
        except OSError as exc:  # a full or read-only disk costs the resumption, never the training
            log.warning(
                "checkpoint %s not written (%s): this run goes on without checkpoints", self.path, exc
            )
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self.failed = True
            return False
        self._saved = time.monotonic()
        return True

    def clear(self) -> None:
        """Remove the file (the chunk finished: its results are stored), and its study's folder and the storage's
        once empty."""
        self.path.unlink(missing_ok=True)
        for folder in (self.path.parent, self.path.parent.parent):
            with contextlib.suppress(OSError):  # not empty (other chunks in flight), or gone
                folder.rmdir()
