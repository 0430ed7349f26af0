"""`History`: the saved audit runs of this database (the audit store), and their trend.

    tk.history()             newest first: time, mode, findings by severity, duration, rows read
    tk.history().plot()      findings by severity and by code over time (matplotlib, lazily)
    tk.history().to_pandas() one row per run, a column per severity and per code

The runs are those `toolkit audit` saved (`tk.audit()` saves nothing): counts only, never a
finding's value.
"""

from __future__ import annotations

from ..audit import CODES, SEVERITIES
from . import _html
from ._pandas import require_pandas
from ._text import text_table

COLUMNS = ("id", "generated_at", "mode", *SEVERITIES, "duration_s", "rows_read")


class History:
    def __init__(self, runs):
        self.runs = tuple(runs)  # store.runs(): newest first

    def __len__(self) -> int:
        return len(self.runs)

    def _rows(self) -> list[tuple]:
        return [(r["id"], r["generated_at"], r["mode"], *(r["by_severity"].get(s, 0) for s in SEVERITIES),
                 r["duration_s"], r["rows_read"]) for r in self.runs]

    def __repr__(self) -> str:
        if not self.runs:
            return "History: no saved audits of this database"
        return f"History: {len(self.runs)} saved runs\n" + text_table(COLUMNS, self._rows())

    def _repr_html_(self) -> str:
        title = f"{len(self.runs)} saved audit runs" if self.runs else "No saved audits of this database"
        return _html.block(_html.heading(title), _html.table(COLUMNS, self._rows()))

    def to_pandas(self):
        pd = require_pandas()
        codes = [c for c in CODES if any(r["by_code"].get(c) for r in self.runs)]
        frame = pd.DataFrame([
            {"id": r["id"], "generated_at": pd.Timestamp(r["generated_at"]), "mode": r["mode"],
             **{s: r["by_severity"].get(s, 0) for s in SEVERITIES},
             **{c: r["by_code"].get(c, 0) for c in codes},
             "duration_s": r["duration_s"], "rows_read": r["rows_read"]}
            for r in reversed(self.runs)  # oldest first: a time series
        ], columns=["id", "generated_at", "mode", *SEVERITIES, *codes, "duration_s", "rows_read"])
        return frame

    def plot(self, *, width: float = 9.0):
        """Findings over time: by severity (top) and by code (bottom), one point per run."""
        from ._plots import plot_history

        return plot_history(self, width=width)
