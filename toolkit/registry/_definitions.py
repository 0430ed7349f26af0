"""The registry as Python values: apps, their fields, and the config check of one app.

`AppDefinition.validate` is the fast check of a *stored* config (the audit's path): password
values are ciphertexts there, so only their presence and string-ness are judged. The write
path validates plaintext with `AppDefinition.schema()` (marshmallow, see `_schemas.py`); both
apply the same value rules (`check_value`) and report the same `Problem` codes.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ._field_types import check_value, compile_pattern
from ._problems import (
    CONFIG_NON_STRING,
    CONFIG_NOT_OBJECT,
    FIELD_INVALID,
    FIELD_MISSING,
    FIELD_UNKNOWN,
    Problem,
)


@dataclasses.dataclass(frozen=True, slots=True)
class SelectOption:
    value: str
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class FieldDefinition:
    key: str
    label: str
    type: str  # the type the toolkit applies: one of FIELD_TYPES (unknown types become "text")
    declared_type: str | None = None  # as written in the registry; defaults to `type`
    required: bool = False
    options: tuple[SelectOption, ...] = ()
    pattern: str | None = None
    # Derived once, so checking a value costs a dict lookup and a regex match.
    # `pattern_test(value)` is a match object or None (fullmatch or search: see _field_types).
    pattern_test: Callable[[str], re.Match | None] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    option_values: frozenset[str] = dataclasses.field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.declared_type is None:
            object.__setattr__(self, "declared_type", self.type)
        if self.pattern is not None:
            # A bad pattern raises re.error here; the loader turns it into a RegistryError.
            object.__setattr__(self, "pattern_test", compile_pattern(self.pattern))
        object.__setattr__(self, "option_values", frozenset(o.value for o in self.options))

    @property
    def is_secret(self) -> bool:
        """Stored encrypted by the app (`type === "password"`)."""
        return self.type == "password"

    def check(self, value: str) -> str | None:
        return check_value(self, value)


@dataclasses.dataclass(frozen=True)
class AppDefinition:
    id: str
    name: str
    category: str | None
    fields: tuple[FieldDefinition, ...]

    @functools.cached_property
    def _by_key(self) -> dict[str, FieldDefinition]:
        return {f.key: f for f in self.fields}

    @functools.cached_property
    def secret_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields if f.is_secret)

    @functools.cached_property
    def required_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields if f.required)

    def field(self, key: str) -> FieldDefinition | None:
        """The field `key`, or None when the app does not define it."""
        return self._by_key.get(key)

    def schema(self):
        """The marshmallow schema of this app's plaintext config (built once, see `_schemas`)."""
        return self._schema

    @functools.cached_property
    def _schema(self):
        from ._schemas import build_schema

        return build_schema(self)

    def validate(self, config, *, status: str | None = None, complete: bool = False,
                 encrypted: bool = True) -> list[Problem]:
        """Problems of `config` (a stored config: None counts as {}).

        Required fields are checked when `status == "configured"` or `complete` is true.
        With `encrypted` (the default: a config as stored) password values are ciphertexts
        and only their presence is judged; pass `encrypted=False` for a plaintext config.
        Empty optional values are fine. One pass, no marshmallow: this runs per row.
        """
        if config is None:
            config = {}
        elif not isinstance(config, dict):
            return [Problem(CONFIG_NOT_OBJECT, None, f"config is a JSON {_json_type(config)}, not an object")]
        problems = []
        by_key = self._by_key
        for key, value in config.items():
            field = by_key.get(key)
            if field is None:
                problems.append(Problem(FIELD_UNKNOWN, key, f"not a field of app '{self.id}'"))
                if not isinstance(value, str):
                    problems.append(_non_string(key, value))
            elif not isinstance(value, str):
                problems.append(_non_string(key, value))
            elif value == "" or (encrypted and field.is_secret):
                continue
            else:
                message = check_value(field, value)
                if message is not None:
                    problems.append(Problem(FIELD_INVALID, key, message))
        if complete or status == "configured":
            for key in self.required_keys:
                value = config.get(key)
                if value is None or value == "":
                    problems.append(_missing(key, value))
        return problems

    def missing_keys(self, config) -> tuple[str, ...]:
        """Required fields absent or empty in `config` (a dict)."""
        return tuple(k for k in self.required_keys if config.get(k) in (None, ""))


@dataclasses.dataclass(frozen=True)
class Registry:
    apps: Mapping[str, AppDefinition]
    warnings: tuple[str, ...] = ()
    path: Path | None = None

    def get(self, app_id: str) -> AppDefinition | None:
        return self.apps.get(app_id)

    def __contains__(self, app_id) -> bool:
        return app_id in self.apps

    def __iter__(self) -> Iterator[AppDefinition]:
        return iter(self.apps.values())

    def __len__(self) -> int:
        return len(self.apps)

    def summary(self) -> dict:
        """Counts for `toolkit registry check` and the dashboard's header."""
        fields = [f for app in self.apps.values() for f in app.fields]
        by_type: dict[str, int] = {}
        for f in fields:
            by_type[f.type] = by_type.get(f.type, 0) + 1
        return {
            "path": str(self.path) if self.path else None,
            "apps": len(self.apps),
            "fields": len(fields),
            "secret_fields": sum(f.is_secret for f in fields),
            "required_fields": sum(f.required for f in fields),
            "fields_by_type": dict(sorted(by_type.items())),
            "warnings": list(self.warnings),
        }


def _missing(key, value) -> Problem:
    return Problem(FIELD_MISSING, key, "required field is empty" if value == "" else "required field is missing")



def _non_string(key, value) -> Problem:
    return Problem(CONFIG_NON_STRING, key, f"value is a JSON {_json_type(value)}, not a string")


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string" if isinstance(value, str) else type(value).__name__
