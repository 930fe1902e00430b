"""A stop request (Ctrl-C, SIGTERM) that cannot be lost.

The signal handler raises KeyboardInterrupt in whatever the main thread is running when the signal lands. If that
happens inside a weakref callback or a ``__del__`` (SQLAlchemy cleans up its ORM state in one), Python prints
"Exception ignored" and drops it, and training would go on to the end of the study. So the handler also records
the request, and the places that run between units of work (the end of every epoch, every trial of a worker's
loop) raise it again where an exception does propagate: at worst one epoch later.
"""

from __future__ import annotations

import threading

__all__ = ["check", "clear", "request", "requested"]

_REQUESTED = threading.Event()


def request() -> None:
    _REQUESTED.set()


def clear() -> None:
    _REQUESTED.clear()


def requested() -> bool:
    return _REQUESTED.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a stop was requested (the first raise may have been swallowed)."""
    if _REQUESTED.is_set():
        raise KeyboardInterrupt
