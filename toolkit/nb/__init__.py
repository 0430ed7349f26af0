"""Notebook helpers: audits, lookups and configs that display richly in Jupyter.

    from toolkit import nb
    tk = nb.connect()                 # environment / .env, or the demo database; nb.connect(fresh=True)
    nb.overview()                     # installations per status and app      (.plot())
    result = nb.audit()               # AuditResult: counts, findings          (.where(app=..., code=...),
                                      #   .codes(), .apps(), .to_pandas(), .plot())
    nb.installations(app="stripe")    # Table of installations (keyset page)   (.to_pandas())
    nb.installations(code="secret")   #   those with findings of a code in the latest saved audit
    nb.users(email="example.org")     # Table of users (never their password)
                                      #   every helper that lists rows takes limit= (default nb.LIMIT, 50)
    cfg = nb.config(42)               # masked config;  cfg.reveal("apiKey") -> str, logged (via="notebook")
    nb.key_status()                   # stored secrets per key
    nb.rotation_dry_run()             # what `toolkit keys rotate` would change (changes nothing)
    tk.history()                      # saved `toolkit audit` runs of this database (.plot(): the trend)
    tk.configs                        # the config service, for writes
    tk.interactive()                  # tables as interactive DataTables (the [itables] extra; opt-in)

Every result has `_repr_html_` (escaped tables with counts and severities), a plain-text
`repr`, and `.to_pandas()` — pandas is an optional extra (`installation-toolkit[pandas]`),
matplotlib too (`installation-toolkit[plot]`), itables too (`installation-toolkit[itables]`,
switched on only by `tk.interactive()`: a notebook renders the same whether it is installed
or not); without them everything else works. Severities are coloured alike in every table
and chart (error red, warning amber, info blue). Secrets are
masked in every rendering; only `.reveal()` returns one, after writing the access log.
Nothing here imports the terminal UI (toolkit.tui, textual).
"""

from ._audit import AuditResult
from ._config import ConfigResult
from ._interactive import ITABLES_HINT
from ._interactive import interactive as interactive
from ._history import History
from ._keys import KeyStatus
from ._pandas import PANDAS_HINT
from ._plots import PLOT_HINT
from ._rotation import RotationPlan
from ._session import Overview, Session, connect, current
from ._table import LIMIT, Table

__all__ = [
    "ITABLES_HINT",
    "LIMIT",
    "PANDAS_HINT",
    "PLOT_HINT",
    "AuditResult",
    "ConfigResult",
    "History",
    "KeyStatus",
    "Overview",
    "RotationPlan",
    "Session",
    "Table",
    "audit",
    "config",
    "connect",
    "current",
    "history",
    "installations",
    "interactive",
    "key_status",
    "overview",
    "rotation_dry_run",
    "users",
]


def overview() -> Overview:
    return current().overview()


def audit(**filters) -> AuditResult:
    return current().audit(**filters)


def history(limit: int | None = LIMIT) -> History:
    return current().history(limit)


def installations(**filters) -> Table:
    return current().installations(**filters)


def users(**filters) -> Table:
    return current().users(**filters)


def config(installation_id: int) -> ConfigResult:
    return current().config(installation_id)


def key_status() -> KeyStatus:
    return current().key_status()


def rotation_dry_run(**options) -> RotationPlan:
    return current().rotation_dry_run(**options)


# The docstrings of the session methods serve the module-level helpers too.
for _name in ("overview", "audit", "history", "installations", "users", "config", "key_status", "rotation_dry_run"):
    globals()[_name].__doc__ = getattr(Session, _name).__doc__
del _name
