"""One exception family for every mistake a user can make.

The CLI catches :class:`HpoError` and prints its message as one line with a non-zero exit; anything else is a bug
and keeps its traceback. Messages name the file, field or layer, what was expected and what was given.
"""

from __future__ import annotations

import re


class HpoError(Exception):
    """Base of all errors that stem from user input or the environment, not from a bug."""


class ConfigError(HpoError):
    """A model, training, study or search-space configuration is invalid."""


class BudgetError(ConfigError):
    """A model exceeds the shared hidden-unit budget at some depth."""


class DataError(HpoError):
    """A dataset file or declaration is missing, malformed or inconsistent."""


class StorageError(HpoError):
    """The trial database cannot be reached or used as asked."""


class OutputError(HpoError):
    """A report or export could not be written (a read-only folder, a full disk); nothing half-written is left."""


class WorkerError(HpoError):
    """A worker process ended badly (killed by a signal, or exited with an error) and work is left undone."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a command cleanly; the message says what was re-queued and how to resume."""


_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*:/+)([^\s'\"]+)")


def _mask(m: re.Match[str]) -> str:
    scheme, rest = m.groups()
    at = rest.split("?", 1)[0].rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return m.group(0)
    return f"{scheme}{rest[:at].partition(':')[0]}:***@{rest[at + 1 :]}"


def mask_secrets(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` by ``***``. URLs are parsed, not
    pattern-matched for a password: the user part ends at the *last* ``@`` before the host, so a password holding
    ``@``, ``:`` or ``/`` is hidden whole (and ``scheme:/`` as pathlib prints it is covered too)."""
    return _URL.sub(_mask, text)
