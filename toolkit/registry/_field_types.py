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
- Patterns are untrusted code: `^(a+)+$` against "a"*40+"b" would run for hours. A pattern
  that cannot backtrack (at most one variable repetition, nothing repeated inside a
  repetition, no backreference; see `_linear`) runs on `re`, ~15x faster than the `regex`
  package with a timeout (benchmarks/bench_patterns.py); any other runs on `regex` with a
  limit of PATTERN_TIMEOUT_S per match. A value whose match takes longer is invalid, with a
  message saying the pattern took too long: nothing hangs, and the value is not called valid.
"""

from __future__ import annotations

import math
import re
import re._constants as _sre  # the stdlib's own parse of a pattern: what _linear inspects
import re._parser as _sre_parse
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

import regex

if TYPE_CHECKING:  # pragma: no cover
    from ._definitions import FieldDefinition

FIELD_TYPES = ("text", "textarea", "password", "url", "email", "number", "select")
# Compiled with the registry's patterns: JS-like character classes (see module docstring).
PATTERN_FLAGS = re.ASCII
# Per match. A legitimate registry pattern matches a config value in microseconds; 0.1 s is
# thousands of times that, yet a million hostile values cached per field cost at most that much
# each, and an operator waiting on `show` or the dashboard never notices one.
PATTERN_TIMEOUT_S = 0.1

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


class PatternTimeout(Exception):
    """A pattern took longer than PATTERN_TIMEOUT_S on one value."""


def compile_pattern(pattern: str, *, bounded: bool | None = None):
    """The registry's `pattern` -> a test function (`fullmatch` or `search`, see module doc):
    a match or None, or PatternTimeout when the match would take too long.

    `bounded`: None chooses (`re` when the pattern cannot backtrack); True forces the time
    limit (tests hold both paths to the same answers). Raises re.error for a pattern Python
    cannot compile.
    """
    translated, anchored = _translate_anchors(pattern)
    compiled = re.compile(translated, PATTERN_FLAGS)
    test = compiled.search if anchored else compiled.fullmatch
    if not bounded and _linear(translated, searched=anchored):
        return test
    try:
        bounded = regex.compile(translated, regex.ASCII | regex.VERSION0)
    except regex.error as exc:  # `re` took it, the regex package does not: same as invalid
        raise re.error(f"{exc}") from None
    bounded_test = bounded.search if anchored else bounded.fullmatch

    def timed(value: str):
        try:
            return bounded_test(value, timeout=PATTERN_TIMEOUT_S)
        except TimeoutError:
            raise PatternTimeout(pattern) from None

    return timed


def _parse(translated: str):
    try:
        return _sre_parse.parse(translated, PATTERN_FLAGS)
    except Exception:  # a private API: if it ever changes, every pattern takes the bounded path
        return None


_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT))
_BACKREFERENCES = (_sre.GROUPREF, _sre.GROUPREF_EXISTS)


def _children(op, av):
    """The sub-sequences of one parsed item."""
    if op in _REPEATS:
        return [av[2]]
    if op == _sre.SUBPATTERN:
        return [av[3]]
    if op == _sre.BRANCH:
        return list(av[1])
    if op in (_sre.ASSERT, _sre.ASSERT_NOT):
        return [av[1]]
    if op == _sre.ATOMIC_GROUP:
        return [av]
    if op == _sre.GROUPREF_EXISTS:
        return [branch for branch in av[1:] if branch is not None]
    return []


def _items(items):
    """Every parsed item, depth first."""
    for op, av in items:
        yield op, av
        for child in _children(op, av):
            yield from _items(child)


def _variable(op, av) -> bool:
    return op in _REPEATS and av[0] != av[1]


def _linear(translated: str, *, searched: bool) -> bool:
    """True when `re` cannot backtrack on this pattern more than linearly: at most one
    repetition of variable length, nothing repeated or alternated inside a repetition, no
    backreference — and a search not anchored at the start (tried at every position) has no
    variable repetition at all. Deliberately narrow: anything else gets the time limit."""
    parsed = _parse(translated)
    if parsed is None:
        return False
    items = list(_items(parsed))
    if any(op in _BACKREFERENCES for op, _ in items):
        return False
    variable = sum(_variable(op, av) for op, av in items)
    for op, av in items:
        if op in _REPEATS and av[1] > 1:
            inner = list(_items(av[2]))
            if any(o in _REPEATS or o == _sre.BRANCH for o, _ in inner):
                return False
    if searched and not (parsed and parsed[0] == (_sre.AT, _sre.AT_BEGINNING)):
        return variable == 0
    return variable <= 1


def backtracking_risk(pattern: str) -> str | None:
    """Why `pattern` is known to backtrack catastrophically, or None: a repetition over
    something that itself repeats (`(a+)+`, `(a*)*`, `(.*a){3}`), or over alternatives that
    can match the same text (`(a|a)*`, `(a|ab)*`). A heuristic for `registry check`'s
    warnings; matching is bounded either way."""
    translated, _ = _translate_anchors(pattern)
    parsed = _parse(translated)
    if parsed is None:
        return None
    for op, av in _items(parsed):
        if op not in _REPEATS or av[1] <= 1:
            continue
        inner = list(_items(av[2]))
        if any(_variable(o, a) for o, a in inner):
            return "a repetition inside a repetition (like (a+)+)"
        if av[0] != av[1] and any(o == _sre.BRANCH and _overlapping(a[1]) for o, a in inner):
            return "a repetition of alternatives that can match the same text (like (a|a)*)"
    return None


def _overlapping(alternatives) -> bool:
    """Can two alternatives start with the same character? (Empty ones can.)"""
    seen: set[int] = set()
    for alternative in alternatives:
        first = _first_characters(alternative)
        if first is None or first & seen:
            return True
        seen |= first
    return False


def _first_characters(items) -> set[int] | None:
    """The characters an alternative can start with; None when that is anything or unknown."""
    if not items:
        return None
    op, av = items[0]
    if op == _sre.LITERAL:
        return {av}
    if op == _sre.IN and all(o in (_sre.LITERAL, _sre.RANGE) for o, _ in av):
        chars: set[int] = set()
        for o, a in av:
            chars.update([a] if o == _sre.LITERAL else range(a[0], a[1] + 1))
        return chars
    if op == _sre.SUBPATTERN:
        return _first_characters(av[3])
    return None


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
    if test is not None:
        try:
            matched = test(value)
        except PatternTimeout:
            return (f"the pattern {field.pattern} took too long on this value (over {PATTERN_TIMEOUT_S:g} s): "
                    "it could not be checked")
        if matched is None:
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
