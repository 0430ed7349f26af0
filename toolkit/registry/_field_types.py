"""The per-type value rules: the one place that decides whether a string is a valid value
for a field. The audit calls `check_value` on every stored value (millions of them), so it is
plain Python over precompiled regexes: no marshmallow, no allocation on the happy path.

Rules (decided here, documented in README "The registry"):

- Empty strings are not judged: `check_value(field, "")` is None. Whether a field may be
  empty is the `required` rule's business (`field.missing`), as in the app, whose form sends
  "" for an untouched input. Only "" is empty; "  " is a value (and fails url/email/number).
- `text`, `textarea`, `password`: no type rule (only `pattern`).
- `url`: an absolute http or https URL with a host, parsed by `urllib.parse`; no whitespace or
  control characters anywhere, a valid port if one is given. Stricter than Zod's `.url()`,
  which accepts any scheme (`javascript:`, `mailto:`): for an integration's endpoint those
  are mistakes an operator wants to see.
- `email`: pragmatic: exactly one `@`, a non-empty local part, a domain of at least two
  non-empty dot-separated labels whose last is 2+ characters, no whitespace, control
  characters or `,;<>()[]\\"`, at most 254 characters (RFC 5321). Unicode (IDN) is accepted.
- `number`: a decimal number as JavaScript's `Number()` reads it, minus its surprises:
  optional sign, digits with an optional fraction (`1.`, `.5`), optional exponent; ASCII digits
  only; no surrounding whitespace, no hex/octal/binary literals, no `_` or `,` separators, no
  NaN/Infinity, and finite (`1e999` is refused: JavaScript would read Infinity).
- `select`: one of the option values, compared exactly (case-sensitive).
- `pattern` (any type): anchors mean what they say. A pattern without a `^` or `$` anchor
  must match the whole value (`re.fullmatch`, like HTML's `pattern` attribute): `AC[0-9a-f]{32}`
  refuses `xAC…`. A pattern that writes an anchor is applied as written, the way the app's
  `new RegExp(pattern).test(value)` does: `^https://` accepts `https://example.com`. `$` means
  the end of the value, as in JavaScript (Python's `$` would also match before a trailing
  newline), and `re.ASCII` makes `\\d`/`\\w` mean what they mean in a JS regex without `u`.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

if TYPE_CHECKING:  # pragma: no cover
    from ._definitions import FieldDefinition

FIELD_TYPES = ("text", "textarea", "password", "url", "email", "number", "select")
# Compiled with the registry's patterns: JS-like character classes (see module docstring).
PATTERN_FLAGS = re.ASCII

_URL_SCHEMES = frozenset(("http", "https"))
# The common case, checked by one regex (urlsplit costs ~4 µs): a plain http(s) host, an
# optional port, then printable ASCII. Anything else takes the full path below.
_URL_FAST = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::([0-9]{1,5}))?(?:[/?#][!-~]*)?"
)
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
_HOST_FORBIDDEN = re.compile(r"[<>\"{}|\\^`%]")
_EMAIL_MAX = 254
_EMAIL = re.compile(
    r"[^\s@,;<>()\[\]\\\"\x00-\x1f\x7f]+"  # local part
    r"@[^\s@.,;<>()\[\]\\\"\x00-\x1f\x7f]+"  # first domain label
    r"(?:\.[^\s@.,;<>()\[\]\\\"\x00-\x1f\x7f]+)*"  # more labels
    r"\.[^\s@.,;<>()\[\]\\\"\x00-\x1f\x7f]{2,}"  # the last label, 2+ characters
)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_OPTIONS_SHOWN = 8


def compile_pattern(pattern: str):
    """The registry's `pattern` -> a test function (`fullmatch` or `search`, see module doc).

    Raises re.error for a pattern Python cannot compile.
    """
    translated, anchored = _translate_anchors(pattern)
    regex = re.compile(translated, PATTERN_FLAGS)
    return regex.search if anchored else regex.fullmatch


_JS_BACKREFERENCE = re.compile(r"\\k<([A-Za-z_][A-Za-z0-9_]*)>")


def _translate_anchors(pattern: str) -> tuple[str, bool]:
    """Find anchors (not escaped, not in a [class]) and make `$` JavaScript's end of input.

    Also spells JavaScript's named groups the Python way: `(?<name>…)` -> `(?P<name>…)` and
    `\\k<name>` -> `(?P=name)`; lookbehinds `(?<=` / `(?<!` are the same in both.
    """
    out = []
    anchored = in_class = False
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            backreference = _JS_BACKREFERENCE.match(pattern, i) if not in_class else None
            if backreference:
                out.append(f"(?P={backreference.group(1)})")
                i = backreference.end()
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if not in_class and pattern.startswith("(?<", i) and pattern[i + 3:i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # `[]…]` and `[^]…]`: a leading `]` is a literal in Python's classes.
            j = i + 1 + (pattern[i + 1:i + 2] == "^")
            if pattern[j:j + 1] == "]":
                out.append(pattern[i:j + 1])
                i = j + 1
                continue
        elif char == "^":
            anchored = True
        elif char == "$":
            anchored = True
            char = r"\Z"
        out.append(char)
        i += 1
    return "".join(out), anchored


def check_value(field: "FieldDefinition", value: str) -> str | None:
    """None if `value` is valid for `field`, else a short message that never quotes the value."""
    if value == "":
        return None
    rule = _TYPE_RULES.get(field.type)
    if rule is not None:
        message = rule(field, value)
        if message is not None:
            return message
    test = field.pattern_test
    if test is not None and test(value) is None:
        return f"does not match the pattern {field.pattern}"
    return None


def _check_url(field, value: str) -> str | None:
    fast = _URL_FAST.fullmatch(value)
    if fast is not None and (fast.group(1) is None or int(fast.group(1)) <= 65535):
        return None
    return _check_url_fully(value)


def _check_url_fully(value: str) -> str | None:
    if _URL_FORBIDDEN.search(value):
        return "not a valid URL: contains whitespace or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in _URL_SCHEMES:
        return "not an absolute http(s) URL"
    host = parts.hostname
    if not host:
        return "not a valid URL: no host"
    if _HOST_FORBIDDEN.search(host):
        return "not a valid URL: invalid characters in the host"
    return None


def _check_email(field, value: str) -> str | None:
    if len(value) > _EMAIL_MAX or _EMAIL.fullmatch(value) is None:
        return "not a valid email address"
    return None


def _check_number(field, value: str) -> str | None:
    if _NUMBER.fullmatch(value) is None:
        if value.strip() != value and _NUMBER.fullmatch(value.strip()):
            return "not a number: surrounding whitespace"
        return "not a number"
    if not math.isfinite(float(value)):
        return "not a number: out of range"
    return None


def _check_select(field, value: str) -> str | None:
    if value in field.option_values:
        return None
    shown = [option.value for option in field.options[:_MAX_OPTIONS_SHOWN]]
    more = ", …" if len(field.options) > _MAX_OPTIONS_SHOWN else ""
    return f"not one of the options: {', '.join(shown)}{more}"


_TYPE_RULES: dict[str, Callable[["FieldDefinition", str], str | None]] = {
    "url": _check_url,
    "email": _check_email,
    "number": _check_number,
    "select": _check_select,
}
