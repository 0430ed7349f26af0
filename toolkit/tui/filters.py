"""The filter line behind `/`: `app:stripe status:configured code:secret.plaintext alice`.

    id:N[,N…]          those installations (a support ticket's id): one id opens it
    app:ID|NAME[,…]    an app id or its registry name (any case); a comma list matches any
    status:S[,S]       installed | configured
    email:TEXT         part of the user's email (bare words mean the same)
    code:CODE[,…]      installations with a finding of that code (after an audit); code:any = any finding
    user:ID            one user (installations: that user's; users list: that user)
    role:R             (users list) admin | customer

Comma lists are the CLI's form (`toolkit audit --app stripe,slack`). Pure functions: text in,
a FilterQuery or a UsageError out; `complete()` finishes the word being typed.
"""

from __future__ import annotations

import dataclasses
import shlex

from ..db import APP_STATUSES, ROLES
from ..errors import UsageError
from ..ids import parse_id

KEYS = ("id", "app", "status", "email", "code", "user", "role")
ANY_FINDING = "any"


@dataclasses.dataclass(frozen=True)
class FilterQuery:
    app: str | None = None
    status: str | None = None
    email: str | None = None
    code: str | None = None
    user_id: int | None = None
    role: str | None = None
    ids: tuple[int, ...] = ()

    @property
    def is_empty(self) -> bool:
        return self == FilterQuery()

    def text(self) -> str:
        """The line that parses back to this query (shown in the input when it reopens)."""
        parts = []
        ids = ",".join(map(str, self.ids)) if self.ids else None
        for key, value in (("id", ids), ("app", self.app), ("status", self.status), ("code", self.code),
                           ("user", self.user_id), ("role", self.role), ("email", self.email)):
            if value is not None:
                parts.append(f"{key}:{shlex.quote(str(value))}")
        return " ".join(parts)


def parse_filter(text: str, *, allowed: tuple[str, ...] = KEYS) -> FilterQuery:
    if "\x00" in text:  # PostgreSQL text cannot hold NUL: such a filter would fail in the driver
        raise UsageError("the filter holds a NUL character (U+0000), which no stored value can contain")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the filter: {exc}") from None
    values: dict[str, str] = {}
    bare: list[str] = []
    for word in words:
        key, sep, value = word.partition(":")
        if not sep:
            key, sep, value = word.partition("=")
        if sep and key.lower() in KEYS:
            key = key.lower()
            if key not in allowed:
                raise UsageError(f"{key}: is not a filter here; use {', '.join(k + ':' for k in allowed)}")
            if not value:
                raise UsageError(f"{key}: needs a value")
            values[key] = value
        else:
            bare.append(word)
    if bare:
        if "email" not in allowed:
            raise UsageError("plain words filter by email, which is not available here")
        values["email"] = " ".join([values["email"]] + bare if "email" in values else bare)
    status = values.get("status")
    if status is not None:
        status = status.lower()
        if not set(split_list(status)) <= set(APP_STATUSES):
            raise UsageError(f"status must be one of {', '.join(APP_STATUSES)}")
    role = values.get("role")
    if role is not None:
        role = role.lower()
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}")
    user_id = values.get("user")
    if user_id is not None:
        try:
            user_id = parse_id(user_id, "a user id")
        except UsageError as exc:
            raise UsageError(f"user: {exc.message}") from None
    ids = ()
    if "id" in values:
        try:
            ids = tuple(parse_id(part, "an installation id") for part in split_list(values["id"]))
        except UsageError as exc:
            raise UsageError(f"id: {exc.message} (installation ids, comma-separated)") from None
    return FilterQuery(
        app=values.get("app"), status=status, email=values.get("email"), code=values.get("code"),
        user_id=user_id, role=role, ids=ids,
    )


def split_list(value: str) -> tuple[str, ...]:
    """`stripe,slack` -> ("stripe", "slack"); empty parts are dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def resolve_app(value: str, apps: dict[str, str]) -> str:
    """An app id from what the operator typed: an id, or a name (any case). Unknown text stays as typed.

    `apps` maps app id -> display name.
    """
    if value in apps:
        return value
    lowered = value.lower()
    for app_id, name in apps.items():
        if app_id.lower() == lowered or name.lower() == lowered:
            return app_id
    return value


def resolve_apps(value: str, apps: dict[str, str]) -> tuple[str, ...]:
    """Each app of a comma list (ids or names) as an app id."""
    return tuple(dict.fromkeys(resolve_app(part, apps) for part in split_list(value)))


def complete(text: str, values: dict[str, list[str]], *, allowed: tuple[str, ...] = KEYS) -> str | None:
    """`text` with its last word finished: a key (`st` -> `status:`) or one of the key's values
    (`app:stripe,sl` -> `app:stripe,slack`), matched by prefix ignoring case. None: nothing fits.

    `values` maps a key to what it accepts (app ids and names, codes, statuses…).
    """
    head, _, word = text.rpartition(" ")
    prefix = f"{head} " if head else ""
    key, sep, value = word.partition(":")
    if not sep:
        if not word:
            return None
        for candidate in allowed:
            if candidate.startswith(word.lower()) and candidate != word.lower():
                return f"{prefix}{candidate}:"
        return None
    done, _, partial = value.rpartition(",")
    if not partial:
        return None
    lowered = partial.lower()
    for candidate in values.get(key.lower(), ()):
        if candidate.lower().startswith(lowered) and candidate.lower() != lowered:
            completed = f"{done}," if done else ""
            return f"{prefix}{key}:{completed}{partial}{candidate[len(partial):]}"
    return None
