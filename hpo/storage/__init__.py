"""Storage: URLs and engines, locks, hpo's own tables (ticket owners, workers, seed results).

Search writes here and the report reads here; nothing in this package imports search, training or models.
"""

from hpo.storage.engine import (
    DEFAULT_STORAGE,
    engine_for,
    is_sqlite,
    mask_url,
    normalise_url,
    open_storage,
    sqlite_path,
)

__all__ = [
    "DEFAULT_STORAGE",
    "engine_for",
    "is_sqlite",
    "mask_url",
    "normalise_url",
    "open_storage",
    "sqlite_path",
]
