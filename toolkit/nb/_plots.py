"""Charts where people would rather look than read (matplotlib is an optional extra).

Each function returns a `matplotlib.figure.Figure` built without pyplot: no global figure
state, nothing shown twice by the inline backend, and the caller decides to display, save
(`fig.savefig(...)`) or discard it. The counts behind each chart are the result objects'
tables: compare those, not pixels.
"""

from __future__ import annotations

from ..codes import CODES, SEVERITIES
from ._html import SEVERITY_COLORS

PLOT_HINT = "pip install 'installation-toolkit[plot]'"


def require_matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"plots need matplotlib, an optional extra: {PLOT_HINT}") from exc
    return Figure


def plot_findings(audit, *, width: float = 9.0):
    """Findings per app (rows), stacked by code, each code coloured by its severity (reds,
    ambers, blues) and the legend grouped the same way — the errors jump out."""
    Figure = require_matplotlib()
    by_app: dict[str, dict[str, int]] = {}
    for f in audit.findings:
        row = by_app.setdefault(f.app_id or "(users)", {})
        row[f.code] = row.get(f.code, 0) + 1
    apps = sorted(by_app, key=lambda a: (sum(by_app[a].values()), a))  # largest at the top
    codes = by_severity([c for c in audit.checked_codes if any(c in counts for counts in by_app.values())])
    fig = Figure(figsize=(width, 0.45 * max(len(apps), 1) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    left = [0] * len(apps)
    colors = severity_colours(codes)
    for code in codes:
        color = colors[code]
        counts = [by_app[a].get(code, 0) for a in apps]
        ax.barh(apps, counts, left=left, label=code, color=color)
        left = [x + n for x, n in zip(left, counts)]
    ax.set_xlabel("findings")
    ax.set_title(f"{audit.title}: findings per app and code")
    if codes:
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def plot_installations_per_status(overview, *, width: float = 8.0):
    """Installations per app, split by status (installed vs configured)."""
    Figure = require_matplotlib()
    statuses = list(overview.by_status)
    per = overview.by_app_status
    apps = sorted(per, key=lambda a: (-sum(per[a].values()), a))
    fig = Figure(figsize=(width, 4.0), layout="constrained")
    ax = fig.add_subplot()
    bottom = [0] * len(apps)
    for status, color in zip(statuses, _palette(len(statuses))):
        counts = [per.get(a, {}).get(status, 0) for a in apps]
        ax.bar(apps, counts, bottom=bottom, label=status, color=color)
        bottom = [b + n for b, n in zip(bottom, counts)]
    ax.set_ylabel("installations")
    ax.set_title("Installations per app and status")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(frameon=False)
    return fig


# Each severity's colour map, for a family of its codes (its one colour is the tables': _html).
_COLORMAPS = {"error": "Reds", "warning": "Oranges", "info": "Blues"}


def by_severity(codes) -> list[str]:
    """`codes` grouped by severity (errors, warnings, info), each group in the given order."""
    rank = {s: n for n, s in enumerate(SEVERITIES)}
    return sorted(codes, key=lambda code: rank.get(_severity(code), len(rank)))


def severity_colours(codes) -> dict:
    """A colour per code, from its severity's family: reds for errors, ambers for warnings,
    blues for info — the bars of one severity read as one group, each code still its own shade."""
    from matplotlib import colormaps

    groups: dict[str, list[str]] = {}
    for code in codes:
        groups.setdefault(_severity(code), []).append(code)
    colours = {}
    for severity, members in groups.items():
        cmap = colormaps[_COLORMAPS.get(severity, "Greys")]
        for n, code in enumerate(members):  # dark to light, never so light it vanishes
            colours[code] = cmap(0.85 - 0.5 * n / max(len(members) - 1, 1))
    return colours


def _severity(code: str) -> str:
    entry = CODES.get(code)
    return entry.severity if entry else "?"


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def plot_history(history, *, width: float = 9.0):
    """The saved runs' findings over time: by severity, then by code (codes ever found)."""
    import datetime as dt

    Figure = require_matplotlib()
    runs = list(reversed(history.runs))  # oldest first
    times = [dt.datetime.fromisoformat(r["generated_at"]) for r in runs]
    fig = Figure(figsize=(width, 6.0), layout="constrained")
    severity_axes, by_code = fig.subplots(2, 1, sharex=True)
    for severity, color in ((s, SEVERITY_COLORS[s]) for s in SEVERITIES):
        severity_axes.plot(times, [r["by_severity"].get(severity, 0) for r in runs], marker="o", label=severity, color=color)
    codes = by_severity(sorted({c for r in runs for c, n in r["by_code"].items() if n}))
    colors = severity_colours(codes)
    for code in codes:
        color = colors[code]
        by_code.plot(times, [r["by_code"].get(code, 0) for r in runs], marker=".", label=code, color=color)
    severity_axes.set_ylabel("findings")
    severity_axes.set_title("Saved audits: findings by severity")
    by_code.set_ylabel("findings")
    by_code.set_title("by code")
    severity_axes.legend(frameon=False, fontsize="small")
    if codes:
        by_code.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.autofmt_xdate()
    return fig
