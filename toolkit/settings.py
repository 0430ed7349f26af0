"""Settings: the one place that knows the environment variables' names.

Order, as Next.js loads them: the real environment, then `.env.local`, then `.env`
in the working directory. The real environment wins; a command-line flag wins over all
(the CLI passes flags as `overrides`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from dotenv import dotenv_values

from .errors import ConfigError

# Variable names (DESIGN.md §4.1), plus the toolkit's own.
DATABASE_URL = "DATABASE_URL"
DIRECT_URL = "DIRECT_URL"
ENCRYPTION_KEY = "ENCRYPTION_KEY"
ENCRYPTION_KEY_PREVIOUS = "ENCRYPTION_KEY_PREVIOUS"
TOOLKIT_REGISTRY = "TOOLKIT_REGISTRY"
TOOLKIT_KEY_DERIVATION = "TOOLKIT_KEY_DERIVATION"  # hex (default), raw, sha256, scrypt
TOOLKIT_KEY_SALT = "TOOLKIT_KEY_SALT"  # salt for the scrypt derivation
TOOLKIT_IV_LENGTH = "TOOLKIT_IV_LENGTH"  # 16 (the app's default) or 12
TOOLKIT_ACCESS_LOG = "TOOLKIT_ACCESS_LOG"  # path of the reveal log (JSON lines)
TOOLKIT_DATA_DIR = "TOOLKIT_DATA_DIR"  # where the demo database lives
TOOLKIT_MASK_VISIBLE = "TOOLKIT_MASK_VISIBLE"  # how many trailing characters a mask shows
TOOLKIT_EXPORT_DIR = "TOOLKIT_EXPORT_DIR"  # where the dashboard saves exports and screenshots
TOOLKIT_CONFIG_DIR = "TOOLKIT_CONFIG_DIR"  # where the dashboard keeps its preferences
TOOLKIT_CONNECT_TIMEOUT = "TOOLKIT_CONNECT_TIMEOUT"  # seconds to establish a connection (libpq connect_timeout)
TOOLKIT_STATEMENT_TIMEOUT = "TOOLKIT_STATEMENT_TIMEOUT"  # seconds a read statement may run (SET LOCAL); 0 = none
TOOLKIT_STATE_DIR = "TOOLKIT_STATE_DIR"  # where saved audits live (default: the user state dir)

ALL_VARIABLES = (
    DATABASE_URL, DIRECT_URL, ENCRYPTION_KEY, ENCRYPTION_KEY_PREVIOUS, TOOLKIT_REGISTRY,
    TOOLKIT_KEY_DERIVATION, TOOLKIT_KEY_SALT, TOOLKIT_IV_LENGTH, TOOLKIT_ACCESS_LOG,
    TOOLKIT_DATA_DIR, TOOLKIT_MASK_VISIBLE, TOOLKIT_EXPORT_DIR, TOOLKIT_CONFIG_DIR,
    TOOLKIT_CONNECT_TIMEOUT, TOOLKIT_STATEMENT_TIMEOUT, TOOLKIT_STATE_DIR,
)
APP_NAME = "installation-toolkit"  # the platformdirs name of the user's data, state and config dirs

# Defaults. Connect: long enough for a cold Supabase pooler across an ocean, short enough that
# a silent server ends `show` before an operator reaches for kill. Statement: longer than any
# read the dashboard or `show` should ever take; with the connect timeout on top it is also how
# long the client waits for any answer, well under PgBouncer's 120 s query_wait_timeout, so a
# paused pooler ends with an error instead of a two-minute hang.
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_STATEMENT_TIMEOUT = 30

KEY_DERIVATIONS = ("hex", "raw", "sha256", "scrypt")


@dataclasses.dataclass(frozen=True)
class Settings:
    # URLs carry the database password: out of reprs (notebooks save what they display).
    database_url: str | None = dataclasses.field(default=None, repr=False)
    direct_url: str | None = dataclasses.field(default=None, repr=False)
    encryption_key: str | None = dataclasses.field(default=None, repr=False)
    encryption_key_previous: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    registry_path: Path | None = None
    key_derivation: str = "hex"
    key_salt: str | None = dataclasses.field(default=None, repr=False)
    iv_length: int = 16
    access_log: Path | None = None
    data_dir: Path | None = None
    mask_visible: int = 4
    export_dir: Path | None = None
    config_dir: Path | None = None
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT  # seconds, >= 1
    statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT  # seconds, 0 = none
    state_dir: Path | None = None

    def export_directory(self) -> Path:
        """Where exports and screenshots go: TOOLKIT_EXPORT_DIR, else `exports` in the user data dir."""
        if self.export_dir is not None:
            return self.export_dir
        import platformdirs

        return Path(platformdirs.user_data_dir(APP_NAME)) / "exports"

    def config_directory(self) -> Path:
        """Where preferences live: TOOLKIT_CONFIG_DIR, else the user config dir."""
        if self.config_dir is not None:
            return self.config_dir
        import platformdirs

        return Path(platformdirs.user_config_dir(APP_NAME))

    @property
    def uses_demo(self) -> bool:
        return not self.database_url

    def with_overrides(self, **overrides) -> "Settings":
        """A copy where every override that is not None wins (command-line flags)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self


def read_sources(cwd: Path | None = None, environ: dict | None = None) -> dict[str, str]:
    """Merge `.env`, `.env.local` and the environment; later sources win."""
    cwd = Path.cwd() if cwd is None else cwd
    merged: dict[str, str] = {}
    for name in (".env", ".env.local"):
        path = cwd / name
        if path.is_file():
            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    environ = os.environ if environ is None else environ
    merged.update({k: environ[k] for k in ALL_VARIABLES if k in environ})
    return merged


def load_settings(cwd: Path | None = None, environ: dict | None = None, **overrides) -> Settings:
    """Read the settings and check their shape; errors name the variable to fix."""
    raw = read_sources(cwd, environ)

    def text(name):
        value = raw.get(name, "").strip()
        return value or None

    def integer(name, default, allowed=None):
        value = text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
        if allowed and number not in allowed:
            if isinstance(allowed, range):
                expected = f"between {allowed.start} and {allowed.stop - 1}"
            else:
                expected = f"one of {', '.join(map(str, allowed))}"
            raise ConfigError(f"{name} must be {expected}, got {number}")
        return number

    derivation = (text(TOOLKIT_KEY_DERIVATION) or "hex").lower()
    if derivation not in KEY_DERIVATIONS:
        raise ConfigError(
            f"{TOOLKIT_KEY_DERIVATION} must be one of {', '.join(KEY_DERIVATIONS)}, got {derivation!r}"
        )
    previous = tuple(k.strip() for k in (text(ENCRYPTION_KEY_PREVIOUS) or "").split(",") if k.strip())
    path = lambda name: Path(text(name)).expanduser() if text(name) else None  # noqa: E731

    settings = Settings(
        database_url=text(DATABASE_URL),
        direct_url=text(DIRECT_URL),
        encryption_key=text(ENCRYPTION_KEY),
        encryption_key_previous=previous,
        registry_path=path(TOOLKIT_REGISTRY),
        key_derivation=derivation,
        key_salt=text(TOOLKIT_KEY_SALT),
        iv_length=integer(TOOLKIT_IV_LENGTH, 16, allowed=(12, 16)),
        access_log=path(TOOLKIT_ACCESS_LOG),
        data_dir=path(TOOLKIT_DATA_DIR),
        mask_visible=integer(TOOLKIT_MASK_VISIBLE, 4, allowed=range(0, 65)),
        export_dir=path(TOOLKIT_EXPORT_DIR),
        config_dir=path(TOOLKIT_CONFIG_DIR),
        connect_timeout=integer(TOOLKIT_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, allowed=range(1, 3601)),
        statement_timeout=integer(TOOLKIT_STATEMENT_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, allowed=range(0, 86401)),
        state_dir=path(TOOLKIT_STATE_DIR),
    )
    return settings.with_overrides(**overrides)
