"""Reading the config column without crashing on what PostgreSQL and SQLite happily store.

jsonb accepts nesting far deeper than Python's recursion limit, and a SQLite text column
holds anything. Such a config reads as `Unreadable` (its kind, never its content), which
every front end shows as a config that is not an object.
"""

from __future__ import annotations

import json


class Unreadable:
    """A config value the parser could not build; keeps only what kind of problem it is."""

    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind}>"


def tolerant_loads(text):
    try:
        return json.loads(text)
    except RecursionError:
        return Unreadable("JSON nested too deeply")
    except ValueError:
        return Unreadable("not valid JSON")
