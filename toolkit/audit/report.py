"""The audit's result: findings plus a summary, rendered for people and machines.

    report.summary            counts by severity, code and app, what was read, how
    report.findings           [Finding] sorted by severity, code, installation
    report.render(fmt)        "text" | "json" | "csv" | "html" (one self-contained page)
    report.to_pandas()        a DataFrame (pandas imported only here)
    report.compare(baseline)  new / fixed against an earlier JSON report (CI gates on new)
    report.exit_code(level)   DESIGN.md §4.2: 1 when a (new) finding reaches the fail level

The JSON report is exactly `{"summary": {...}, "findings": [...]}`, each finding with the
fields of DESIGN.md §4.4 and nothing else. No renderer ever sees a secret: findings hold none.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from pathlib import Path

from .. import json_files
from ..errors import ExitCode, UsageError
from ..safe_text import escape_text
from .codes import CODES, FAIL_LEVELS, SEVERITIES, at_or_above
from .finding import FIELDS, Finding

FORMATS = ("text", "json", "csv", "html")
USERS_ROW = "(users)"  # the per-app table's row for findings without an app
_MAX_SHOWN = 200  # characters of a database-supplied name shown in text and HTML
# Spreadsheet formula injection (a config key is customer data): such cells get a leading '.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Baseline:
    """What changed since an earlier report: findings matched on `Finding.key`."""

    def __init__(self, current, earlier, source: str | None = None):
        earlier_keys = {f.key for f in earlier}
        current_keys = {f.key for f in current}
        self.source = source
        self.new = [f for f in current if f.key not in earlier_keys]
        self.fixed = [f for f in earlier if f.key not in current_keys]
        self.unchanged = len(current) - len(self.new)

    def summary(self) -> dict:
        return {
            "file": self.source,
            "new": len(self.new),
            "fixed": len(self.fixed),
            "unchanged": self.unchanged,
            "new_findings": [f.to_dict() for f in self.new],
            "fixed_findings": [f.to_dict() for f in self.fixed],
        }


class Report:
    def __init__(self, findings, meta: dict | None = None, *, baseline: Baseline | None = None):
        self.findings: list[Finding] = list(findings)
        self.meta = dict(meta or {})
        self.baseline = baseline

    # ---- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self):
        return iter(self.findings)

    def __repr__(self) -> str:
        counts = self.by_severity()
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"<Report {len(self.findings)} findings{': ' + shown if shown else ''}>"

    def by_severity(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
        return counts

    def by_code(self) -> dict[str, int]:
        """Every checked code (table order), with 0 for the clean ones."""
        checked = self.meta.get("codes") or list(CODES)
        counts = dict.fromkeys(checked, 0)
        for finding in self.findings:
            counts[finding.code] = counts.get(finding.code, 0) + 1
        return counts

    def by_app(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for finding in self.findings:
            row = table.setdefault(finding.app_id or USERS_ROW, dict.fromkeys(SEVERITIES, 0))
            row[finding.severity] += 1
        return dict(sorted(table.items(), key=lambda item: (-sum(item[1].values()), item[0])))

    @property
    def summary(self) -> dict:
        summary = {
            "findings": len(self.findings),
            "by_severity": self.by_severity(),
            "by_code": self.by_code(),
            "by_app": self.by_app(),
            **self.meta,
        }
        if self.baseline is not None:
            summary["baseline"] = self.baseline.summary()
        return summary

    def select(self, *, code=None, severity=None, app_id=None, installation_id=None) -> list[Finding]:
        """Findings matching every criterion given (a value or a collection of values)."""
        def wanted(value, criterion):
            if criterion is None:
                return True
            if isinstance(criterion, (set, frozenset, list, tuple)):
                return value in criterion
            return value == criterion

        return [f for f in self.findings if wanted(f.code, code) and wanted(f.severity, severity)
                and wanted(f.app_id, app_id) and wanted(f.installation_id, installation_id)]

    # ---- baseline and exit codes -------------------------------------------------------
    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> "Report":
        """An earlier JSON report (for --baseline). UsageError, one line, if it is not one."""
        where = source or "the baseline"
        try:
            data = json_files.parse(text)  # nesting too deep is one line too
        except ValueError as exc:
            raise UsageError(f"{where} is not JSON ({exc})", hint="pass a report written by `toolkit audit --format json`") from None
        if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
            raise UsageError(f"{where} is not an audit report: no \"findings\" list",
                             hint="pass a report written by `toolkit audit --format json`")
        findings = []
        for number, item in enumerate(data["findings"], start=1):
            if not isinstance(item, dict) or item.get("code") not in CODES:
                raise UsageError(f"{where}: finding #{number} has no known audit code",
                                 hint="pass a report written by `toolkit audit --format json`")
            findings.append(Finding.from_dict(item))
        summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
        return cls(findings, {k: v for k, v in summary.items() if k in ("database", "codes", "filters", "generated_at")})

    @classmethod
    def load(cls, path) -> "Report":
        path = Path(path)
        try:
            text = json_files.read_text(path)  # bounded: /dev/zero is refused
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the baseline {path}: {getattr(exc, 'strerror', None) or exc}") from None
        return cls.from_json(text, source=str(path))

    def compare(self, baseline: "Report", source: str | None = None) -> "Report":
        """This report with what is new and what was fixed since `baseline`.

        Only codes both runs checked are compared: a finding of a code the baseline did not
        check is not "new", and one this run did not check is not "fixed"."""
        checked = set(self.meta.get("codes") or CODES)
        before = set(baseline.meta.get("codes") or CODES)
        earlier = [f for f in baseline.findings if f.code in checked]
        diff = Baseline([f for f in self.findings if f.code in before], earlier, source)
        # Findings of codes the baseline never checked are new by definition.
        diff.new += [f for f in self.findings if f.code not in before]
        diff.unchanged = len(self.findings) - len(diff.new)
        return Report(self.findings, self.meta, baseline=diff)

    def exit_code(self, fail_on: str = "error") -> ExitCode:
        """FINDINGS when a finding (a new one, with a baseline) reaches `fail_on`, else OK."""
        if fail_on not in FAIL_LEVELS:
            raise UsageError(f"--fail-on must be one of {', '.join(FAIL_LEVELS)}, got {fail_on!r}")
        counted = self.baseline.new if self.baseline is not None else self.findings
        if any(at_or_above(f.severity, fail_on) for f in counted):
            return ExitCode.FINDINGS
        return ExitCode.OK

    # ---- renderers ---------------------------------------------------------------------
    def render(self, fmt: str = "text") -> str:
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return getattr(self, f"to_{fmt}")()

    def to_json(self, indent: int | None = 2) -> str:
        document = {"summary": self.summary, "findings": [f.to_dict() for f in self.findings]}
        return json.dumps(document, indent=indent, ensure_ascii=False) + "\n"

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        changed = {f.key for f in self.baseline.new} if self.baseline is not None else None
        writer.writerow(FIELDS + (("change",) if changed is not None else ()))
        for finding in self.findings:
            row = [_csv_cell(getattr(finding, name)) for name in FIELDS]
            if changed is not None:
                row.append("new" if finding.key in changed else "unchanged")
            writer.writerow(row)
        return out.getvalue()

    def to_text(self) -> str:
        from ._text import render_text

        return render_text(self)

    def to_html(self, *, page: bool = True) -> str:
        from ._html import render_html

        return render_html(self, page=page)

    def _repr_html_(self) -> str:
        return self.to_html(page=False)

    def to_pandas(self):
        """The findings as a DataFrame (one row per finding, the §4.4 columns)."""
        import pandas as pd

        frame = pd.DataFrame([f.to_dict() for f in self.findings], columns=list(FIELDS))
        for name in ("installation_id", "user_id"):
            frame[name] = frame[name].astype("Int64")
        frame["code"] = pd.Categorical(frame["code"], categories=list(CODES))
        frame["severity"] = pd.Categorical(frame["severity"], categories=list(SEVERITIES), ordered=False)
        return frame

    def write(self, fmt: str, path) -> None:
        Path(path).write_text(self.render(fmt), encoding="utf-8")


def generated_at() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def clean(text, limit: int = _MAX_SHOWN) -> str:
    """A database-supplied string made safe for a terminal or a page: control and bidi
    characters escaped, long names cut."""
    if text is None:
        return ""
    text = escape_text(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _csv_cell(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def escape(text) -> str:
    return html.escape(clean(text), quote=True)
