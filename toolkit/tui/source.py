"""What a dashboard session reads and writes through: database, registry, keyring, settings.

Built from a `Context` by the command, or from parts by tests. Nothing here touches a
widget; workers call `session()` from their own thread, which opens and closes that thread's
own connection (Peewee connections are per thread, DESIGN §6).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable

from .. import db
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

    # --- database ---------------------------------------------------------------------
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
        from ..configs import ConfigService

        return ConfigService(self.database, self.registry, self.keyring)
