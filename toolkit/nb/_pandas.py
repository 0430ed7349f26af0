"""pandas is an optional extra: imported only by `.to_pandas()`, with a message that says how to get it."""

from __future__ import annotations

PANDAS_HINT = "pip install 'installation-toolkit[pandas]'"


def require_pandas():
    """The pandas module, or an ImportError that names the extra to install."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            f"to_pandas() needs pandas, an optional extra: {PANDAS_HINT} "
            "(everything else in toolkit.nb works without it)"
        ) from exc
    return pandas


def frame(columns, rows):
    """A DataFrame of plain Python values (no Secret ever reaches here: callers pass masks)."""
    pandas = require_pandas()
    return pandas.DataFrame([list(row) for row in rows], columns=list(columns))
