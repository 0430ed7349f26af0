"""Reading the registry file: JSON keyed by app id (DESIGN.md §4.3), checked by a marshmallow
schema of the file format, turned into `Registry` / `AppDefinition` / `FieldDefinition`.

A structural error is a `RegistryError` whose one line names the file, the app and the field;
`RegistryStructureError.problems` lists them all (for `toolkit registry check`). Extra
properties (icons, components, placeholders…) are ignored. An unknown field type is a warning
and the field is validated as text.
"""

from __future__ import annotations

import re
from pathlib import Path

from marshmallow import EXCLUDE, Schema, ValidationError, validates_schema
from marshmallow import fields as mf

from .. import json_files
from ..errors import RegistryError
from ._definitions import AppDefinition, FieldDefinition, Registry, SelectOption
from ._field_types import FIELD_TYPES, PATTERN_TIMEOUT_S, backtracking_risk, compile_pattern

APP_ID_MAX = 100  # app_installations.app_id is varchar(100)


class RegistryStructureError(RegistryError):
    """The registry file is structurally invalid; `problems` holds every problem found."""

    def __init__(self, message: str, *, problems=(), hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = list(problems)


# --- the file format, as marshmallow schemas (messages are ours: they reach the operator) ---

def _errors(kind: str) -> dict:
    return {"required": "is required", "null": "must not be null", "invalid": f"must be {kind}"}


class _StrictBoolean(mf.Field):
    """JSON true/false only: marshmallow's Boolean would take "yes" or 1 for `required`."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        raise ValidationError("must be true or false")


class _Option(mf.Field):
    """A select option: "value" or {"value": "...", "label": "..."}."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return SelectOption(value, value)
        if isinstance(value, dict):
            option_value, label = value.get("value"), value.get("label", value.get("value"))
            if not isinstance(option_value, str):
                raise ValidationError('an option object needs a string "value"')
            if not isinstance(label, str):
                raise ValidationError('an option\'s "label" must be a string')
            return SelectOption(option_value, label)
        raise ValidationError('an option must be a string or an object {"value", "label"}')


def _non_empty(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be empty")


def _compiles(value: str) -> None:
    try:
        compile_pattern(value)
    except re.error as exc:
        raise ValidationError(f"is not a valid regular expression ({exc})") from None


class _FieldSpec(Schema):
    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "must be an object"}

    key = mf.String(required=True, validate=_non_empty, error_messages=_errors("a string"))
    label = mf.String(load_default=None, allow_none=True, error_messages=_errors("a string"))
    type = mf.String(required=True, error_messages=_errors("a string"))
    required = _StrictBoolean(load_default=False, error_messages=_errors("true or false"))
    options = mf.List(_Option(), load_default=None, allow_none=True, error_messages=_errors("a list"))
    pattern = mf.String(load_default=None, allow_none=True, validate=_compiles, error_messages=_errors("a string"))

    @validates_schema
    def _options_fit(self, data, **kwargs):
        options = data.get("options")
        if data.get("type") == "select" and not options:
            raise ValidationError('a select field needs a non-empty "options" list')
        seen = set()
        for option in options or ():
            if option.value in seen:
                raise ValidationError(f"duplicate option value '{option.value}'")
            seen.add(option.value)


class _AppSpec(Schema):
    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": "must be an object"}

    name = mf.String(load_default=None, allow_none=True, error_messages=_errors("a string"))
    category = mf.String(load_default=None, allow_none=True, error_messages=_errors("a string"))
    # "fields" would shadow Schema.fields: load it under another attribute name.
    field_specs = mf.List(
        mf.Nested(_FieldSpec, error_messages={"type": "must be an object"}),
        required=True,
        data_key="fields",
        error_messages=_errors("a list"),
    )


_APP_SPEC = _AppSpec()


# --- loading ---

def load_registry(path) -> Registry:
    """Read and check the registry file at `path`."""
    path = Path(path)
    try:
        data = json_files.load(path)  # bounded in size (`/dev/zero` is refused) and in depth
    except FileNotFoundError:
        raise RegistryError(f"registry file not found: {path}", hint="set TOOLKIT_REGISTRY or --registry to the app registry's JSON") from None
    except IsADirectoryError:
        raise RegistryError(f"registry path is a directory, not a file: {path}") from None
    except OSError as exc:
        raise RegistryError(f"cannot read registry file {path}: {exc.strerror or exc}") from None
    except json_files.JSONFileError as exc:
        raise RegistryError(f"{path}: {exc}") from None
    return parse_registry(data, source=path)


def parse_registry(data, *, source="<registry>") -> Registry:
    """Build a Registry from the decoded JSON (an object keyed by app id)."""
    if not isinstance(data, dict):
        raise RegistryStructureError(
            f"{source}: the registry must be a JSON object keyed by app id, not {_kind(data)}",
            problems=[f"the registry must be a JSON object keyed by app id, not {_kind(data)}"],
        )
    problems: list[str] = []
    warnings: list[str] = []
    apps: dict[str, AppDefinition] = {}
    for app_id, raw in data.items():
        app, app_problems = _build_app(app_id, raw, warnings)
        problems.extend(app_problems)
        if app is not None:
            apps[app_id] = app
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RegistryStructureError(
            f"{source}: {problems[0]}{more}",
            problems=problems,
            hint="run `toolkit registry check` to list every problem" if more else None,
        )
    if not apps:
        warnings.append("the registry defines no apps")
    return Registry(apps=apps, warnings=tuple(warnings), path=source if isinstance(source, Path) else None)


def _build_app(app_id: str, raw, warnings: list[str]):
    where = f"app '{app_id}'"
    if not app_id.strip():
        return None, [f"{where}: an app id must not be empty"]
    if len(app_id) > APP_ID_MAX:
        return None, [f"{where}: the app id is longer than {APP_ID_MAX} characters (app_installations.app_id is varchar({APP_ID_MAX}))"]
    try:
        spec = _APP_SPEC.load(raw)
    except ValidationError as exc:
        return None, [f"{where}{suffix}" for suffix in _describe(exc.messages, raw)]
    first_index: dict[str, int] = {}
    duplicates = []
    for index, field_spec in enumerate(spec["field_specs"], 1):
        key = field_spec["key"]
        if key in first_index:
            duplicates.append(f"{where}, field '{key}': duplicate key (fields #{first_index[key]} and #{index})")
        first_index.setdefault(key, index)
    if duplicates:
        return None, duplicates
    fields = []
    for field_spec in spec["field_specs"]:
        declared = field_spec["type"]
        kind = declared
        if declared not in FIELD_TYPES:
            warnings.append(f"{where}, field '{field_spec['key']}': unknown type '{declared}', validated as text")
            kind = "text"
        risk = backtracking_risk(field_spec["pattern"]) if field_spec["pattern"] else None
        if risk:
            warnings.append(f"{where}, field '{field_spec['key']}': the pattern may backtrack catastrophically "
                            f"({risk}); values are checked with a {PATTERN_TIMEOUT_S:g} s limit")
        fields.append(FieldDefinition(
            key=field_spec["key"],
            label=field_spec["label"] if field_spec["label"] is not None else field_spec["key"],
            type=kind,
            declared_type=declared,
            required=field_spec["required"],
            options=tuple(field_spec["options"] or ()),
            pattern=field_spec["pattern"],
        ))
    name = spec["name"] if spec["name"] is not None else app_id
    return AppDefinition(id=app_id, name=name, category=spec["category"], fields=tuple(fields)), []


def _describe(messages, raw) -> list[str]:
    """marshmallow's nested error dict for one app -> lines like ', field 'x': "type" is required'.

    Property errors read `"prop" <predicate>`; whole-object errors (ours, from
    `validates_schema`) are full sentences under `_schema`.
    """
    if isinstance(messages, list):  # the app itself is not an object
        return [f": {m}" for m in messages]
    raw_fields = raw.get("fields") if isinstance(raw, dict) else None
    lines = []
    for prop, value in messages.items():
        if prop == "fields" and isinstance(value, dict):  # errors of single fields, by index
            for index, field_errors in value.items():
                label = _field_label(raw_fields, index)
                lines.extend(f", {label}: {text}" for text in _object_errors(field_errors))
        else:
            lines.extend(f": {text}" for text in _object_errors({prop: value}))
    return lines


def _object_errors(errors) -> list[str]:
    if isinstance(errors, list):  # the object itself is not an object
        return [str(m) for m in errors]
    lines = []
    for prop, messages in errors.items():
        if prop == "_schema":
            lines.extend(str(m) for m in _as_list(messages))
        elif isinstance(messages, dict):  # errors of list items, by index (options)
            for index, item_messages in messages.items():
                lines.extend(f'"{prop}" #{index + 1}: {m}' for m in _as_list(item_messages))
        else:
            lines.extend(f'"{prop}" {m}' for m in _as_list(messages))
    return lines


def _field_label(raw_fields, index) -> str:
    if isinstance(raw_fields, list) and isinstance(index, int) and index < len(raw_fields):
        item = raw_fields[index]
        if isinstance(item, dict) and isinstance(item.get("key"), str) and item["key"].strip():
            return f"field '{item['key']}'"
    return f"field #{index + 1 if isinstance(index, int) else index}"


def _as_list(messages) -> list:
    if isinstance(messages, list):
        return messages
    if isinstance(messages, dict):
        return [m for value in messages.values() for m in _as_list(value)]
    return [messages]


def _kind(value) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(type(value), "null" if value is None else type(value).__name__)
