"""The config write path: install, update, set status, uninstall — as the app does them.

Every write (scripts, the dashboard, notebooks) goes through `ConfigService`:

- validate first, with the app's schema (`toolkit.registry`), on the *plaintext* values;
  a refused config raises ConfigValidationError with the problems and writes nothing;
- encrypt password fields with the keyring's current key; keep other fields plain;
- stamp `updated_at` (naive UTC, millisecond precision: what the app's JS `Date` stores);
- one short transaction per write, and compare-and-swap: the UPDATE/DELETE only matches the
  row if its `config` and `status` are still what the caller read (`expected`, or a read in
  the same transaction). Otherwise ConflictError (NotFound when the row is gone), and
  nothing is written.

What "what the caller read" means: a UI shows a row, the operator edits for a minute, then
saves. Pass that row (`expected=installation`) and a change someone else made meanwhile is
refused instead of overwritten. `expected` is any object with `.id`, `.config` and `.status`
as read: an `AppInstallation`, an `inspection.InstallationView.as_read` (what the dashboard passes), or what a write
returned (each write returns the new row: the next `expected`). Without `expected`, the
service reads the row inside the write and the CAS protects only that short window.

Equality is semantic: jsonb `=` on PostgreSQL (key order and spacing do not matter); on
SQLite the write holds the database's write lock (BEGIN IMMEDIATE) from the read to the
write, compares the parsed configs in Python and matches the stored text exactly.

Who owns what: the service reads the row, checks `expected` against it, validates and
encrypts; the compare-and-swap itself is `toolkit.db.installations`' — the same statements
rotation and repair write with. `update_config` and `set_status` become one `Change` whose
condition is the whole row as read (config text and status) and whose `touch` is this
service's clock; `uninstall` is `delete_in`, the same condition for a DELETE. They run in the
service's own short transaction on its Peewee connection (`apply_in`), not on a store's
connection: the read and the write stay one transaction (SQLite: one write lock), nothing
outlives it (PgBouncer's transaction pooling), and no connection is opened per write.
`install` stays here as INSERT … ON CONFLICT: it conditions on the unique index, not on a
row read, so there is no compare-and-swap to share, and the stores have no INSERT.

The service never relies on the models' global database binding: it runs its queries on the
database it was given, and encodes/decodes the JSON column itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping

import peewee
from peewee import EXCLUDED, Cast, Value, fn

from ..codes import APP_UNKNOWN, CODES, ERROR
from ..crypto import Keyring
from ..db import APP_STATUSES, AppInstallation, installations, is_postgres, read_only, translate_errors
from ..db.json_values import decode_config
from ..errors import AlreadyEncrypted, ConfigError, ConfigValidationError, ConflictError, NotFound, UsageError
from ..registry import (
    CONFIG_NON_STRING,
    CONFIG_NOT_OBJECT,
    FIELD_INVALID,
    FIELD_MISSING,
    FIELD_UNKNOWN,
    AppDefinition,
    Problem,
    Registry,
    check_value,
    schema_problems,
)

UNIQUE_INDEX = "app_installations_user_app_idx"


class AlreadyInstalled(UsageError):
    """The user already has this app (the unique `(user_id, app_id)` index); nothing written."""

    def __init__(self, message: str, *, installation_id: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.installation_id = installation_id


def utc_now() -> dt.datetime:
    """Naive UTC with millisecond precision: what `timestamp` holds after the app writes a JS Date."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclasses.dataclass(frozen=True)
class _Row:
    """One installation as read inside a write: parsed config and the stored text."""

    id: int
    user_id: int
    app_id: str
    status: str
    config: object = dataclasses.field(repr=False)  # parsed JSON (None for SQL NULL); holds secrets
    raw_config: str | None = dataclasses.field(repr=False)  # the stored text (SQLite's CAS compares it exactly)
    installed_at: dt.datetime | None
    updated_at: dt.datetime | None

    def model(self) -> AppInstallation:
        installation = AppInstallation(
            id=self.id, user_id=self.user_id, app_id=self.app_id, status=self.status,
            config=self.config, installed_at=self.installed_at, updated_at=self.updated_at,
        )
        installation._dirty.clear()
        return installation


class ConfigService:
    """Validated, encrypted, compare-and-swap writes of `app_installations`."""

    def __init__(self, database, registry: Registry, keyring, *, clock: Callable[[], dt.datetime] | None = None):
        self.database = getattr(database, "obj", database)  # a DatabaseProxy works too
        self.registry = registry
        self.keyring = keyring
        self.clock = clock or utc_now
        self._postgres = is_postgres(self.database)

    # --- reads ------------------------------------------------------------------------
    def get(self, installation_id: int) -> AppInstallation:
        """The installation as stored now (config as stored: secrets encrypted)."""
        with translate_errors(self.database), read_only(self.database):
            return self._read(installation_id).model()

    def find(self, user_id: int, app_id: str) -> AppInstallation | None:
        with translate_errors(self.database), read_only(self.database):
            row = self._read_by_user_app(user_id, app_id)
            return row.model() if row else None

    def configuration_problems(self, installation) -> list[Problem]:
        """What stands between this stored config and status `configured`.

        Every required field present, every value valid; password values must decrypt with
        the keyring and their plaintext must be valid. Unknown keys do not block.
        """
        app = self._app(installation.app_id)
        return self._configuration_problems(app, installation.config)

    # --- writes -----------------------------------------------------------------------
    def install(self, user_id: int, app_id: str, config: Mapping[str, str] | None = None, *,
                upsert: bool = False) -> AppInstallation:
        """Install `app_id` for `user_id` with an optional initial config (status `installed`).

        A second install of the same app for the same user raises AlreadyInstalled, unless
        `upsert`: then the existing installation's config is *replaced* by `config`
        (`installed_at` and `status` kept; refused if it is `configured` and `config` lacks a
        required field). Both go through INSERT … ON CONFLICT on the unique index.
        """
        app = self._app(app_id)
        given = {k: v for k, v in dict(config or {}).items() if v is not None}
        self._refuse(app, self._change_problems(app, given), f"config for app '{app_id}' is invalid")
        stored = self._encrypted(app, given)
        incomplete = app.missing_keys(stored)
        now = self.clock()
        A = AppInstallation
        with self._transaction():
            if not self._user_exists(user_id):
                raise NotFound(f"user {user_id} does not exist")
            existing = self._read_by_user_app(user_id, app_id)
            if existing is not None and not upsert:
                raise _already(user_id, app_id, existing.id)
            query = A.insert({
                A.user: user_id, A.app_id: app_id, A.status: "installed",
                A.config: self._json(stored), A.installed_at: now, A.updated_at: now,
            })
            if upsert:
                query = query.on_conflict(
                    conflict_target=[A.user, A.app_id],
                    update={A.config: EXCLUDED.config, A.updated_at: EXCLUDED.updated_at},
                    # Replacing the config of a configured installation must keep it complete.
                    where=(A.status == "installed") if incomplete else None,
                )
            try:
                cursor = self.database.execute(query)
            except peewee.IntegrityError as exc:
                raise self._integrity(exc, user_id, app_id) from None
            if cursor.rowcount == 0:  # ON CONFLICT … WHERE refused the update
                raise ConfigValidationError(
                    f"user {user_id}'s '{app_id}' installation is configured; the new config lacks "
                    f"required field(s) {', '.join(incomplete)}",
                    problems=[Problem(FIELD_MISSING, k, "required field is missing") for k in incomplete],
                    hint="include them, or set its status to 'installed' first",
                )
            return self._read_by_user_app(user_id, app_id).model()

    def update_config(self, installation_id: int, changes: Mapping[str, str | None], *,
                      expected: AppInstallation | None = None) -> AppInstallation:
        """Set (str) or remove (None) config values; other keys are kept as stored.

        The changed values are validated (plaintext, the app's schema); if the installation is
        `configured`, a change may not empty or remove a required field. Problems already
        stored in fields you do not touch are the audit's business, not a reason to refuse.
        """
        if not isinstance(changes, Mapping):
            raise UsageError("changes must be a mapping of field key to value (None removes the key)")
        changes = dict(changes)
        self._check_expected(expected, installation_id)
        with self._transaction():
            row = self._read(installation_id)
            config, status = self._basis(row, expected)
            app = self._app(row.app_id)
            if config is None:
                config = {}
            if not isinstance(config, dict):
                raise ConfigValidationError(
                    f"installation {installation_id}'s config is not a JSON object; repair it before updating",
                    problems=[Problem(CONFIG_NOT_OBJECT, None, "config is not an object")],
                )
            if not changes:
                return row.model()  # nothing to write
            problems = self._update_problems(app, changes, status)
            self._refuse(app, problems, f"installation {installation_id}: the change is invalid",
                         hint="set the status to 'installed' first to clear a required field"
                         if any(p.code == FIELD_MISSING for p in problems) else None)
            patch = self._encrypted(app, {k: v for k, v in changes.items() if v is not None})
            drop = tuple(k for k, v in changes.items() if v is None)
            self._write(row, patch=patch, drop=drop, status=(status, status))
            return self._read(installation_id).model()

    def set_status(self, installation_id: int, status: str, *,
                   expected: AppInstallation | None = None) -> AppInstallation:
        """`configured` only when every required field is present and valid (secrets decrypted)."""
        if status not in APP_STATUSES:
            raise UsageError(f"status must be one of {', '.join(APP_STATUSES)}, got {status!r}")
        self._check_expected(expected, installation_id)
        with self._transaction():
            row = self._read(installation_id)
            config, current_status = self._basis(row, expected)
            if status == "configured":
                app = self._app(row.app_id)
                problems = self._configuration_problems(app, config)
                if problems:
                    raise ConfigValidationError(
                        f"installation {installation_id} cannot be configured: {_summarise(problems)}",
                        problems=problems,
                    )
            self._write(row, status=(current_status, status))
            return self._read(installation_id).model()

    def uninstall(self, installation_id: int, *, expected: AppInstallation | None = None) -> None:
        """Delete the installation (compare-and-swap like every write)."""
        self._check_expected(expected, installation_id)
        with self._transaction():
            row = self._read(installation_id)
            _, status = self._basis(row, expected)
            if not installations.delete_in(self.database, row.id, row.raw_config, status):
                self._raise_lost(installation_id)

    def change_problems(self, app_id: str, changes: Mapping[str, str | None], *, status: str) -> list[Problem]:
        """What `update_config` would refuse in `changes` to an installation of `app_id` with
        `status` — checked without writing (or reading), so a UI can say so before asking to confirm."""
        return self._update_problems(self._app(app_id), dict(changes), status)

    # --- validation and encryption ----------------------------------------------------
    def _update_problems(self, app: AppDefinition, changes: dict, status: str) -> list[Problem]:
        problems = self._change_problems(app, changes)
        if status == "configured":
            problems += [
                Problem(FIELD_MISSING, key, "a configured installation needs this field")
                for key in app.required_keys
                if key in changes and changes[key] in (None, "")
            ]
        return problems

    def _change_problems(self, app: AppDefinition, changes: dict) -> list[Problem]:
        """Problems of the plaintext values being written (None = removal, always allowed)."""
        problems = []
        checked = {}
        for key, value in changes.items():
            if not isinstance(key, str):
                problems.append(Problem(FIELD_UNKNOWN, str(key), "field keys are strings"))
            elif value is None:
                continue  # removing a key, known or not, is fine (a repair)
            elif app.field(key) is None:
                problems.append(Problem(FIELD_UNKNOWN, key, f"not a field of app '{app.id}'"))
            elif not isinstance(value, str):
                problems.append(Problem(CONFIG_NON_STRING, key, "value is not a string"))
            else:
                checked[key] = value
        return problems + schema_problems(app, checked, complete=False)

    def _refuse(self, app, problems, message, hint=None) -> None:
        if problems:
            raise ConfigValidationError(f"{message}: {_summarise(problems)}", problems=problems, hint=hint)

    def _encrypted(self, app: AppDefinition, values: dict) -> dict:
        """The values as stored: secrets encrypted under the current key, the rest as given."""
        stored = {}
        for key, value in values.items():
            if value != "" and key in app.secret_keys:
                # "" stays "": nothing to hide, and "empty" stays visible to the audit.
                stored[key] = self._encrypt_one(key, value)
            else:
                stored[key] = value
        return stored

    def _encrypt_one(self, key: str, value: str) -> str:
        if self.keyring is None:
            raise ConfigError("ENCRYPTION_KEY is not set: it is needed to store password fields",
                              hint="set ENCRYPTION_KEY to the app's key")
        try:
            return self.keyring.encrypt(value)
        except AlreadyEncrypted:
            raise ConfigValidationError(
                f"field '{key}': the value is already a ciphertext; pass the plaintext",
                problems=[Problem(FIELD_INVALID, key, "already in the encrypted format")],
            ) from None

    def _configuration_problems(self, app: AppDefinition, config) -> list[Problem]:
        """The errors the audit would report on this stored config were the installation
        `configured` — `audit.checks.installation_problems`, the one per-installation rule —
        but for unknown keys (a warning: the app ignores them)."""
        from ..audit.checks import installation_problems

        if self.keyring is None and isinstance(config, dict) and any(
                isinstance(config.get(key), str) and config.get(key) for key in app.secret_keys):
            raise ConfigError("ENCRYPTION_KEY is not set: it is needed to check password fields")
        keyring = self.keyring if self.keyring is not None else Keyring(())
        stored = {} if config is None else config  # as decoded (NULL counts as {})
        found = installation_problems(app, app.id, "configured", stored, keyring, check_value)
        return [Problem(code, field, message) for code, field, message in found if CODES[code].severity == ERROR]

    def _app(self, app_id: str) -> AppDefinition:
        app = self.registry.get(app_id)
        if app is None:
            raise ConfigValidationError(
                f"app '{app_id}' is not in the registry",
                problems=[Problem(APP_UNKNOWN, None, f"app '{app_id}' is not in the registry")],
                hint="check the app id, or TOOLKIT_REGISTRY",
            )
        return app

    # --- SQL --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self):
        with translate_errors(self.database):
            # SQLite: take the write lock at BEGIN, so the read and the write see the same row.
            with self.database.atomic() if self._postgres else self.database.atomic("IMMEDIATE"):
                yield

    _COLUMNS = "id, user_id, app_id, status, config, installed_at, updated_at"

    def _select(self, where: str, params) -> _Row | None:
        columns = self._COLUMNS
        if self._postgres:  # read jsonb as text: one JSON decoder for both databases
            columns = columns.replace("status, config", "status::text, config::text")
        sql = f"SELECT {columns} FROM app_installations WHERE {where}".replace("?", self.database.param)
        row = self.database.execute_sql(sql, params).fetchone()
        if row is None:
            return None
        id_, user_id, app_id, status, raw, installed_at, updated_at = row
        # The one decoder: a config too deep or not JSON reads as Unreadable, which every
        # write refuses (config.not-object) rather than crash or rewrite it.
        config = None if raw is None else decode_config(raw)
        as_datetime = AppInstallation.updated_at.python_value
        return _Row(id_, user_id, app_id, status, config, raw, as_datetime(installed_at), as_datetime(updated_at))

    def _read(self, installation_id: int) -> _Row:
        row = self._select("id = ?", (installation_id,))
        if row is None:
            raise NotFound(f"installation {installation_id} does not exist")
        return row

    def _read_by_user_app(self, user_id: int, app_id: str) -> _Row | None:
        return self._select("user_id = ? AND app_id = ?", (user_id, app_id))

    def _user_exists(self, user_id: int) -> bool:
        sql = f"SELECT 1 FROM users WHERE id = {self.database.param}"
        return self.database.execute_sql(sql, (user_id,)).fetchone() is not None

    def _json(self, config):
        text = json.dumps(config, ensure_ascii=False, separators=(",", ":"))
        # converter=False: `text` is JSON already; JSONField's converter (active once the
        # models are bound, as every Context does) would encode it a second time.
        value = Value(text, converter=False)
        return Cast(value, "jsonb") if self._postgres else fn.json(value)

    def _basis(self, row: _Row, expected) -> tuple[object, str]:
        """The (config, status) the write is conditioned on."""
        if expected is None:
            return row.config, row.status
        if row.config != expected.config or row.status != expected.status:
            self._raise_lost(row.id, exists=True)
        return expected.config, expected.status

    def _write(self, row: _Row, **change) -> None:
        """Write `change` through the store's compare-and-swap: only if the row still holds
        the config (its text as read) and the status as read; the service's clock stamps it."""
        change = installations.Change(row.id, whole=True, whole_config=row.raw_config, touch=self.clock(), **change)
        if not installations.apply_in(self.database, [change]):
            self._raise_lost(row.id)

    def _raise_lost(self, installation_id: int, *, exists: bool | None = None):
        if exists is None:
            exists = self._select("id = ?", (installation_id,)) is not None
        if not exists:
            raise NotFound(f"installation {installation_id} no longer exists")
        raise ConflictError(
            f"installation {installation_id} changed since it was read; re-read and try again",
            hint="nothing was written",
        )

    def _check_expected(self, expected, installation_id: int) -> None:
        if expected is not None and getattr(expected, "id", None) != installation_id:
            raise UsageError(f"expected is installation {getattr(expected, 'id', None)}, not {installation_id}")

    def _integrity(self, exc, user_id: int, app_id: str):
        message = str(exc)
        if UNIQUE_INDEX in message or "UNIQUE" in message:
            existing = None
            with contextlib.suppress(Exception):
                existing = self._read_by_user_app(user_id, app_id)
            return _already(user_id, app_id, existing.id if existing else None)
        return NotFound(f"user {user_id} does not exist")


def _already(user_id: int, app_id: str, installation_id: int | None) -> AlreadyInstalled:
    which = f" (installation {installation_id})" if installation_id is not None else ""
    return AlreadyInstalled(
        f"user {user_id} already has app '{app_id}' installed{which}",
        installation_id=installation_id,
        hint="update it with update_config, or install with upsert=True to replace its config",
    )


def _summarise(problems) -> str:
    shown = "; ".join(str(p) for p in problems[:5])
    return shown + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
