"""What counts as a row id typed by a person: ASCII digits only (the one owner of that rule).

Python's `int()` (and so click's INT) reads any Unicode decimal digits — `int("١٢")` is 12 —
and `str.isdigit()` is true for "²", which `int()` then refuses. An operator who pastes
`١٢` from a ticket must be told, not shown installation 12.
"""

from __future__ import annotations

from .errors import UsageError
from .safe_text import escape_text

ID_MAX = 2**63 - 1  # bigint: larger never names a row, and SQLite cannot even bind it


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # the only ASCII characters isdigit() accepts are 0-9


def is_id(text: str) -> bool:
    """True for text `parse_id` accepts: ASCII digits whose value fits a bigint."""
    return _ascii_digits(text) and int(text) <= ID_MAX


def parse_id(text, what: str = "an id") -> int:
    """`text` as a row id, or a UsageError (one line, exit 2) naming `what` was expected."""
    if isinstance(text, int) and not isinstance(text, bool) and 0 <= text <= ID_MAX:
        return text
    if isinstance(text, str) and _ascii_digits(text):
        if int(text) <= ID_MAX:
            return int(text)
        raise UsageError(f"'{text}' is too large for {what} (at most {ID_MAX})")
    raise UsageError(f"'{escape_text(text)}' is not {what}: use the ASCII digits 0-9")


def parse_user(text: str) -> int | str:
    """A user as an operator names one: an id (ASCII digits) or an email (anything else).

    Text made only of other digits ("²", "١٢") is refused rather than taken for an email
    that matches nobody: the operator meant an id."""
    if _ascii_digits(text) or text.isnumeric():
        return parse_id(text, "a user id")
    return text
