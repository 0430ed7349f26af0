"""Decoding the config column — the one decoder every reader uses (audit, views, rewrites,
`keys status`, the dashboard's lists, the config service).

PostgreSQL's jsonb accepts nesting far deeper than Python's recursion limit and numbers
orjson refuses; a SQLite text column holds anything. `decode_config` never raises: a config
it cannot build losslessly is an `Unreadable` (its kind, never its content), which every
front end shows as a config that is not an object and every writer refuses to write over.
For the audit, an Unreadable object keeps its `top_level`: the top-level keys with nested
values replaced by empty containers, so a deep value under one key is that key's finding.
"""

from __future__ import annotations

import json
import re

import orjson


class Unreadable:
    """A config value the parser could not build; keeps only what kind of problem it is."""

    __slots__ = ("kind", "top_level")

    def __init__(self, kind: str, top_level: dict | None = None):
        self.kind = kind
        self.top_level = top_level  # the object's top level, when it is one (see module doc)

    def __repr__(self) -> str:
        return f"<{self.kind}>"


NOT_JSON = "not valid JSON"
TOO_DEEP = "JSON nested too deeply"


def decode_config(raw):
    """The config column as read (JSON text as str/bytes/memoryview, None for SQL NULL, or a
    value psycopg2 already decoded) -> dict, another JSON value, or Unreadable. NULL and JSON
    null are `{}` (the app reads both as `null ?? {}`). Lossless, or Unreadable: never a guess."""
    if raw is None:
        return {}
    if raw.__class__ is memoryview:
        raw = bytes(raw)
    if raw.__class__ is not str and raw.__class__ is not bytes:
        return raw  # decoded by the driver already
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:  # deep nesting, big numbers, lone surrogates, not JSON
        value = _decode_slowly(raw)
    return {} if value is None else value


def _decode_slowly(raw):
    try:
        text = raw.decode("utf-8") if raw.__class__ is bytes else raw
        return json.loads(text)
    except RecursionError:
        if text.lstrip()[:1] == "[":
            return Unreadable("an array")  # not an object, whatever its depth
        return Unreadable(TOO_DEEP, _top_level(text))
    except ValueError:  # also invalid UTF-8
        return Unreadable(NOT_JSON)



_STRING_OR_BRACKET = re.compile(r'["\[\]{}]')
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_scan_string = json.decoder.scanstring
_decode_scalar = json.JSONDecoder().raw_decode


def _top_level(text: str):
    """The top level of a JSON object without recursing: strings decoded, nested values kept
    as an empty object/array (their kind is all a finding says). None when not an object."""
    try:
        return _scan_object(text)
    except (ValueError, IndexError, RecursionError):
        return None


def _scan_object(text: str) -> dict:
    ws = _WHITESPACE.match
    i = ws(text, 0).end()
    if text[i] != "{":
        raise ValueError("not an object")
    result = {}
    i = ws(text, i + 1).end()
    if text[i] == "}":
        return result
    while True:
        if text[i] != '"':
            raise ValueError("expected a key")
        key, i = _scan_string(text, i + 1)
        i = ws(text, i).end()
        if text[i] != ":":
            raise ValueError("expected ':'")
        i = ws(text, i + 1).end()
        char = text[i]
        if char == '"':
            value, i = _scan_string(text, i + 1)
        elif char in "[{":
            # Kept as an empty container of the same kind: a non-string, named right.
            value = {} if char == "{" else []
            i = _skip_nested(text, i)
        else:
            value, i = _decode_scalar(text, i)
        result[key] = value
        i = ws(text, i).end()
        if text[i] == ",":
            i = ws(text, i + 1).end()
            continue
        if text[i] == "}":
            return result
        raise ValueError("expected ',' or '}'")


def _skip_nested(text: str, start: int) -> int:
    """Index just past the array/object starting at `start`, iteratively (any depth)."""
    depth = 0
    position = start
    search = _STRING_OR_BRACKET.search
    while True:
        match = search(text, position)
        if match is None:
            raise ValueError("unterminated value")
        char = match.group()
        if char == '"':
            _, position = _scan_string(text, match.end())
            continue
        depth += 1 if char in "[{" else -1
        position = match.end()
        if depth == 0:
            return position
