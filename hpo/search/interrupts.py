"""A stop request (Ctrl-C, SIGTERM) that cannot be lost.

The signal handler raises KeyboardInterrupt in whatever the main thread is running when the signal lands. If that
happens inside a weakref callback or a ``__del__`` (SQLAlchemy cleans up its ORM state in one), Python prints
"Exception ignored" and drops it, and training would go on to the end of the study. So the handler also records
the request, and the places that run between units of work (the end of every epoch, every trial of a worker's
loop) raise it again where an exception does propagate: at worst one epoch later.

It also remembers which signal asked (:func:`received`), so that the command, once it has cleaned up, can end the
way an untrapped process would: killed by that signal (see ``hpo.cli.entry``).
"""

from __future__ import annotations

import signal
import threading

__all__ = ["check", "clear", "received", "request", "requested"]

_REQUESTED = threading.Event()
_RECEIVED: list[int] = []  # the signal of the last request; kept after clear() for the command's exit


def request(signum: int = signal.SIGINT) -> None:
    _RECEIVED[:] = [signum]
    _REQUESTED.set()


def clear(*, forget: bool = False) -> None:
    """Drop a pending request; ``forget`` also drops which signal asked (a new command starting)."""
    _REQUESTED.clear()
    if forget:
        _RECEIVED.clear()


def received() -> int:
    """The signal that asked for the last stop (SIGINT when none did: a KeyboardInterrupt with no handler of
    ours installed is Python's own Ctrl-C)."""
    return _RECEIVED[0] if _RECEIVED else int(signal.SIGINT)


def requested() -> bool:
    return _REQUESTED.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a stop was requested (the first raise may have been swallowed)."""
    if _REQUESTED.is_set():
        raise KeyboardInterrupt
