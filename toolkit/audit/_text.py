"""The text report: a summary table per code and per app, then the findings grouped by code
with their hint. Plain text (no colour codes), so it reads the same in a terminal, a CI log
or an email; every database-supplied name goes through `clean`, which escapes it with
`safe_text.escape_text` (no terminal escapes reach the reader)."""

from __future__ import annotations

from ..codes import CODES, SEVERITIES
from .report import _CHUNK, clean

_PLURAL = {"error": "errors", "warning": "warnings", "info": "info"}


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _severity_count(n: int, severity: str) -> str:
    return f"{n:,} info" if severity == "info" else _plural(n, severity)


def _table(headers, rows, align_right=()) -> list[str]:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in align_right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _where(finding) -> str:
    parts = []
    if finding.installation_id is not None:
        parts.append(f"installation {finding.installation_id}")
    if finding.user_id is not None:
        parts.append(f"user {finding.user_id}")
    if finding.app_id is not None:
        parts.append(clean(finding.app_id, 60))
    if finding.field is not None:
        parts.append(f"field {clean(finding.field, 60)}")
    return ", ".join(parts)


def _grouped(groups, title: str):
    """Each code's findings under its header and hint; `groups` from `Report._groups`."""
    for code, count, first_severity, findings in groups:
        entry = CODES.get(code)
        severity = entry.severity if entry else first_severity
        lines = ["", f"{title}{code} ({severity}) — {_plural(count, 'finding')}"]
        if entry:
            lines.append(f"  hint: {entry.hint}")
        for finding in findings:
            lines.append(f"  {_where(finding)}: {clean(finding.message, 400)}")
            if len(lines) >= _CHUNK:
                yield "\n".join(lines) + "\n"
                lines = []
        if lines:
            yield "\n".join(lines) + "\n"


def iter_text(report):
    """The text report in pieces (each ends with a newline), the findings streamed."""
    summary = report._summary()
    severities = summary["by_severity"]
    counted = ", ".join(_severity_count(severities.get(s, 0), s) for s in SEVERITIES)
    where = clean(summary.get("database", "the database"))
    installations = summary.get("installations")
    read = f"{_plural(installations, 'installation')}, " if installations is not None else ""
    lines = [f"Audit of {where}: {read}{_plural(len(report), 'finding')} ({counted})"]
    if summary.get("filters"):
        shown = "; ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in summary["filters"].items())
        lines.append(f"Filters: {clean(shown, 400)}")

    code_rows = [(code, CODES[code].severity if code in CODES else "?", f"{n:,}")
                 for code, n in summary["by_code"].items()]
    lines += ["", *_table(("code", "severity", "findings"), code_rows, align_right=(2,))]
    if summary["by_app"]:
        app_rows = [(clean(app, 40), *(f"{counts.get(s, 0):,}" for s in SEVERITIES))
                    for app, counts in summary["by_app"].items()]
        lines += ["", *_table(("app", *(_PLURAL[s] for s in SEVERITIES)), app_rows, align_right=(1, 2, 3))]

    baseline = report.baseline
    if baseline is not None:
        source = f" {clean(baseline.source, 400)}" if baseline.source else ""
        lines += ["", f"Compared with the baseline{source}: {len(baseline.new):,} new, "
                      f"{len(baseline.fixed):,} fixed, {baseline.unchanged:,} unchanged (not listed)."]
    yield "\n".join(lines) + "\n"
    if baseline is None:
        yield from _grouped(report._groups(), "")
    else:
        yield from _grouped(report._groups("new"), "NEW ")
        yield from _grouped(report._groups("fixed"), "FIXED ")
    if not len(report) and baseline is None:
        yield "\nNo findings.\n"
