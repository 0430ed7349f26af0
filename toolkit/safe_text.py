"""Customer text made safe to show a person: the one owner of that rule (DESIGN.md §4.6).

Emails, app ids, config keys and values come from customers; a terminal obeys what they
hold. `\\x1b]52;c;…\\x07` writes the operator's clipboard, `\\x1b]0;…\\x07` retitles the window,
`\\x1b[2J` clears the screen, U+009B is a one-byte CSI, U+202E reverses what follows. So every
rendering for people passes data through `escape_text`, which replaces each such character
with a visible escape (`\\x1b`, `\\u202e`, `\\n`): the data stays on screen, nothing in it
acts on the terminal.

What is escaped: every character whose Unicode category is Cc (C0, DEL, C1), Cf (format:
bidi overrides and isolates, zero-width characters, the BOM, tag characters), Zl and Zp
(U+2028/2029) or Cs (a lone surrogate). Cf is taken whole rather than picked over because
invisible characters are how two emails that look alike differ; showing them is a feature
for an operator. The price: emoji sequences joined by U+200D and Persian text using U+200C
show those joiners escaped.

A backslash is doubled only where it could be read as the start of an escape (before
`\\`, `x`, `u`, `U`, `n`, `r`, `t` or an escaped character), so regex patterns and Windows
paths read as written while distinct inputs always give distinct outputs — the escaping
can be undone exactly (tests/test_safe_text.py holds an inverse to that).

Markup is not this module's concern: Rich/Textual callers build `rich.text.Text` from the
result, never markup strings. Pure: no click, rich or textual here.
"""

from __future__ import annotations

import json
import re

# Code point ranges of the categories above, listed (computing them from `unicodedata` at
# import would cost a scan of 1.1M code points per command). tests/test_safe_text.py checks
# that they cover every Cc, Cf, Zl, Zp and Cs character of the running Python's Unicode data.
UNSAFE_RANGES = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
_CLASS = "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in UNSAFE_RANGES)
# An unsafe character, or a backslash that would otherwise read as the start of an escape.
_UNSAFE = re.compile(f"[{_CLASS}]|\\\\(?=[\\\\xuUnrt{_CLASS}])")
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def escape_text(value) -> str:
    """`value` (any object; not a str: its `str()`) with every control, format and
    separator character shown as a visible escape. Text without any is returned as is."""
    text = value if value.__class__ is str else str(value)
    return _UNSAFE.sub(_escape, text)


# What JSON text leaves raw but a terminal would obey (C1 controls, bidi overrides, U+2028…);
# not the newlines of an indentation: inside strings JSON escapes them itself.
_UNSAFE_IN_JSON = re.compile("(?!\n)[" + _CLASS + "]")


def escape_json_text(text: str) -> str:
    """JSON text (json.dumps' output) made safe for a terminal: the characters it leaves raw
    and a terminal would obey become JSON's own escapes, so it stays the same JSON."""
    return _UNSAFE_IN_JSON.sub(lambda m: json.dumps(m.group())[1:-1], text)


def safe_name(key) -> str:
    """A name from the database (a config key, an app id) made encodable: a lone surrogate
    (SQLite text) becomes a backslash escape; anything not a str, its str()."""
    if key.__class__ is not str:
        key = str(key)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        key = key.encode("utf-8", "backslashreplace").decode("utf-8")
    return key


def is_safe(text: str) -> bool:
    """True when `escape_text` would leave `text` unchanged."""
    return _UNSAFE.search(text) is None


# A spreadsheet runs a cell that starts like a formula (=HYPERLINK(…), +cmd…): customer text in
# a CSV gets a leading ' so it stays text. The one rule for every CSV the toolkit writes.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A value for a CSV cell: None as empty, formula-looking text made inert."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value
