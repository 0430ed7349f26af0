"""What every front end needs, built lazily from the settings: database, keyring, registry.

One `Context` per command or session. The demo database is used when `DATABASE_URL` is not
set; that fact is announced once on stderr. Front ends ask the context, never the
environment.
"""

from __future__ import annotations

import functools
import sys

from .errors import ConfigError
from .settings import Settings, load_settings


class Context:
    def __init__(self, settings: Settings | None = None, *, announce=None):
        self.settings = settings if settings is not None else load_settings()
        self._announce = announce if announce is not None else _stderr_line

    @property
    def is_demo(self) -> bool:
        return self.settings.uses_demo

    @functools.cached_property
    def database(self):
        """The runtime database, bound to the models. Connects lazily, per thread."""
        from . import db

        if self.is_demo:
            from . import demo

            path = demo.ensure_demo_database(self.settings)
            self._announce(f"Using the embedded demo database ({path}); set DATABASE_URL to use a real one.")
            database = db.open_sqlite(path)
        else:
            database = db.open_postgres(self.settings.database_url, "DATABASE_URL",
                                        connect_timeout=self.settings.connect_timeout,
                                        statement_timeout=self.settings.statement_timeout)
        db.bind(database)
        return database

    @functools.cached_property
    def keyring(self):
        """The keyring of this context's database. On the demo database that is the public
        demo keys only: a real ENCRYPTION_KEY from the environment would otherwise seal demo
        writes with the production key, or meet real ciphertexts pasted into demo rows."""
        if self.is_demo:
            from . import demo

            if self.settings.encryption_key or self.settings.encryption_key_previous:
                self._announce("The demo database uses its public demo keys only; ENCRYPTION_KEY and "
                               "ENCRYPTION_KEY_PREVIOUS are ignored until DATABASE_URL is set.")
            return demo.demo_keyring(self.settings)
        return self.value_keyring

    @functools.cached_property
    def value_keyring(self):
        """The keyring for one value given by hand (`decrypt`, `encrypt`): no database is
        involved, so ENCRYPTION_KEY is used whenever it is set; the demo keys otherwise."""
        from .crypto import Keyring

        if self.is_demo and not self.settings.encryption_key:
            from . import demo

            return demo.demo_keyring(self.settings)
        keyring = Keyring.from_settings(self.settings)
        if not self.is_demo:
            from . import demo

            demo.refuse_demo_key(keyring)
        return keyring

    @functools.cached_property
    def registry(self):
        from .registry import load_registry

        path = self.settings.registry_path
        if path is None:
            if self.is_demo:
                from . import demo

                path = demo.DEMO_REGISTRY_PATH
            else:
                raise ConfigError(
                    "no registry file: set TOOLKIT_REGISTRY (or --registry) to the app registry's JSON",
                    hint="see README, 'The registry'",
                )
        return load_registry(path)

    @functools.cached_property
    def configs(self):
        """The write path: validated, encrypted, compare-and-swap config changes."""
        from .writes.configs import ConfigService

        return ConfigService(self.database, self.registry, self.keyring)

    def close(self) -> None:
        database = self.__dict__.get("database")
        if database is not None and not database.is_closed():
            database.close()


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr)
