"""Interactive tables (sort, search, page in the browser) with itables — opt-in, an optional extra.

    tk.interactive()            # or nb.connect(interactive=True); tk.interactive(False) to stop

Off by default, and never switched on by merely having itables installed: nbval compares
each cell's HTML, so the committed notebooks must render the same with or without it
(DESIGN.md §6). itables is imported only when switched on; its tables escape every cell
(`allow_html=False`), and a `Table` never holds a secret, so none can reach the browser.
"""

from __future__ import annotations

ITABLES_HINT = "pip install 'installation-toolkit[itables]'"

_state = {"on": False}


def require_itables():
    try:
        import itables
        import pandas  # noqa: F401 — itables renders DataFrames
    except ImportError as exc:
        raise ImportError(f"interactive tables need itables and pandas, an optional extra: {ITABLES_HINT}") from exc
    return itables


def interactive(on: bool = True) -> bool:
    """Render every `Table` as an interactive DataTable (True) or as static HTML (False)."""
    if on:
        require_itables()  # say so now, not in the middle of rendering a result
    _state["on"] = bool(on)
    return _state["on"]


def enabled() -> bool:
    return _state["on"]


def datatable(columns, rows, caption: str) -> str:
    from ._pandas import frame

    return require_itables().to_html_datatable(frame(columns, rows), caption=caption, allow_html=False)
