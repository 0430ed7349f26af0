"""One installation, ready to show: its user, its app's labels, and its config with every
secret masked. Revealing a field is a separate, explicit call that writes the access log.

`show`, the dashboard's installation screen and the notebook helpers all use this, so a
value is shown the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from .crypto import Secret
from .crypto.access_log import record_reveal
from .db import AppInstallation, User, read_only, translate_errors
from .db.json_values import Unreadable
from .errors import NotFound, UsageError

# What a field's stored value turned out to be.
PLAIN = "plain"  # a non-secret field, shown as stored
ENCRYPTED = "encrypted"  # a secret that decrypts; masked until revealed
STALE = "stale-key"  # a secret that decrypts only under a previous key; masked
PLAINTEXT_SECRET = "plaintext"  # a secret stored unencrypted; masked all the same
MALFORMED = "malformed"
UNDECRYPTABLE = "undecryptable"
EMPTY = "empty"
NON_STRING = "non-string"


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

    @property
    def display(self) -> str:
        """Text safe for any screen: secrets masked, problems named."""
        if isinstance(self.value, Secret):
            return self.value.masked
        if self.state in (MALFORMED, UNDECRYPTABLE):
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

    def field(self, key: str) -> FieldView:
        for field in self.fields:
            if field.key == key:
                return field
        raise UsageError(f"installation {self.id} has no field {key!r}")

    def as_dict(self) -> dict:
        """JSON-ready, secrets masked."""
        return {
            "id": self.id, "user_id": self.user_id, "user_email": self.user_email,
            "user_name": self.user_name, "app_id": self.app_id, "app_name": self.app_name,
            "status": self.status,
            "installed_at": self.installed_at.isoformat() if self.installed_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "config_problem": self.config_problem,
            "config": {f.key: {"label": f.label, "type": f.type, "state": f.state, "value": f.display,
                               "key": f.key_fingerprint} for f in self.fields},
        }


def load_installation(database, registry, keyring, installation_id: int) -> InstallationView:
    with translate_errors(database), read_only(database):
        row = (
            AppInstallation.select(AppInstallation, User.id, User.email, User.name)
            .join(User)
            .where(AppInstallation.id == installation_id)
            .first()
        )
    if row is None:
        raise NotFound(f"installation {installation_id} does not exist")
    return view_of(row, row.user, registry, keyring)


def view_of(row, user, registry, keyring) -> InstallationView:
    app = registry.apps.get(row.app_id)
    config = {} if row.config is None else row.config
    problem = None
    fields: list[FieldView] = []
    if not isinstance(config, dict):
        problem = f"config is not a JSON object but {_json_kind(config)}"
    else:
        known = {f.key: f for f in app.fields} if app else {}
        order = [f.key for f in app.fields if f.key in config] if app else []
        order += [k for k in config if k not in known]
        fields = [_field_view(known.get(key), key, config[key], keyring) for key in order]
    return InstallationView(
        id=row.id, user_id=user.id, user_email=user.email, user_name=user.name, app_id=row.app_id,
        app_name=app.name if app else row.app_id, app_known=app is not None, status=row.status,
        installed_at=row.installed_at, updated_at=row.updated_at, fields=tuple(fields),
        config_problem=problem,
    )


def _field_view(definition, key, value, keyring) -> FieldView:
    label = definition.label if definition else key
    kind = definition.type if definition else "unknown"
    is_secret = bool(definition and definition.is_secret)
    base = dict(key=key, label=label, type=kind, is_secret=is_secret)
    if not isinstance(value, str):
        if is_secret:  # whatever sits in a password field may be a secret: never shown
            return FieldView(**base, state=NON_STRING, value=None, note=f"{_json_kind(value)}, not a string")
        return FieldView(**base, state=NON_STRING, value=value)
    if not is_secret:
        return FieldView(**base, state=PLAIN if value else EMPTY, value=value)
    if value == "":
        return FieldView(**base, state=EMPTY, value=None)
    status = keyring.inspect(value)
    if status.decrypts:
        key_used = keyring.key_for(status.key_index)
        secret = Secret.from_bytes(status.plaintext, keyring.mask_visible)
        return FieldView(**base, state=ENCRYPTED if key_used.is_current else STALE, value=secret,
                         key_label=key_used.label, key_fingerprint=key_used.fingerprint)
    if status.kind == "plaintext":
        return FieldView(**base, state=PLAINTEXT_SECRET, value=Secret(value, keyring.mask_visible),
                         note="stored without encryption")
    note = status.reason if status.kind == "malformed" else "no key in the keyring authenticates it"
    return FieldView(**base, state=status.kind, value=None, note=note)


def _json_kind(value) -> str:
    if isinstance(value, Unreadable):
        return value.kind
    from .audit.checks import json_kind

    return json_kind(value)


def reveal(view: InstallationView, key: str, settings, *, via: str) -> str:
    """The plaintext of one field, after writing the access log line (never the value)."""
    field = view.field(key)
    if not isinstance(field.value, Secret):
        if field.state in (MALFORMED, UNDECRYPTABLE):
            raise UsageError(f"field {key!r} of installation {view.id} cannot be revealed: {field.note}")
        return "" if field.value is None else str(field.value)
    record_reveal(settings, installation_id=view.id, field=key, key_fingerprint=field.key_fingerprint, via=via)
    return field.value.reveal()
