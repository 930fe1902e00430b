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


_URL_PASSWORD = re.compile(r"(:/+[^:/@\s]+:)[^@\s]+@")


def mask_secrets(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", text)
