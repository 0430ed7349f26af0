"""What a dashboard session reads and writes through: database, registry, keyring, settings.

Built from a `Context` by the command, or from parts by tests. Nothing here touches a
widget; workers call `session()` from their own thread, which opens and closes that thread's
own connection (Peewee connections are per thread, DESIGN §6).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable

from .. import browse, db, inspection
from ..errors import ConfigError, RegistryError, ToolkitError


class DataSource:
    def __init__(
        self,
        *,
        database,
        settings,
        registry=None,
        registry_error: str | None = None,
        keyring: Callable[[], Any] | Any = None,
        is_demo: bool = False,
        location: str | None = None,
    ):
        self.database = database
        self.settings = settings
        self.registry = registry
        self.registry_error = registry_error
        # A keyring, or a function that builds one (so a missing ENCRYPTION_KEY only matters
        # when a secret is revealed or written, not when browsing).
        self._keyring = keyring
        self.is_demo = is_demo
        self.location = location if location is not None else db.describe(database)

    @classmethod
    def from_context(cls, context) -> "DataSource":
        registry, registry_error = None, None
        try:
            registry = context.registry
        except (RegistryError, ConfigError) as exc:
            registry_error = exc.one_line()  # browse anyway, with app ids instead of names
        return cls(
            database=context.database,
            settings=context.settings,
            registry=registry,
            registry_error=registry_error,
            keyring=lambda: context.keyring,
            is_demo=context.is_demo,
        )

    # --- the queries the screens run -------------------------------------------------------
    # Every database read of the dashboard, in one list: a screen's worker calls one of these
    # with the database its session() opened for that thread (workers.DataScreen.fetch).
    list_installations = staticmethod(browse.list_installations)
    count_installations = staticmethod(browse.count_installations)
    export_installations = staticmethod(browse.export_installations)
    list_users = staticmethod(browse.list_users)
    count_users = staticmethod(browse.count_users)
    overview = staticmethod(browse.overview)

    def load_installation(self, database, installation_id: int):
        """One installation's view; without a keyring (ENCRYPTION_KEY unset) secrets stay
        masked and reveal explains."""
        return inspection.load_installation(database, self.registry, self.keyring_or_none(), installation_id)

    # --- database ---------------------------------------------------------------------
    @staticmethod
    def prepare_threads() -> None:
        """The CLI's interruptible waits are process-wide and lifted for COPY, which is only
        safe with one database thread: the dashboard's worker threads each have their own
        connection, so libpq blocks there (bounded by the connect and statement timeouts)."""
        db.connection.restore_waits(None)

    def latest_saved_audit(self):
        """The latest saved audit of this database (toolkit.audit.store), or None. A small
        SQLite read; a missing or unreadable store is no saved audit."""
        from ..audit.store import latest_saved

        try:
            return latest_saved(self.settings, self.database)
        except Exception:  # noqa: BLE001 — a damaged store must not stop the dashboard
            return None

    def run_audit(self, progress, *, warn):
        """A saved audit, incremental where the database allows it (PostgreSQL; SQLite has no
        snapshots), in this worker thread's own connection. One process: forking worker
        processes out of a threaded TUI is not worth the risk."""
        from ..audit.incremental import audit
        from ..audit.store import open_store

        with self.session() as database:
            if self.registry is None:
                raise ToolkitError(self.registry_error or "no registry: the audit needs TOOLKIT_REGISTRY")
            store = open_store(self.settings)
            try:
                return audit(database, self.registry, self.keyring, store=store, incremental=not self.is_demo,
                             jobs=1, progress=progress, warn=warn)
            finally:
                if store is not None:
                    store.close()

    @contextlib.contextmanager
    def session(self):
        """This thread's own connection for the duration of one unit of work."""
        with db.translate_errors(self.database):
            with self.database.connection_context():
                yield self.database

    def ping(self) -> None:
        with self.session() as database:
            database.execute_sql("SELECT 1")

    # --- registry ---------------------------------------------------------------------
    def app(self, app_id: str):
        return self.registry.get(app_id) if self.registry is not None else None

    def app_name(self, app_id: str) -> str:
        definition = self.app(app_id)
        return definition.name if definition is not None else app_id

    def app_ids(self) -> list[str]:
        return list(self.registry.apps) if self.registry is not None else []

    # --- keys -------------------------------------------------------------------------
    @functools.cached_property
    def keyring(self):
        """The keyring; ConfigError (naming ENCRYPTION_KEY) when none is configured."""
        keyring = self._keyring() if callable(self._keyring) else self._keyring
        if keyring is None:
            raise ConfigError("ENCRYPTION_KEY is not set: secrets cannot be revealed or written")
        return keyring

    def keyring_or_none(self):
        try:
            return self.keyring
        except ToolkitError:
            return None

    # --- writes -----------------------------------------------------------------------
    def config_service(self):
        from ..writes.configs import ConfigService

        return ConfigService(self.database, self.registry, self.keyring)

    def change_problems(self, app_id: str, changes: dict, *, status: str):
        """What the config service would refuse in `changes` (validation reads no database
        and needs no key)."""
        from ..writes.configs import ConfigService

        return ConfigService(self.database, self.registry, None).change_problems(app_id, changes, status=status)
