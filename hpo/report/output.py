"""Writing results so that nothing half-written is ever left behind.

A report is an HTML page and a dozen CSV files beside it; an export is a folder of tables. Each is written first
into a staging folder next to its destination (so on the same file system), then every file is moved into place
with an atomic rename. A full disk, a read-only folder or any other write error therefore ends in one line naming
the destination and the cause (exit 2 from the command line), the staging folder is removed, and the destination
holds either the previous files or complete new ones, never a 0-byte CSV.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpo.errors import OutputError

__all__ = ["staged_folder", "write_table"]


@contextlib.contextmanager
def staged_folder(destination: str | Path) -> Iterator[Path]:
    """Yield a fresh folder to write into; on success move its files into ``destination`` (created if needed).
    Any ``OSError`` while writing or moving becomes :class:`OutputError`. On any failure the staging folder is
    removed, and so are the folders this call created (an error before writing leaves no empty output folder)."""
    target = Path(destination).resolve()
    created = [p for p in (target, *target.parents) if not p.exists()]
    stage: Path | None = None
    done = False
    try:
        target.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".hpo-writing-", dir=target))
        yield stage
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                final = target / path.relative_to(stage)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, final)
        done = True
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot write to {target}: {cause}; nothing was left half-written there") from None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        if not done:
            for folder in created:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()


def write_table(frame: Any, path: str | Path) -> bool:
    """Write a report table as CSV unless it is empty (a section with nothing in it writes no file, rather than a
    CSV of one newline); True if written."""
    if frame is None or frame.empty:
        return False
    frame.to_csv(path, index=False)
    return True
