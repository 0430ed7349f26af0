"""Every field type against good and bad values, edge cases included (issue 4).

`check_value` is the one place with the value rules; the audit and the write path share it.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.registry import FieldDefinition, SelectOption, check_value
from toolkit.registry._field_types import _URL_FAST, _check_url_fully, compile_pattern


def field(type_, *, pattern=None, options=(), required=False):
    return FieldDefinition(key="f", label="F", type=type_, required=required, options=tuple(options), pattern=pattern)


def assert_valid(f, *values):
    for value in values:
        assert check_value(f, value) is None, f"{f.type}: {value!r} should be valid"


def assert_invalid(f, *values):
    for value in values:
        message = check_value(f, value)
        assert message, f"{f.type}: {value!r} should be invalid"
        # Messages never quote the value (it may be a secret).
        if len(value) > 3:
            assert value not in message


LONG = "x" * 100_000


# --- empty values: never the type rule's business (required-ness is) ---

@pytest.mark.parametrize("type_", ["text", "textarea", "password", "url", "email", "number", "select"])
def test_empty_string_is_not_judged_by_any_type(type_):
    f = field(type_, options=[SelectOption("a", "a")], pattern="^z+$")
    assert check_value(f, "") is None


# --- text, textarea, password: no type rule ---

@pytest.mark.parametrize("type_", ["text", "textarea", "password"])
def test_free_text_types_accept_anything(type_):
    assert_valid(field(type_), " ", "  padded  ", "multi\nline", "ünïcödé ✓ 日本語", "\x00", LONG, "1e999", "not a url")


# --- url ---

def test_url_accepts_absolute_http_and_https():
    assert_valid(
        field("url"),
        "https://example.com",
        "http://example.com/path?q=1#frag",
        "HTTPS://EXAMPLE.COM",
        "https://user:pw@example.com:8443/x",
        "https://[::1]:8080/",
        "http://localhost",
        "https://bücher.de/straße",
        "https://example.com/" + "a" * 10_000,
    )


def test_url_refuses_other_schemes_relative_and_hostless():
    assert_invalid(
        field("url"),
        "example.com",
        "/relative/path",
        "ftp://example.com",
        "javascript:alert(1)",
        "mailto:a@example.com",
        "https://",
        "https:example.com",
        "http:///path",
        "https://:443/",
    )


def test_url_refuses_whitespace_anywhere_and_bad_ports():
    assert_invalid(
        field("url"),
        " https://example.com",
        "https://example.com ",
        "https://exa mple.com",
        "https://example.com/a\tb",
        "https://example.com\n",
        "https://example.com:99999",
        "https://example.com:port",
        "https://exa<mple.com",
        " ",
    )


def test_url_pattern_applies_on_top_of_the_type():
    f = field("url", pattern="^https://")
    assert_valid(f, "https://example.com", "HTTPS://EXAMPLE.COM".lower())
    assert "pattern" in check_value(f, "http://example.com")
    assert "http(s)" in check_value(f, "ftp://example.com")  # type rule first


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.from_regex(_URL_FAST, fullmatch=True),
    st.text(alphabet="hpst:/.[]@?#%-_ aA0é", max_size=30).map(lambda s: "https://" + s),
))
def test_url_fast_path_never_accepts_what_the_full_check_refuses(value):
    # The one-regex fast path is an optimisation: it may only say yes where urlsplit would.
    assert (check_value(field("url"), value) is None) == (_check_url_fully(value) is None)


# --- email ---

def test_email_accepts_pragmatic_addresses():
    assert_valid(
        field("email"),
        "ops@example.com",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.ie",
        "jörg@bücher.de",
        "x@" + "a" * 240 + ".com",
    )


def test_email_refuses_malformed_addresses():
    assert_invalid(
        field("email"),
        "plainaddress",
        "@example.com",
        "ops@",
        "ops@example",
        "ops@example.c",
        "ops@@example.com",
        "a@b@example.com",
        "ops@example..com",
        "ops@.example.com",
        "ops@example.com.",
        " ops@example.com",
        "ops@example.com ",
        "o ps@example.com",
        "ops@exa mple.com",
        "a,b@example.com",
        "Ops <ops@example.com>",
        "ops@example.com\n",
        "x" * 250 + "@example.com",  # over 254 characters
        " ",
    )


# --- number ---

def test_number_accepts_decimal_numbers():
    assert_valid(
        field("number"),
        "0", "42", "-7", "+7", "3.14", "-0.5", ".5", "1.", "1e3", "1E-3", "-2.5e+10", "007",
        "1" * 300,  # long but finite
    )


def test_number_refuses_what_is_not_a_plain_decimal():
    assert_invalid(
        field("number"),
        "abc", "1,000", "1_000", "1 000", "0x10", "0b101", "0o7", "NaN", "nan", "Infinity", "-Infinity",
        "1e", "e3", ".", "-", "+", "--1", "1.2.3", "١٢", "１２", "1e999", "-1e999", "1" * 400, " ",
    )


def test_number_names_surrounding_whitespace():
    f = field("number")
    for value in (" 42", "42 ", "\t42\n"):
        assert check_value(f, value) == "not a number: surrounding whitespace"


# --- select ---

def test_select_with_string_options():
    f = field("select", options=[SelectOption("us", "us"), SelectOption("eu", "eu")])
    assert_valid(f, "us", "eu")
    assert_invalid(f, "US", " us", "us ", "mx", "u", "useu")
    assert check_value(f, "mx") == "not one of the options: us, eu"


def test_select_with_value_label_options_matches_the_value_not_the_label():
    f = field("select", options=[SelectOption("bot", "Bot user"), SelectOption("hook", "Incoming webhook")])
    assert_valid(f, "bot", "hook")
    assert_invalid(f, "Bot user", "Incoming webhook")


def test_select_with_unicode_and_long_option_lists():
    options = [SelectOption(f"opt-{i}", f"Option {i}") for i in range(20)] + [SelectOption("zürich", "Zürich")]
    f = field("select", options=options)
    assert_valid(f, "zürich", "opt-19")
    message = check_value(f, "zurich")
    assert message.endswith(", …") and "opt-0" in message  # the list is shortened


# --- pattern: unanchored = the whole value; anchors as written (like the app's RegExp.test) ---

def test_pattern_without_anchors_must_match_the_whole_value():
    f = field("text", pattern="[a-z]+")
    assert_valid(f, "abc")
    assert_invalid(f, "abc1", "1abc", "ab c")
    f = field("text", pattern="AC[0-9a-f]{4}")
    assert_valid(f, "AC12ab")
    assert_invalid(f, "xAC12ab", "AC12abc")


def test_pattern_with_both_anchors():
    f = field("text", pattern="^sk_(live|test)_[0-9a-zA-Z]{4,}$")
    assert_valid(f, "sk_live_abcd1234")
    # Python's `$` matches before a trailing newline; JavaScript's (and ours) does not.
    assert_invalid(f, "sk_live_abcd1234\n", "xsk_live_abcd", "sk_live_ab")


def test_pattern_with_a_start_anchor_is_a_prefix_rule():
    # The registry's "webhookUrl" example (DESIGN.md §4.3): "^https://" means "starts with".
    f = field("text", pattern="^https://")
    assert_valid(f, "https://example.com", "https://")
    assert_invalid(f, "http://example.com", " https://example.com")


def test_pattern_with_an_end_anchor_is_a_suffix_rule():
    f = field("text", pattern="\\.com$")
    assert_valid(f, "example.com")
    assert_invalid(f, "example.com\n", "example.org")


def test_escaped_and_class_carets_and_dollars_are_not_anchors():
    assert_invalid(field("text", pattern="\\$[0-9]+"), "price $5")  # escaped: whole value
    assert_valid(field("text", pattern="\\$[0-9]+"), "$5")
    assert_invalid(field("text", pattern="[^ ]+"), "a b")  # negated class: whole value
    assert_valid(field("text", pattern="[$^]+"), "$^$")
    assert_invalid(field("text", pattern="[$^]+"), "x$")


def test_pattern_alternation_is_anchored_as_a_whole():
    f = field("text", pattern="us|eu")
    assert_valid(f, "us", "eu")
    assert_invalid(f, "usa", "xeu")


def test_pattern_character_classes_are_ascii_like_javascript():
    f = field("text", pattern="\\d+")
    assert_valid(f, "123")
    assert_invalid(f, "١٢٣")  # Arabic-Indic digits: \d in JS (no u flag) is [0-9]
    assert_valid(field("text", pattern="[^ ]+"), "日本語")


def test_pattern_applies_to_every_type():
    assert "pattern" in check_value(field("password", pattern="sk_.*"), "pk_123")
    assert "pattern" in check_value(field("email", pattern=".*@corp\\.com"), "a@example.com")
    assert "pattern" in check_value(field("number", pattern="[0-9]+"), "1.5")
    assert check_value(field("select", options=[SelectOption("a1", "a1")], pattern="[a-z][0-9]"), "a1") is None


def test_pattern_on_very_long_values():
    f = field("text", pattern="[a-z]*")
    assert_valid(f, "a" * 200_000)
    assert_invalid(f, "a" * 200_000 + "!")


def test_message_never_contains_the_value():
    secret = "sk_live_SUPERSECRET"
    for f in (field("password", pattern="^pk_.*$"), field("url"), field("email"), field("number"),
              field("select", options=[SelectOption("a", "a")])):
        message = check_value(f, secret)
        assert message and secret not in message


def test_field_definition_compiles_its_pattern_once():
    anchored, whole = field("text", pattern="^a+$"), field("text", pattern="a+")
    assert anchored.pattern_test.__name__ == "search" and whole.pattern_test.__name__ == "fullmatch"
    assert anchored.pattern_test.__self__.flags & re.ASCII
    assert field("text").pattern_test is None


def test_check_value_cost(capsys):
    """A figure, not an assertion on time: the audit calls this per value."""
    fields = [field("url"), field("email"), field("number"), field("text", pattern="^[a-z]+$"),
              field("select", options=[SelectOption("us", "us"), SelectOption("eu", "eu")])]
    values = ["https://example.com/hook", "ops@example.com", "42.5", "abcdef", "eu"]
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        for f, v in zip(fields, values):
            check_value(f, v)
    per_call = (time.perf_counter() - start) / (n * len(fields)) * 1e6
    with capsys.disabled():
        print(f"\ncheck_value: {per_call:.2f} µs per call (mix of url/email/number/pattern/select)")


@pytest.mark.parametrize("pattern, good, bad", [
    (r"(?<area>[0-9]{3})-[0-9]{4}", "415-5555", "4155555"),  # a JavaScript named group
    (r"(?<d>[a-z])\k<d>", "aa", "ab"),  # and its backreference
    (r"(?<=x)y|^y", "y", "zy"),  # lookbehind is spelled the same in both
])
def test_javascript_named_groups_are_understood(pattern, good, bad):
    test = compile_pattern(pattern)
    assert test(good) and not test(bad)
