"""The checks: small pure functions, named for what they find.

Each takes a config, a value or the status of a stored value and returns a problem (a message,
or `(code, message)` where one function can find several kinds) or None. They never see a
database and never put a value in a message: they name fields, kinds and lengths only.
`row_auditor.py` composes them into the per-installation routine the engine runs millions of times,
in one pass over each config (the type rules themselves are the registry's `check_value`).

Decisions this module owns (DESIGN.md §4.4 leaves them to us):

- A NULL config and a JSON `null` both count as `{}`: the app reads both as `null ?? {}`.
- A value is *blank* only when it is `""` (the registry's rule; "  " is a value). Blank means
  "not set": an optional field may be blank, a required one is `field.missing` on a
  `configured` installation, and a blank password value is not `secret.plaintext`.
- JSON too deeply nested for the parser is not a crash: its top level is read by a shallow
  scanner, so a deep value under one key is that key's `config.non-string`.
- A password value that authenticates but whose plaintext is not UTF-8 is
  `secret.undecryptable` with its own message: the app would decrypt it to garbage.
- A password value that decrypts to "" (an app encrypting an untouched input) is set but
  empty: fine when optional, `field.missing` when required on a `configured` installation,
  and not "set and valid" for `status.not-configured`.
- A password field with a `pattern` has its decrypted value checked (`field.invalid`), as
  the app's form checked it before encrypting.
"""

from __future__ import annotations

from ..codes import (
    APP_UNKNOWN, CONFIG_NON_STRING, CONFIG_NOT_OBJECT, FIELD_INVALID, FIELD_MISSING,
    FIELD_UNEXPECTED_CIPHERTEXT, FIELD_UNKNOWN, INSTALLATION_TIMESTAMPS, SECRET_MALFORMED,
    SECRET_PLAINTEXT, SECRET_STALE_KEY, SECRET_UNDECRYPTABLE, STATUS_NOT_CONFIGURED,
)
from ..crypto import split_strict
from ..crypto._keys import key_variable
from ..db.json_values import NOT_JSON, Unreadable, decode_config
from ..safe_text import safe_name

# The kinds keyring.inspect() reports (toolkit.crypto.KINDS).
CURRENT, PREVIOUS, UNDECRYPTABLE, PLAINTEXT, MALFORMED = (
    "current", "previous", "undecryptable", "plaintext", "malformed")


# ---- the config document ----------------------------------------------------------------

def load_config(raw):
    """The config as the checks see it: `db.json_values.decode_config`, except that an object
    too deep to build is read by its top level (a deep value is then its key's non-string)."""
    config = decode_config(raw)
    if config.__class__ is Unreadable and config.top_level is not None:
        return config.top_level
    return config


def json_kind(value) -> str:
    """How a message names a JSON value's type (never the value)."""
    if isinstance(value, Unreadable):
        return value.kind
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"


# ---- one installation -------------------------------------------------------------------

def config_not_object(config) -> str | None:
    """config.not-object: the config is JSON but not an object (NULL was already `{}`)."""
    if isinstance(config, dict):
        return None
    if isinstance(config, Unreadable) and config.kind == NOT_JSON:
        return "config is not valid JSON"
    return f"config is {json_kind(config)}, not a JSON object"


def config_non_string(value) -> str:
    """config.non-string: the app's config is Record<string, string>."""
    return f"value is {json_kind(value)}, not a string"


def missing_message(value) -> str:
    """field.missing (required, absent or "" on a `configured` installation — or a password
    whose value decrypts to "": the app encrypted an untouched input)."""
    if value is None:
        return "required field is missing"
    if value == "":
        return "required field is empty"
    return "required field decrypts to an empty value"


def decrypted_value_problem(check_value, field, plaintext: bytes) -> str | None:
    """field.invalid for a password field with a pattern: its decrypted value must match,
    as the app's form demanded before encrypting (check_value's message names the pattern,
    never the value). Empty or non-UTF-8 plaintexts are reported elsewhere."""
    if not plaintext:
        return None
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return check_value(field, text)


def is_blank(value: str) -> bool:
    """Not set. Only "" is empty, as in the registry's rules (`toolkit.registry`): "  " is a
    value (and, in a password field, a plaintext one)."""
    return value == ""


def plaintext_problem(plaintext: bytes) -> str | None:
    """A value that authenticates but is not UTF-8: the app would decrypt it to garbage."""
    if plaintext.isascii():
        return None
    try:
        plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return "authenticates, but the decrypted bytes are not valid UTF-8 (the app would read garbage)"
    return None




def stale_key_problem(status) -> str | None:
    """secret.stale-key: a ciphertext, in any field of any app, that only a previous key opens."""
    if status.kind != PREVIOUS:
        return None
    return f"decrypts only with the previous key {key_variable(status.key_index)}"


def secret_problems(status, key_count: int) -> list[tuple[str, str]]:
    """secret.*: what is wrong with a password field's stored value, from keyring.inspect()."""
    kind = status.kind
    if kind == CURRENT:
        problem = plaintext_problem(status.plaintext)
        return [(SECRET_UNDECRYPTABLE, problem)] if problem else []
    if kind == PREVIOUS:
        found = [(SECRET_STALE_KEY, stale_key_problem(status))]
        problem = plaintext_problem(status.plaintext)
        return found + ([(SECRET_UNDECRYPTABLE, problem)] if problem else [])
    if kind == PLAINTEXT:
        return [(SECRET_PLAINTEXT, "stored in plaintext, not as iv:authTag:ciphertext")]
    if kind == MALFORMED:
        return [(SECRET_MALFORMED, f"malformed ciphertext: {status.reason or 'unknown reason'}")]
    if kind == UNDECRYPTABLE:
        keys = f"{key_count} key{'s' if key_count != 1 else ''}"
        return [(SECRET_UNDECRYPTABLE,
                 f"no key of the keyring ({keys}) authenticates it: written with another key, or tampered")]
    raise ValueError(f"unknown value status {kind!r}")


def unexpected_ciphertext(status) -> str | None:
    """field.unexpected-ciphertext: a non-password value that decrypts under the keyring."""
    if status.key_index is None:
        return None
    return f"a non-password field holds a ciphertext that decrypts with {key_variable(status.key_index)}"


def not_configured(status: str, required_keys, config: dict, bad_fields) -> str | None:
    """status.not-configured: `installed`, yet every required field is present and valid.

    `bad_fields`: fields with any finding on this installation. An app without required
    fields is only reported when at least one of its fields is set and nothing is wrong
    with it — otherwise every fresh installation of such an app would be reported.
    """
    if status != "installed":
        return None
    if required_keys:
        for key in required_keys:
            value = config.get(key)
            if value is None or value.__class__ is not str or is_blank(value) or key in bad_fields:
                return None
        return "status is installed, but every required field is set and valid"
    if bad_fields or not any(v.__class__ is str and not is_blank(v) for v in config.values()):
        return None
    return "status is installed, but the app has no required fields and its settings are set and valid"


def timestamps_problem(detail: str) -> str | None:
    """installation.timestamps: the SQL marks the row (updated_at < installed_at) with both times."""
    if not detail:
        return None
    return f"updated_at is earlier than installed_at ({detail})"


# ---- across rows --------------------------------------------------------------------------

def email_case_duplicates(groups) -> list[tuple[int, str]]:
    """user.email-case-duplicate: (user_id, message) per user of each group of users whose
    lower-cased emails are equal (the SQL groups). The message names the other users, never
    the address."""
    found = []
    for ids in groups:
        ids = sorted(ids)
        if len(ids) < 2:
            continue
        for user_id in ids:
            others = [str(other) for other in ids if other != user_id]
            found.append((user_id, f"email equals, ignoring case, that of user {', '.join(others)}"
                          if len(others) == 1 else
                          f"email equals, ignoring case, those of users {', '.join(others)}"))
    return found


# ---- one installation, all rules composed (the plain reference) ----------------------------

def installation_problems(app, app_id: str, status: str, config, keyring, check_value,
                          timestamps: str | None = None) -> list[tuple[str, str | None, str]]:
    """Every per-row finding of DESIGN §4.4 for one installation: `(code, field, message)`.

    The rules written plainly, one step per rule, for readers and for the differential
    property test: `row_auditor.Auditor` is the audit's fast path compiled from the same checks and
    must report exactly these findings for every row (tests/test_audit_differential.py).
    `app` is the registry's AppDefinition or None; `config` is `load_config`'s result;
    `timestamps` the SQL's detail when updated_at < installed_at.
    """
    found = []
    if timestamps:
        found.append((INSTALLATION_TIMESTAMPS, None, timestamps_problem(timestamps)))
    if app is None:
        found.append((APP_UNKNOWN, None, f"app '{safe_name(app_id)}' is not in the registry"))
        if isinstance(config, dict):
            found += _stale_values(config, keyring)
        return found
    if not isinstance(config, dict):
        return found + [(CONFIG_NOT_OBJECT, None, config_not_object(config))]
    fields = {field.key: field for field in app.fields}
    bad = set()  # fields with a finding (status.not-configured needs them)
    blank = set()  # password fields whose value decrypts to "": set, but not set
    for key, value in config.items():
        if key in fields:
            continue
        found.append((FIELD_UNKNOWN, safe_name(key), f"not a field of app '{app_id}'"))
        if not isinstance(value, str):
            found.append((CONFIG_NON_STRING, safe_name(key), config_non_string(value)))
        else:
            found += _stale_values({key: value}, keyring)
        bad.add(key)
    for field in app.fields:
        key = field.key
        if key not in config:
            continue
        value = config[key]
        if not isinstance(value, str):
            found.append((CONFIG_NON_STRING, key, config_non_string(value)))
            bad.add(key)
            continue
        if is_blank(value):
            continue
        status_of_value = keyring.inspect(value)
        if field.is_secret:
            problems = secret_problems(status_of_value, len(keyring))
            if status_of_value.decrypts:
                if not status_of_value.plaintext:
                    blank.add(key)
                elif field.pattern is not None:
                    message = decrypted_value_problem(check_value, field, status_of_value.plaintext)
                    problems += [(FIELD_INVALID, message)] if message else []
        elif status_of_value.decrypts:  # a ciphertext where the registry expects plain text
            problems = [(FIELD_UNEXPECTED_CIPHERTEXT, unexpected_ciphertext(status_of_value))]
            stale = stale_key_problem(status_of_value)
            problems += [(SECRET_STALE_KEY, stale)] if stale else []
        else:
            message = check_value(field, value)
            problems = [(FIELD_INVALID, message)] if message else []
        for code, message in problems:
            found.append((code, key, message))
            bad.add(key)
    if status == "configured":
        for key in app.required_keys:
            value = config.get(key)
            if value is None or value == "" or key in blank:
                found.append((FIELD_MISSING, key, missing_message(value)))
    else:
        message = not_configured(status, app.required_keys, config, bad | blank)
        if message is not None:
            found.append((STATUS_NOT_CONFIGURED, None, message))
    return found


def _stale_values(config: dict, keyring) -> list[tuple[str, str, str]]:
    """secret.stale-key for the ciphertexts of keys outside the registry's fields."""
    found = []
    for key, value in config.items():
        if isinstance(value, str) and value:
            message = stale_key_problem(keyring.inspect(value))
            if message is not None and split_strict(value) is not None:
                found.append((SECRET_STALE_KEY, safe_name(key), message))
    return found
