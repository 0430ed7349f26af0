"""The audit: every finding of DESIGN.md §4.4, streamed from the database into a Report.

    codes.py    THE table of codes, severities and hints
    finding.py  Finding, the record of §4.4 (never a secret's value)
    checks.py   small pure functions, one per kind of finding
    row_auditor.py     Auditor: the checks composed per installation, compiled once per run
    nonces.py   IV traces and nonce-reuse detection across all values (and processes)
    sql.py      filters -> WHERE clauses; the queries
    engine.py   run_audit: COPY streaming, worker processes, SQLite path
    report.py   Report: summary, findings, text/json/csv/html, DataFrame, baseline diff
    store.py    saved audits (SQLite), history, and the state the incremental audit starts from
    incremental.py     audit(): a full or incremental audit with the store, saved

    >>> report = run_audit(database, registry, keyring, Filters(apps=("stripe",)))
    >>> report.exit_code("warning"), report.render("json")
"""

from ..codes import ALL_CODES, CODES, FAIL_LEVELS, SEVERITIES, Code, select_codes
from .engine import DEFAULT_JOBS, run_audit
from .finding import FIELDS, Finding
from .report import FORMATS, Baseline, Report
from .sql import Filters

__all__ = [
    "ALL_CODES",
    "CODES",
    "DEFAULT_JOBS",
    "FAIL_LEVELS",
    "FIELDS",
    "FORMATS",
    "SEVERITIES",
    "Baseline",
    "Code",
    "Filters",
    "Finding",
    "Report",
    "audit_context",
    "run_audit",
    "select_codes",
]


def audit_context(context, filters: Filters | None = None, **kwargs) -> Report:
    """run_audit with a toolkit `Context`'s database, registry and keyring."""
    return run_audit(context.database, context.registry, context.keyring, filters, **kwargs)
