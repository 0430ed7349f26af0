"""`connect()` and `Session`: one notebook's database, keyring and registry, and its lookups.

    tk = nb.connect()            # like the CLI: DATABASE_URL etc. from the environment / .env files,
                                 # the embedded demo database when DATABASE_URL is unset
    tk = nb.connect(demo=True)   # the demo database, whatever the environment says
    tk = nb.connect(fresh=True)  # a new demo database in a temporary directory (notebooks in CI:
                                 # every run starts from the same data, writes never carry over)

Module-level `nb.audit()`, `nb.config(42)`, … use the session `connect()` made last.
Every method returns a result object that renders itself (HTML in Jupyter, text in `repr`)
and converts with `.to_pandas()`. Reads only, except through `tk.configs` (the config
service: the one write path) and `.reveal()` (writes the access log).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from .. import browse, db
from ..context import Context
from ..settings import APP_NAME, Settings, load_settings
from . import _html
from ._table import LIMIT, Table
from ._text import text_table

_current: "Session | None" = None


def connect(*, demo: bool | None = None, fresh: bool = False, env_dir=None, data_dir=None,
            access_log=None, interactive: bool = False) -> "Session":
    """Open a session and make it the one module-level helpers use.

    demo: None = as the CLI decides (demo database when DATABASE_URL is unset); True = the
    demo database, ignoring DATABASE_URL, keys and registry from the environment.
    fresh: a new demo database in a scratch directory, removed when the kernel exits — and,
    should the kernel die without cleaning up, by the next `connect(fresh=True)`; implies demo=True. Its access log is kept beside it unless `access_log` is given.
    env_dir: the directory whose `.env` / `.env.local` files are read (default: the working
    directory, as the CLI does).
    interactive: tables as interactive DataTables (itables, an optional extra); see `Session.interactive`.
    """
    global _current
    scratch = None
    if fresh or demo:
        settings = Settings()
        if fresh:
            scratch = _new_scratch()
            settings = dataclasses.replace(settings, data_dir=scratch, access_log=scratch / "access.log")
    else:
        settings = load_settings(cwd=Path(env_dir) if env_dir else None)
    overrides = {"data_dir": Path(data_dir) if data_dir else None,
                 "access_log": Path(access_log) if access_log else None}
    settings = settings.with_overrides(**overrides)
    session = Session(Context(settings), scratch=scratch)
    session.database  # noqa: B018 — connect now: the demo line and any error belong to this cell
    if _current is not None and _current is not session:
        _current.close()
    _current = session
    if interactive:
        session.interactive()
    return session


def current() -> "Session":
    """The session `connect()` made last (connecting from the environment if there is none)."""
    return _current if _current is not None else connect()


# ---- scratch copies of the demo database -------------------------------------------------------
# Each lives in the user's cache directory and holds a lock file that its process keeps locked
# (flock) for as long as it runs. The kernel drops the lock when the process dies, however it
# dies (SIGKILL, a crashed kernel), so a scratch directory whose lock can be taken is stale.

_SCRATCH_LOCK = ".owner.lock"
_held_locks: list[int] = []  # open descriptors: closing one would release its lock


def scratch_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME)) / "fresh"


def _new_scratch() -> Path:
    import fcntl

    root = scratch_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale_scratch(root)
    # Made under another name and renamed once locked: a concurrent cleanup never sees an
    # unlocked `demo-*` directory that is still being made.
    making = Path(tempfile.mkdtemp(prefix="making-", dir=root))
    fd = os.open(making / _SCRATCH_LOCK, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held_locks.append(fd)
    scratch = root / ("demo-" + making.name.removeprefix("making-"))
    os.rename(making, scratch)
    return scratch


def remove_stale_scratch(root: Path | None = None) -> list[Path]:
    """Delete the scratch directories no running process holds; returns them."""
    import fcntl

    root = scratch_root() if root is None else root
    removed = []
    for scratch in sorted(root.glob("demo-*")) if root.is_dir() else ():
        try:
            fd = os.open(scratch / _SCRATCH_LOCK, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no lock file: not one of ours
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(scratch)
        finally:
            os.close(fd)
    return removed


class Session:
    def __init__(self, context: Context, *, scratch: Path | None = None):
        self.context = context
        self.scratch = scratch
        if scratch is not None:
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)

    # --- what the session is made of -------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def database(self):
        database = self.context.database
        # Models are bound process-wide: a notebook with two sessions must query the right one.
        db.bind(database)
        return database

    @property
    def registry(self):
        return self.context.registry

    @property
    def keyring(self):
        return self.context.keyring

    @property
    def is_demo(self) -> bool:
        return self.context.is_demo

    @property
    def configs(self):
        """The config service (toolkit.writes.configs.ConfigService): validated, encrypted, CAS writes."""
        self.database  # noqa: B018 — bound to this session's database first
        return self.context.configs

    def close(self) -> None:
        self.context.close()

    def describe(self) -> str:
        if self.is_demo:
            return "the embedded demo database" + (" (a fresh copy)" if self.scratch else "")
        return db.describe(self.context.database)

    # --- results ---------------------------------------------------------------------------
    def overview(self) -> "Overview":
        """Installations per status and per app, and how many users."""
        database = self.database
        per_status = {status: browse.overview(database, browse.InstallationFilter(status=status)).by_app
                      for status in db.APP_STATUSES}
        return Overview(browse.overview(database), per_status)

    def interactive(self, on: bool = True) -> bool:
        """Show tables as interactive DataTables (sort, search, page) — needs the `itables`
        extra; off by default so a notebook's output does not depend on what is installed."""
        from ._interactive import interactive

        return interactive(on)

    def history(self, limit: int | None = LIMIT):
        """The saved audit runs of this database, newest first, `limit` at most (None: all)
        (`History`; `.plot()` the trend)."""
        from ..audit.store import saved_runs
        from ._history import History

        return History(saved_runs(self.settings, self.context.database, limit))

    def audit(self, *, app=None, code=None, status=None, user=None, since=None):
        """Run the audit (toolkit.audit.run_audit) and return an `AuditResult`.

        app / status / user (id or email) / code (id, prefix like "secret" or glob) may be one
        value or a list; they narrow what is read, in SQL.
        """
        from ..audit import Filters, run_audit, select_codes
        from ._audit import AuditResult

        filters = Filters(apps=_many(app), users=_many(user), statuses=_many(status),
                          codes=select_codes(_many(code)), since=since)
        report = run_audit(self.database, self.registry, self.keyring, filters, jobs=1)
        return AuditResult(report.findings, report.summary, title=_audit_title(filters))

    def installations(self, *, app=None, status=None, email=None, user_id=None, ids=None, code=None,
                      limit: int = LIMIT) -> Table:
        """Installations (id order), filtered; `limit` rows at most (one keyset page).

        code: those with findings of this code (an id, a prefix like "secret", a glob, or a
        list) in the latest saved audit of this database (`toolkit audit` saves one), as the
        dashboard's `code:` filter.
        """
        notes = []
        if code is not None:
            with_code, saved_at = self._ids_with_codes(code)
            ids = with_code if ids is None else set(ids) & with_code
            notes.append(f"code {', '.join(_many(code))}: findings of the saved audit of {saved_at}")
        filters = browse.InstallationFilter(
            app_id=app, status=status, email=email, user_id=user_id,
            installation_ids=frozenset(ids) if ids is not None else None,
        )
        page = browse.list_installations(self.database, filters, limit=limit)
        rows = [(r.id, r.user_id, r.email, r.app_id, r.status, r.fields_set, r.installed_at, r.updated_at)
                for r in page.rows]
        notes += [f"first {limit} rows; pass limit= for more"] if page.has_next else []
        return Table(_title("Installations", app=app, status=status, email=email, user_id=user_id, code=code),
                     ("id", "user_id", "email", "app_id", "status", "fields_set", "installed_at", "updated_at"),
                     rows, numeric={"id", "user_id", "fields_set"}, notes=notes)

    def _ids_with_codes(self, code) -> tuple[set[int], str]:
        """Installations with a finding of `code` in the latest saved audit, and when it ran."""
        from ..audit import select_codes
        from ..audit.store import latest_saved
        from ..errors import UsageError

        codes = set(select_codes(_many(code)))  # UsageError for a code that does not exist
        report = latest_saved(self.settings, self.context.database)
        if report is None:
            raise UsageError("installations(code=…) needs a saved audit of this database, and there is none",
                             hint="run `toolkit audit` (it saves the run; tk.audit() does not)")
        with report:  # a big saved audit is spilled to a temp file: read only these codes, then delete it
            ids = {f.installation_id for c in codes for f in report.findings_of(c) if f.installation_id is not None}
            return ids, report.meta.get("generated_at", "unknown time")

    def users(self, *, email=None, role=None, limit: int = LIMIT) -> Table:
        """Users (id order) with their number of installations; never their password."""
        page = browse.list_users(self.database, browse.UserFilter(email=email, role=role), limit=limit)
        rows = [(r.id, r.name, r.email, r.role, r.installations, r.created_at) for r in page.rows]
        notes = [f"first {limit} rows; pass limit= for more"] if page.has_next else []
        return Table(_title("Users", email=email, role=role),
                     ("id", "name", "email", "role", "installations", "created_at"), rows,
                     numeric={"id", "installations"}, notes=notes)

    def config(self, installation_id: int):
        """One installation's config, secrets masked; `.reveal(field)` shows one, logged."""
        from ..inspection import load_installation
        from ._config import ConfigResult

        view = load_installation(self.database, self.registry, self.keyring, int(installation_id))
        return ConfigResult(view, self.settings)

    def key_status(self):
        """How many stored secrets each key authenticates (what `toolkit keys status` counts)."""
        from ..keys.usage import key_usage
        from ._keys import KeyStatus

        keyring = self.keyring
        keyring.current  # noqa: B018 — ConfigError naming ENCRYPTION_KEY before scanning
        return KeyStatus(key_usage(self.database, self.registry, keyring))

    def rotation_dry_run(self, *, include_current: bool = False):
        """What `toolkit keys rotate` would re-encrypt; changes nothing."""
        from ..keys.rotation import rotate
        from ._rotation import RotationPlan

        report = rotate(self.database, self.registry, self.keyring, dry_run=True, include_current=include_current)
        return RotationPlan(report.as_dict())

    def access_log(self) -> Table:
        """This session's access-log entries (who revealed which field, when — never a value)."""
        from ..crypto.access_log import read_entries

        columns = ("time", "user", "installation_id", "field", "key_fingerprint", "via")
        rows = [tuple(entry.get(c) for c in columns) for entry in read_entries(self.settings)]
        return Table("Access log", columns, rows, numeric={"installation_id"})

    # --- renderings --------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<toolkit session: {self.describe()}>"

    def _repr_html_(self) -> str:
        return _html.block(_html.heading(f"toolkit session: {self.describe()}"))


class Overview:
    """Counts of installations per status and per app (browse.overview)."""

    def __init__(self, overview, per_status: dict[str, dict[str, int]]):
        self.total = overview.total
        self.users = overview.users
        self.by_status = dict(overview.by_status)
        self.by_app = dict(overview.by_app)
        # app id -> status -> installations (zeros included)
        self.by_app_status = {app: {status: per_status.get(status, {}).get(app, 0) for status in self.by_status}
                              for app in self.by_app}

    @property
    def headline(self) -> str:
        return f"{self.total} installations of {len(self.by_app)} apps, {self.users} users"

    def status_table(self) -> Table:
        return Table("Installations per status", ("status", "installations"), self.by_status.items(),
                     numeric={"installations"})

    def app_table(self) -> Table:
        statuses = tuple(self.by_status)
        rows = [(app, *(self.by_app_status[app][s] for s in statuses), total) for app, total in self.by_app.items()]
        return Table("Installations per app", ("app_id", *statuses, "total"), rows, numeric={*statuses, "total"})

    def to_pandas(self):
        return self.app_table().to_pandas()

    def plot(self):
        from ._plots import plot_installations_per_status

        return plot_installations_per_status(self)

    def __repr__(self) -> str:
        status, apps = self.status_table(), self.app_table()
        return "\n".join([
            self.headline,
            text_table(status.columns, status.rows, numeric=status.numeric),
            "",
            text_table(apps.columns, apps.rows, numeric=apps.numeric),
        ])

    def _repr_html_(self) -> str:
        status, apps = self.status_table(), self.app_table()
        return _html.block(
            _html.heading(self.headline),
            _html.table(status.columns, status.rows, numeric=status.numeric),
            _html.table(apps.columns, apps.rows, numeric=apps.numeric),
        )


def _many(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, int)):
        return (value,)
    return tuple(value)


def _title(name: str, **filters) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in filters.items() if v is not None)
    return f"{name} ({shown})" if shown else name


def _audit_title(filters) -> str:
    described = filters.describe()
    if not described:
        return "Audit"
    return "Audit (" + "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                                 for k, v in described.items()) + ")"


__all__ = ["Overview", "Session", "connect", "current"]
