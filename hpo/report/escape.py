"""The one HTML escape every report section uses: any text that comes from a user's file (names, parameters,
messages) goes through it, quotes included, so it can be placed in an attribute as safely as in text."""

from __future__ import annotations

import html

__all__ = ["esc"]


def esc(x: object) -> str:
    return html.escape(str(x), quote=True)
