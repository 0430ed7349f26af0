"""One marshmallow schema per app: the toolkit's "Zod validates before writes".

Built with `Schema.from_dict(..., name=)` from the app's definition: every field a `String`
(non-strings refused), required fields `required=True` (and not empty), unknown keys refused
(`unknown = RAISE`), each value judged by the same `check_value` the audit uses.

marshmallow facts that shape this (DESIGN.md §6): a validator returning False counts as
valid, so validators raise; messages are English, so every message we let marshmallow emit is
ours and starts with our code (`"field.invalid: …"`), and `problems_from_errors` maps the
error dict to `Problem`s by that code, never by parsing English.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError
from marshmallow import fields as mf

from ._field_types import check_value
from ._problems import (
    CONFIG_NON_STRING,
    CONFIG_NOT_OBJECT,
    FIELD_INVALID,
    FIELD_MISSING,
    FIELD_UNKNOWN,
    PROBLEM_CODES,
    Problem,
)

_SEP = ": "


def _coded(code: str, message: str) -> str:
    return f"{code}{_SEP}{message}"


class ConfigSchema(Schema):
    """Base of every app's schema."""

    class Meta:
        unknown = RAISE

    error_messages = {
        "unknown": _coded(FIELD_UNKNOWN, "not a field of this app"),
        "type": _coded(CONFIG_NOT_OBJECT, "config is not an object"),
    }


_STRING_ERRORS = {
    "required": _coded(FIELD_MISSING, "required field is missing"),
    "null": _coded(CONFIG_NON_STRING, "value is null, not a string"),
    "invalid": _coded(CONFIG_NON_STRING, "value is not a string"),
    "invalid_utf8": _coded(CONFIG_NON_STRING, "value is not valid UTF-8"),
}


def build_schema(app) -> Schema:
    """A schema instance for `app` (an AppDefinition). Reusable: marshmallow 4 keeps no per-call state."""
    declared = {
        field.key: mf.String(
            required=field.required,
            validate=_value_validator(field),
            error_messages=_STRING_ERRORS,
        )
        for field in app.fields
    }
    cls = ConfigSchema.from_dict(declared, name=f"{_class_name(app.id)}ConfigSchema")
    return cls()


def _value_validator(field):
    def validate(value: str) -> None:
        if value == "":
            if field.required:
                raise ValidationError(_coded(FIELD_MISSING, "required field is empty"))
            return
        message = check_value(field, value)
        if message is not None:
            raise ValidationError(_coded(FIELD_INVALID, message))

    return validate


def schema_problems(app, config, *, complete: bool = True) -> list[Problem]:
    """Validate a plaintext config with the app's schema; Problems in config-key order.

    `complete=False` is the check of a partial update on an `installed` installation:
    required-ness is not enforced (marshmallow's `partial`), and empty values of the app's
    fields count as "not given" rather than as empty required fields.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        return [Problem(CONFIG_NOT_OBJECT, None, "config is not an object")]
    data = config
    if not complete:
        data = {k: v for k, v in config.items() if not (v == "" and app.field(k) is not None)}
    errors = app.schema().validate(data, partial=not complete)
    problems = problems_from_errors(errors)
    # Where marshmallow stops at the first fact, the stored-config check reports both:
    # an unknown key's value that is not a string, and a required field that is null.
    for key, value in config.items():
        if app.field(key) is None and not isinstance(value, str):
            problems.append(Problem(CONFIG_NON_STRING, key, "value is not a string"))
        elif value is None and complete and key in app.required_keys:
            problems.append(Problem(FIELD_MISSING, key, "required field is null"))
    order = {key: i for i, key in enumerate(config)}
    order.update({key: len(config) + i for i, key in enumerate(app.required_keys) if key not in order})
    rank = {code: i for i, code in enumerate((FIELD_UNKNOWN, CONFIG_NON_STRING, FIELD_INVALID, FIELD_MISSING))}
    problems.sort(key=lambda p: (-1 if p.field is None else order.get(p.field, len(order)), rank.get(p.code, 9)))
    return problems


def problems_from_errors(errors: dict) -> list[Problem]:
    """marshmallow's error dict -> Problems. Messages without our code prefix become field.invalid."""
    problems = []
    for key, messages in errors.items():
        field = None if key == "_schema" else key
        if isinstance(messages, dict):  # not produced by flat String fields; be safe
            messages = [str(m) for m in messages.values()]
        for message in messages:
            code, sep, text = str(message).partition(_SEP)
            if not sep or code not in PROBLEM_CODES:
                code, text = FIELD_INVALID, str(message)
            problems.append(Problem(code, field, text))
    return problems


def _class_name(app_id: str) -> str:
    name = "".join(part.capitalize() for part in _split_words(app_id))
    return name or "App"


def _split_words(text: str):
    word = []
    for char in text:
        if char.isalnum():
            word.append(char)
        elif word:
            yield "".join(word)
            word = []
    if word:
        yield "".join(word)
