"""One installation, ready to show: its user, its app's labels, and its config with every
secret masked. Revealing a field is a separate, explicit call that writes the access log.

`show`, the dashboard's installation screen and the notebook helpers all use this, so a
value is classified, masked and revealed the same way everywhere; front ends only render
`FieldView`s. Loading tolerates what the databases happily store: text that is not UTF-8
(SQLite), configs that are not JSON or nest too deeply, timestamps that do not parse, and
no keyring at all (secrets stay masked; `reveal` says why it cannot).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from .crypto import Keyring, Secret
from .crypto.access_log import record_reveal
from .db import AppInstallation, User, is_postgres, read_only, translate_errors
from .db.json_values import decode_config
from .errors import ConfigError, NotFound, UsageError

# What a field's stored value turned out to be.
PLAIN = "plain"  # a non-secret field, shown as stored
ENCRYPTED = "encrypted"  # a secret that decrypts; masked until revealed
STALE = "stale-key"  # a secret that decrypts only under a previous key; masked
PLAINTEXT_SECRET = "plaintext"  # a secret stored unencrypted; masked all the same
MALFORMED = "malformed"
UNDECRYPTABLE = "undecryptable"
EMPTY = "empty"
NON_STRING = "non-string"
ABSENT = "absent"  # a field the app defines that the config does not hold
CIPHERTEXT = "ciphertext"  # a ciphertext in a field that is not a password field: masked anyway
NO_KEY = "no-key"  # a well-formed ciphertext, but no keyring to say whether it decrypts

NOT_SET = "(not set)"


@dataclasses.dataclass(frozen=True)
class AsRead:
    """The row exactly as loaded: what a write passes as `expected=` (compare-and-swap)."""

    id: int
    status: str
    config: object = dataclasses.field(repr=False)  # holds secrets: never in a repr


@dataclasses.dataclass(frozen=True)
class FieldView:
    key: str
    label: str
    type: str  # the registry's type, "unknown" for a key the app does not define
    is_secret: bool
    state: str
    value: object  # str for plain values, Secret for secrets, None when there is nothing to show
    key_label: str | None = None  # which key authenticated it
    key_fingerprint: str | None = None
    note: str | None = None  # why a secret cannot be shown (malformed reason, …)
    key_index: int | None = None  # 0 = current key, n = previous #n

    @property
    def masked(self) -> bool:
        """Never shown as stored: a password field, or a ciphertext wherever it sits."""
        return self.is_secret or self.state == CIPHERTEXT

    @property
    def revealable(self) -> bool:
        return isinstance(self.value, Secret)

    @property
    def display(self) -> str:
        """Text safe for any screen: secrets masked, problems named."""
        if isinstance(self.value, Secret):
            return self.value.masked
        if self.state == ABSENT:
            return NOT_SET
        if self.state in (MALFORMED, UNDECRYPTABLE, NO_KEY, CIPHERTEXT):
            return f"<{self.state}>"
        if self.state == NON_STRING:
            return "<non-string>" if self.is_secret else repr(self.value)
        return "" if self.value is None else str(self.value)


@dataclasses.dataclass(frozen=True)
class InstallationView:
    id: int
    user_id: int
    user_email: str
    user_name: str | None
    app_id: str
    app_name: str  # from the registry; the app id when the registry does not know it
    app_known: bool
    status: str
    installed_at: dt.datetime | None
    updated_at: dt.datetime | None
    fields: tuple[FieldView, ...]
    config_problem: str | None = None  # set when the config is not a JSON object
    user_role: str | None = None
    as_read: AsRead | None = dataclasses.field(default=None, repr=False, compare=False)

    def field(self, key: str) -> FieldView:
        for field in self.fields:
            if field.key == key:
                return field
        raise UsageError(f"installation {self.id} has no field {key!r}")

    def as_dict(self) -> dict:
        """JSON-ready, secrets masked."""
        return {
            "id": self.id, "user_id": self.user_id, "user_email": self.user_email,
            "user_name": self.user_name, "user_role": self.user_role, "app_id": self.app_id, "app_name": self.app_name,
            "status": self.status,
            "installed_at": self.installed_at.isoformat() if self.installed_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "config_problem": self.config_problem,
            "config": {f.key: {"label": f.label, "type": f.type, "state": f.state, "value": f.display,
                               "key": f.key_fingerprint} for f in self.fields},
        }


def load_installation(database, registry, keyring, installation_id: int) -> InstallationView:
    """One installation (NotFound if missing); `keyring` may be None (secrets stay masked)."""
    # Bound to `database` (not the models' global proxy): the dashboard's workers and tests
    # hand in their own database. On SQLite, text columns come back as bytes so text that is
    # not UTF-8 reads (with replacement characters) instead of failing the whole row.
    raw = (lambda column: column) if is_postgres(database) else (lambda column: column.cast("BLOB"))
    query = (
        AppInstallation.select(
            AppInstallation.id, raw(AppInstallation.app_id), raw(AppInstallation.status),
            raw(AppInstallation.config), AppInstallation.installed_at, AppInstallation.updated_at,
            User.id, raw(User.email), raw(User.name), raw(User.role),
        )
        .join(User, on=(AppInstallation.user == User.id))
        .where(AppInstallation.id == installation_id)
        .bind(database)
    )
    with translate_errors(database), read_only(database):
        records = list(query.tuples())
    if not records:
        raise NotFound(f"installation {installation_id} does not exist")
    (id_, app_id, status, config, installed_at, updated_at, user_id, email, name, role) = records[0]
    row = _Row(id_, _text(app_id), _text(status), decode_config(config), _as_datetime(installed_at),
               _as_datetime(updated_at))
    user = _User(user_id, _text(email), _text(name), _text(role))
    return view_of(row, user, registry, keyring)


@dataclasses.dataclass(frozen=True)
class _Row:
    id: int
    app_id: str
    status: str
    config: object = dataclasses.field(repr=False)
    installed_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class _User:
    id: int
    email: str
    name: str | None
    role: str | None = None


def view_of(row, user, registry, keyring) -> InstallationView:
    """The view of a row already read (`row`: .id .app_id .status .config and timestamps)."""
    app = registry.apps.get(row.app_id) if registry is not None else None
    fields, problem = config_fields(row.config, app, keyring)
    return InstallationView(
        id=row.id, user_id=user.id, user_email=user.email, user_name=user.name, app_id=row.app_id,
        app_name=app.name if app else row.app_id, app_known=app is not None, status=row.status,
        installed_at=row.installed_at, updated_at=row.updated_at, fields=fields,
        config_problem=problem, user_role=getattr(user, "role", None),
        as_read=AsRead(row.id, row.status, row.config),
    )


def config_fields(config, app, keyring) -> tuple[tuple[FieldView, ...], str | None]:
    """A config's fields (registry fields in registry order, then unknown keys) and, when it
    is not a JSON object, what it is instead (its kind and size, never its content)."""
    if config is None:
        config = {}  # NULL counts as {} (DESIGN §4.4)
    if not isinstance(config, dict):
        return (), describe_non_object(config)
    fields = []
    known = set()
    for definition in app.fields if app is not None else ():
        known.add(definition.key)
        if definition.key in config:
            fields.append(_field_view(definition, definition.key, config[definition.key], keyring))
        else:
            fields.append(FieldView(key=definition.key, label=definition.label, type=definition.type,
                                    is_secret=definition.is_secret, state=ABSENT, value=None))
    fields += [_field_view(None, key, value, keyring) for key, value in config.items() if key not in known]
    return tuple(fields), None


def describe_non_object(config) -> str:
    size = ""
    if isinstance(config, list):
        size = f" of {len(config)} items"
    elif isinstance(config, str):
        size = f" of {len(config)} characters"
    return f"config is not a JSON object but {_json_kind(config)}{size}"


def _field_view(definition, key, value, keyring) -> FieldView:
    label = definition.label if definition else key
    kind = definition.type if definition else "unknown"
    is_secret = bool(definition and definition.is_secret)
    base = dict(key=key, label=label, type=kind, is_secret=is_secret)
    if not isinstance(value, str):
        if is_secret:  # whatever sits in a password field may be a secret: never shown
            return FieldView(**base, state=NON_STRING, value=None, note=f"{_json_kind(value)}, not a string")
        return FieldView(**base, state=NON_STRING, value=value)
    if value == "":
        return FieldView(**base, state=EMPTY, value=None)
    status = (keyring or _NO_KEYS).inspect_in_field(value, password_field=is_secret)
    if status is None:
        return FieldView(**base, state=PLAIN, value=value)
    # A password field's value, or a ciphertext wherever it sits (any field of any app).
    return _secret_view(base, value, status, keyring)


_NO_KEYS = Keyring(())  # classifies by the format alone: a strict value is "undecryptable"


def _secret_view(base, value, status, keyring) -> FieldView:
    """A masked value, as the keyring classified it (`status`; no keyring: by format alone)."""
    in_password_field = base["is_secret"]
    if status.decrypts:
        key_used = keyring.key_for(status.key_index)
        secret = Secret.from_bytes(status.plaintext, keyring.mask_visible)
        state = CIPHERTEXT if not in_password_field else ENCRYPTED if key_used.is_current else STALE
        return FieldView(**base, state=state, value=secret, key_label=key_used.label,
                         key_fingerprint=key_used.fingerprint, key_index=key_used.index)
    if status.kind == "plaintext":  # only a password field gets here with a plaintext
        return FieldView(**base, state=PLAINTEXT_SECRET, value=Secret(value) if keyring is None else Secret(value, keyring.mask_visible),
                         note="stored without encryption")
    if status.kind == "malformed":
        return FieldView(**base, state=MALFORMED, value=None, note=status.reason)
    if keyring is None:
        return FieldView(**base, state=NO_KEY if in_password_field else CIPHERTEXT, value=None,
                         note="no ENCRYPTION_KEY configured")
    return FieldView(**base, state=UNDECRYPTABLE if in_password_field else CIPHERTEXT, value=None,
                     note="no key in the keyring authenticates it")


def _json_kind(value) -> str:
    from .audit.checks import json_kind  # the audit's wording, so both front ends agree

    return json_kind(value)


def reveal(view: InstallationView, key: str, settings, *, via: str) -> str:
    """The plaintext of one field, after writing the access log line (never the value)."""
    field = view.field(key)
    if not isinstance(field.value, Secret):
        if field.state == NO_KEY or (field.state == CIPHERTEXT and field.note == "no ENCRYPTION_KEY configured"):
            raise ConfigError(f"ENCRYPTION_KEY is not set: field {key!r} of installation {view.id} cannot be decrypted")
        if field.masked:
            raise UsageError(f"field {key!r} of installation {view.id} cannot be revealed: {field.note or field.state}")
        return "" if field.value is None else str(field.value)
    record_reveal(settings, installation_id=view.id, field=key, key_fingerprint=field.key_fingerprint, via=via)
    return field.value.reveal()


def _text(value):
    """SQLite hands back bytes (see load_installation); text that is not UTF-8 is replaced, not fatal."""
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return value


def _as_datetime(value):
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, (bytes, str)):  # SQLite text peewee could not parse: show none rather than fail
        try:
            return dt.datetime.fromisoformat(_text(value))
        except ValueError:
            return None
    return None
