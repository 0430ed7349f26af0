"""The HTML report: one self-contained page (inline CSS, no scripts, no external links) that
an operator can attach to an email. Every value is escaped; nothing in it is a secret."""

from __future__ import annotations

from ..codes import CODES, SEVERITIES
from .report import _CHUNK, escape

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2433;margin:2em auto;max-width:75em;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #d8dde6;padding-bottom:.2em}
.meta{color:#5b6577}table{border-collapse:collapse;margin:.6em 0;width:auto}
th,td{border:1px solid #d8dde6;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.n{text-align:right;font-variant-numeric:tabular-nums}
.sev{display:inline-block;border-radius:.3em;padding:0 .45em;font-size:.85em;font-weight:600}
.error{background:#fde2e1;color:#a11}.warning{background:#fff1d6;color:#8a5300}.info{background:#e3efff;color:#1f4f99}
.hint{background:#f6f8fb;border-left:3px solid #9aa7bd;padding:.4em .8em;margin:.5em 0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.95em}
.new{font-weight:600;color:#a11}
"""


def _badge(severity: str) -> str:
    return f'<span class="sev {escape(severity)}">{escape(severity)}</span>'


def _findings_tables(groups, title_prefix: str = ""):
    """Each code's table; `groups` from `Report._groups` (findings streamed, a piece per
    few hundred rows)."""
    for code, count, severity, findings in groups:
        entry = CODES.get(code)
        out = [f'<h2 id="{escape(code)}">{escape(title_prefix)}<code>{escape(code)}</code> '
               f"{_badge(severity)} {count:,}</h2>"]
        if entry:
            out.append(f'<p class="hint"><b>What to do:</b> {escape(entry.hint)}</p>')
        out.append("<table><tr><th>installation</th><th>user</th><th>app</th><th>field</th><th>message</th></tr>")
        for f in findings:
            out.append(
                "<tr>" + "".join(f"<td>{escape(v)}</td>" for v in (
                    f.installation_id, f.user_id, f.app_id, f.field, f.message)) + "</tr>")
            if len(out) >= _CHUNK:
                yield "\n" + "\n".join(out)
                out = []
        out.append("</table>")
        yield "\n" + "\n".join(out)


def iter_html(report, *, page: bool = True):
    """The page in pieces; joined, exactly what the lines below joined with newlines give."""
    summary = report._summary()
    counts = summary["by_severity"]
    body = [
        "<h1>Installation audit</h1>",
        f'<p class="meta">{escape(summary.get("database", ""))} · '
        f'{summary.get("installations", 0):,} installations · {len(report):,} findings · '
        + " ".join(f"{_badge(s)} {counts.get(s, 0):,}" for s in SEVERITIES)
        + (f' · generated {escape(summary["generated_at"])}' if page and summary.get("generated_at") else "")
        + "</p>",
    ]
    if summary.get("filters"):
        body.append(f'<p class="meta">Filters: {escape(summary["filters"])}</p>')
    body.append("<table><tr><th>code</th><th>severity</th><th>findings</th></tr>")
    for code, n in summary["by_code"].items():
        severity = CODES[code].severity if code in CODES else ""
        label = f'<a href="#{escape(code)}"><code>{escape(code)}</code></a>' if n else f"<code>{escape(code)}</code>"
        body.append(f"<tr><td>{label}</td><td>{_badge(severity)}</td><td class=n>{n:,}</td></tr>")
    body.append("</table>")
    if summary["by_app"]:
        body.append("<table><tr><th>app</th>" + "".join(f"<th>{s}</th>" for s in SEVERITIES) + "</tr>")
        for app, row in summary["by_app"].items():
            body.append(f"<tr><td>{escape(app)}</td>" + "".join(
                f"<td class=n>{row.get(s, 0):,}</td>" for s in SEVERITIES) + "</tr>")
        body.append("</table>")
    baseline = report.baseline
    if baseline is not None:
        body.append(f'<p class="new">Compared with the baseline {escape(baseline.source or "")}: '
                    f"{len(baseline.new):,} new, {len(baseline.fixed):,} fixed, "
                    f"{baseline.unchanged:,} unchanged (not listed).</p>")
    if page:
        yield ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<title>Installation audit</title><style>" + _CSS + "</style></head><body>\n")
    else:
        yield '<div class="toolkit-audit">'
    yield "\n".join(body)
    if baseline is None:
        yield from _findings_tables(report._groups())
    else:
        yield from _findings_tables(report._groups("new"), "New: ")
        yield from _findings_tables(report._groups("fixed"), "Fixed: ")
    yield "\n</body></html>\n" if page else "</div>"
