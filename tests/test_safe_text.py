"""`escape_text`: nothing a terminal obeys survives it, and distinct inputs stay distinct."""

from __future__ import annotations

import re
import sys
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.safe_text import UNSAFE_RANGES, escape_text, is_safe

ESCAPED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_WIDTH = {"x": 2, "u": 4, "U": 8}
_SHORT = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """The inverse the module's docstring promises: proof that escaping loses nothing."""
    out, i = [], 0
    while i < len(text):
        char, nxt = text[i], text[i + 1:i + 2]
        if char == "\\" and nxt in _SHORT:
            out.append(_SHORT[nxt])
            i += 2
        elif char == "\\" and nxt in _WIDTH:
            digits = text[i + 2:i + 2 + _WIDTH[nxt]]
            assert re.fullmatch(r"[0-9a-f]+", digits) and len(digits) == _WIDTH[nxt], text
            out.append(chr(int(digits, 16)))
            i += 2 + len(digits)
        else:
            out.append(char)
            i += 1
    return "".join(out)


def unsafe(char: str) -> bool:
    return unicodedata.category(char) in ESCAPED_CATEGORIES


# Text that favours what matters: escapes, bidi, backslashes and the letters after them.
hostile = st.text(st.one_of(
    st.characters(),
    st.sampled_from("\x1b\x07\x9b\x00\x7f\n\r\t\\xuUnrt0123456789abcdef[]]52;\u202e\u2066\u2028\u200d\ufeff"),
    st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Cs"]),
))


@settings(max_examples=600)
@given(hostile)
def test_the_output_holds_nothing_a_terminal_obeys(text):
    shown = escape_text(text)
    assert not any(unsafe(c) for c in shown)
    assert "\x1b" not in shown and "\x07" not in shown
    assert not any(0x80 <= ord(c) <= 0x9f for c in shown)


@settings(max_examples=600)
@given(hostile)
def test_escaping_is_reversible_so_distinct_inputs_stay_distinct(text):
    assert unescape(escape_text(text)) == text


@given(hostile, hostile)
def test_two_different_values_never_look_the_same(a, b):
    assert (escape_text(a) == escape_text(b)) == (a == b)


@given(st.text(st.characters(exclude_categories=["Cc", "Cf", "Zl", "Zp", "Cs"], exclude_characters="\\")))
def test_ordinary_text_is_unchanged(text):
    assert escape_text(text) == text and is_safe(text)


def test_the_hostile_sequences_of_the_issue_show_escaped():
    assert escape_text("a\x1b]52;c;ZWNobyBQV05FRAo=\x07@x.io") == "a\\x1b]52;c;ZWNobyBQV05FRAo=\\x07@x.io"
    assert escape_text("\x1b]0;owned\x07") == "\\x1b]0;owned\\x07"
    assert escape_text("\x1b[2J\x9b31m") == "\\x1b[2J\\x9b31m"
    assert escape_text("evil\u202egpj.exe\u2028") == "evil\\u202egpj.exe\\u2028"
    assert escape_text("tag\U000e0041") == "tag\\U000e0041"
    assert escape_text("line\r\nnext\tcol") == "line\\r\\nnext\\tcol"


def test_backslashes_double_only_where_they_could_read_as_an_escape():
    assert escape_text(r"^\d+\.\w$") == r"^\d+\.\w$"  # patterns read as written
    assert escape_text("C:\\new\\x41") == "C:\\\\new\\\\x41"  # a literal \n or \x41 stays literal
    assert escape_text("\\\x1b") == "\\\\\\x1b"  # a backslash before an escaped character
    assert escape_text("trailing\\") == "trailing\\"


def test_markup_is_left_to_rich_text():
    assert escape_text("[bold red]x[/] [link=http://e]") == "[bold red]x[/] [link=http://e]"


def test_non_strings_are_shown_by_their_str():
    assert escape_text(42) == "42" and escape_text(None) == "None"


def test_the_listed_ranges_cover_every_such_character_of_this_python():
    """The ranges are written out for speed; they must cover the running Unicode data."""
    listed = set()
    for low, high in UNSAFE_RANGES:
        listed.update(range(low, high + 1))
    expected = {cp for cp in range(sys.maxunicode + 1) if unsafe(chr(cp))}
    missing = sorted(expected - listed)
    assert not missing, [hex(cp) for cp in missing]
    # Beyond the running data, only code points not yet assigned here (later Unicode's Cf).
    assert all(unicodedata.category(chr(cp)) == "Cn" for cp in listed - expected)
    for cp in sorted(expected)[::97]:
        assert not is_safe(chr(cp)) and escape_text(chr(cp)) != chr(cp)


def test_the_rule_is_pure_so_every_front_end_can_share_it():
    """No click, rich or textual behind it: the core, the CLI, the dashboard and the notebooks
    all import this one function (checked in a fresh interpreter)."""
    from test_layering import loaded_after_importing

    loaded = loaded_after_importing(["toolkit.safe_text", "toolkit.ids", "toolkit.json_files"])
    assert not [m for m in loaded if m.split(".")[0] in ("click", "rich", "textual", "peewee")]
