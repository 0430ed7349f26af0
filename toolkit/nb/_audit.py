"""`AuditResult`: an audit report as a notebook shows it — counts first, then the findings.

Wraps the audit's `Report` (toolkit.audit) and adds what an analyst does next: drill down
with `.where(app=..., code=...)`, tables per code and per app, a DataFrame, a plot. Every
rendering is deterministic (no timings, no paths) so notebooks can be compared by nbval.
Findings never hold a secret's value (DESIGN.md §4.4), and every cell is HTML-escaped.

Lazy all the way: a big report's findings stay on disk (toolkit.audit's spill store), `.where()`
streams them into a new one, counts come from the report's aggregates, and the inline
renderings read only the first SHOWN_FINDINGS findings. `.table()`, `.to_pandas()` and
`.to_dict()` build everything they are asked for.
"""

from __future__ import annotations

import functools
import itertools

from ..audit import CODES, SEVERITIES, Report, select_codes
from . import _html
from ._pandas import require_pandas
from ._table import Table
from ..safe_text import escape_text
from ._text import plural, text_table

FINDING_COLUMNS = ("severity", "code", "installation_id", "user_id", "app_id", "field", "message")
SHOWN_FINDINGS = 20


class AuditResult:
    def __init__(self, findings, summary: dict | None = None, *, title: str = "Audit"):
        summary = dict(summary or {})
        self.title = title
        # What was audited (from the engine's summary); timings and paths are left out on purpose.
        self.installations_read = summary.get("installations")
        self.checked_codes = tuple(summary.get("codes") or CODES)
        # A report's `findings` are shared, not copied (a spilled report's stay on disk).
        self._report = Report(findings, {"codes": list(self.checked_codes)})

    # --- a sequence of findings --------------------------------------------------------
    @functools.cached_property
    def findings(self):
        """The findings: a tuple, or for a big audit a lazy sequence read from disk."""
        findings = self._report.findings
        return tuple(findings) if isinstance(findings, list) else findings

    def __len__(self) -> int:
        return len(self._report)

    def __iter__(self):
        return iter(self._report)

    def __getitem__(self, index):
        return self._report.findings[index]  # the report's own sequence: no copy per lookup

    # --- drill down --------------------------------------------------------------------
    def where(self, *, app=None, code=None, severity=None, installation_id=None, user_id=None,
              field=None) -> "AuditResult":
        """The findings matching every criterion. `code` takes an id, a prefix ("secret") or a glob."""
        codes = select_codes([code] if isinstance(code, str) else code) if code is not None else None
        kept = (
            f for f in self
            if _wanted(f.app_id, app) and (codes is None or f.code in codes)
            and _wanted(f.severity, severity) and _wanted(f.installation_id, installation_id)
            and _wanted(f.user_id, user_id) and _wanted(f.field, field)
        )
        criteria = (("app", app), ("code", code), ("severity", severity),
                    ("installation_id", installation_id), ("user_id", user_id), ("field", field))
        described = ", ".join(f"{k}={v!r}" for k, v in criteria if v is not None)
        checked = self.checked_codes if codes is None else tuple(c for c in self.checked_codes if c in codes)
        joiner = " and " if ", where " in self.title else ", where "
        result = AuditResult(kept, {"codes": checked}, title=f"{self.title}{joiner}{described}" if described else self.title)
        result.installations_read = None  # a subset: "installations read" no longer describes it
        return result

    # --- counts ------------------------------------------------------------------------
    @property
    def by_severity(self) -> dict[str, int]:
        return self._report.by_severity()

    @property
    def by_code(self) -> dict[str, int]:
        """Every checked code with its count (0 for the clean ones), in the codes table's order."""
        return self._report.by_code()

    @property
    def by_app(self) -> dict[str, dict[str, int]]:
        """app id -> counts per severity, most findings first ("(users)" for user findings)."""
        return self._report.by_app()

    @property
    def installation_ids(self) -> list[int]:
        return sorted({f.installation_id for f in self if f.installation_id is not None})

    @functools.cached_property
    def _installation_count(self) -> int:
        """len(installation_ids), in 8 bytes per finding (numpy) rather than a set of ints."""
        ids = (f.installation_id for f in self if f.installation_id is not None)
        try:
            import numpy
        except ImportError:
            return len(set(ids))
        values, filled = numpy.empty(len(self), dtype=numpy.int64), 0  # no regrowing buffer
        while chunk := list(itertools.islice(ids, 4096)):
            values[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        values = values[:filled]
        values.sort(kind="heapsort")  # in place, no scratch buffer (unlike numpy.unique)
        return int(values.size and 1 + numpy.count_nonzero(values[1:] != values[:-1]))

    @property
    def headline(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.by_severity.items())
        where = f" in {plural(self._installation_count, 'installation')}"
        read = f" (of {self.installations_read} read)" if self.installations_read is not None else ""
        return f"{self.title}: {plural(len(self), 'finding')} ({counts}){where}{read}"

    def codes(self, *, all_codes: bool = False) -> Table:
        """Count per code with severity and hint; only codes found unless `all_codes`."""
        rows = [(code, CODES[code].severity, n, CODES[code].hint)
                for code, n in self.by_code.items() if n or all_codes]
        return Table("Findings per code", ("code", "severity", "count", "hint"), rows, numeric={"count"})

    def apps(self) -> Table:
        rows = [(app, *(counts[s] for s in SEVERITIES), sum(counts.values())) for app, counts in self.by_app.items()]
        return Table("Findings per app", ("app_id", *SEVERITIES, "total"), rows,
                     numeric={*SEVERITIES, "total"})

    def table(self) -> Table:
        """The findings, one row each (hints are per code: see `.codes()`)."""
        return self._table(self)

    def _table(self, findings, total=None) -> Table:
        rows = [tuple(getattr(f, c) for c in FINDING_COLUMNS) for f in findings]
        kind = Table if total is None else _Preview
        extra = {} if total is None else {"total": total}
        return kind("Findings", FINDING_COLUMNS, rows, numeric={"installation_id", "user_id"},
                    display_rows=SHOWN_FINDINGS, **extra)

    def _preview(self) -> Table:
        """What the inline renderings show of `.table()`: its first rows, read lazily."""
        return self._table(itertools.islice(self, SHOWN_FINDINGS), total=len(self))

    # --- conversions -------------------------------------------------------------------
    def to_pandas(self):
        """One row per finding, the DESIGN.md §4.4 columns (code and severity categorical)."""
        require_pandas()  # the clear message, before the report imports pandas itself
        return self._report.to_pandas()

    def to_dict(self) -> dict:
        return {"summary": {"findings": len(self), "by_severity": self.by_severity,
                            "by_code": self.by_code, "by_app": self.by_app},
                "findings": [f.to_dict() for f in self]}

    def plot(self):
        """Findings per app, stacked by code (matplotlib Figure)."""
        from ._plots import plot_findings

        return plot_findings(self)

    # --- renderings --------------------------------------------------------------------
    def __repr__(self) -> str:
        parts = [escape_text(self.headline)]  # the title quotes filters: customer text
        codes = self.codes()
        if codes.rows:
            parts += ["", text_table(("code", "severity", "count"), [r[:3] for r in codes.rows], numeric={"count"})]
            apps = self.apps()
            parts += ["", text_table(apps.columns, apps.rows, numeric=apps.numeric)]
            parts += ["", repr(self._preview())]
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        parts = [_html.heading(self.headline)]
        codes = self.codes()
        if codes.rows:
            parts.append(_html.table(codes.columns, codes.rows, numeric=codes.numeric))
            apps = self.apps()
            parts.append(_html.table(apps.columns, apps.rows, numeric=apps.numeric))
            findings = self._preview()
            shown, more = findings._shown()
            parts.append(_html.heading(f"Findings ({len(findings)})"))
            parts.append(_html.table(findings.columns, shown, numeric=findings.numeric))
            if more:
                parts.append(_html.note(more))
        return _html.block(*parts)


def _wanted(value, criterion) -> bool:
    if criterion is None:
        return True
    if isinstance(criterion, (set, frozenset, list, tuple)):
        return value in criterion
    return value == criterion


class _Preview(Table):
    """The first rows of a long table, standing for `total` rows (len and the "more" note)."""

    def __init__(self, *args, total: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._total = total

    def __len__(self) -> int:
        return self._total
