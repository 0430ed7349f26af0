"""The stored format: strict parsing, the plaintext/malformed boundary, and that the
keyring's fast path agrees with the parser on every string."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given, settings, strategies as st

import toolkit.crypto as crypto
from toolkit.crypto import Keyring, MalformedCiphertext, looks_damaged, parse_ciphertext, split_strict
from toolkit.crypto._format import STRICT, format_ciphertext

IV16, IV12, TAG = "ab" * 16, "cd" * 12, "ef" * 16


def test_public_api_is_explicit():
    assert sorted(crypto.__all__) == sorted(set(crypto.__all__))
    for name in crypto.__all__:
        assert hasattr(crypto, name), name
    assert {"Keyring", "Secret", "parse_ciphertext", "looks_damaged", "split_strict", "Key", "ValueStatus"} <= set(crypto.__all__)


@pytest.mark.parametrize("iv", [IV16, IV12, IV16.upper()])
@pytest.mark.parametrize("body", ["", "00", "0a1B" * 50])
def test_well_formed_values_parse(iv, body):
    parsed = parse_ciphertext(f"{iv}:{TAG}:{body}")
    assert parsed.iv == bytes.fromhex(iv)
    assert parsed.tag == bytes.fromhex(TAG)
    assert parsed.body == bytes.fromhex(body)
    assert parsed.sealed() == bytes.fromhex(body) + bytes.fromhex(TAG)


@pytest.mark.parametrize(
    "value, reason",
    [
        ("ab" * 10 + f":{TAG}:00", "IV is 10 bytes, expected 12 or 16"),
        ("ab" * 17 + f":{TAG}:00", "IV is 17 bytes, expected 12 or 16"),
        (f"{IV16}:{'ef' * 12}:00", "auth tag is 12 bytes, expected 16"),
        (f"{IV16}:{'ef' * 17}:00", "auth tag is 17 bytes, expected 16"),
        (f"{IV16}:{TAG}:abc", "ciphertext has an odd number of hex digits (3)"),
        (f"{IV16}:{TAG}:zz", "ciphertext is not hexadecimal"),
        (f"g{IV16[1:]}:{TAG}:00", "IV is not hexadecimal"),
        (f"{IV16}:{TAG[:-1]}x:00", "auth tag is not hexadecimal"),
        (f"{IV16}:{TAG}:00\n", "surrounding whitespace"),
        (f" {IV16}:{TAG}:00", "surrounding whitespace"),
        (f"{IV16}:{TAG}:00:11", "4 ':'-separated parts, expected 3"),
        (f":{TAG}:00", "the IV is missing"),
        (f"{TAG}:00", "2 ':'-separated parts, expected 3"),
        ("hunter2", "not in the iv:authTag:ciphertext format"),
        ("", "not in the iv:authTag:ciphertext format"),
        ("Summer:2024:Pass!", "not in the iv:authTag:ciphertext format"),
    ],
)
def test_malformed_values_say_why(value, reason):
    with pytest.raises(MalformedCiphertext) as caught:
        parse_ciphertext(value)
    assert caught.value.reason == reason
    assert reason in str(caught.value)


def test_python_fromhex_leniency_is_not_inherited():
    # bytes.fromhex would skip these spaces; Node would truncate at them. We refuse.
    spaced = f"{IV16[:2]} {IV16[3:]}:{TAG}:00"
    with pytest.raises(MalformedCiphertext):
        parse_ciphertext(spaced)
    assert looks_damaged(spaced) is True  # a space overwrote a digit: damaged, not plaintext


@pytest.mark.parametrize(
    "value, shaped",
    [
        (f"{IV16}:{TAG}:zz", True),  # bad hex, but clearly meant as a ciphertext
        (f"{IV16}:{TAG[:-1]}g:00", True),  # one character of the tag overwritten
        (f":{TAG}:00", True),  # the IV lost
        (f"{TAG}:00", True),  # the IV lost with its colon
        (f"{IV16}:{TAG}:00:11", True),  # a fourth part
        ("ab" * 10 + f":{TAG}:00", True),  # a wrong length
        (f"{IV16}:{TAG}:00\n", True),
        ("zz12:abcd:ef", False),  # too short to have been a ciphertext
        ("hunter2", False),
        ("a:b:c with colons", False),  # human passwords with colons are plaintext
        ("Summer:2024:Pass!", False),
        ("correcthorsebatterystaple:xyz:abc", False),
        ("sk_live_51HxYz", False),
        ("https://user:pw@host:5432/db", False),
        ("a b:c:d", False),
        ("::", False),
        ("ab::", False),
        ("", False),
    ],
)
def test_shape(value, shaped):
    assert looks_damaged(value) is shaped
    assert split_strict(value) is None


def test_format_is_lowercase_hex():
    assert format_ciphertext(b"\xAB" * 12, b"\xCD" * 16, b"") == "ab" * 12 + ":" + "cd" * 16 + ":"


# ---- properties --------------------------------------------------------------------------

HEXISH = st.text(alphabet="0123456789abcdefABCDEFxyz :\n\t", max_size=80)
ANY = st.one_of(st.text(max_size=120), HEXISH)


def _structured():
    hexes = st.sampled_from([12, 16, 10, 17, 0]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    return st.tuples(hexes, st.binary(min_size=14, max_size=17), st.binary(max_size=40), st.booleans()).map(
        lambda t: (f"{t[0].hex()}:{t[1].hex()}:{t[2].hex()}").upper() if t[3] else f"{t[0].hex()}:{t[1].hex()}:{t[2].hex()}"
    )


KEYRING = Keyring.from_materials([secrets.token_bytes(32)])


@settings(max_examples=400, deadline=None)
@given(st.one_of(ANY, _structured(), _structured().map(lambda s: s[:-1]), _structured().map(lambda s: s + " ")))
def test_parser_and_inspect_never_crash_and_agree(value):
    try:
        parse_ciphertext(value)
        well_formed = True
    except MalformedCiphertext as exc:
        well_formed = False
        assert exc.reason
    status = KEYRING.inspect(value)
    if well_formed:
        # random bytes never authenticate under a random key
        assert status.kind == "undecryptable" and status.iv is not None
    else:
        assert status.kind == ("malformed" if looks_damaged(value) else "plaintext")
        assert status.plaintext is None and status.key_index is None
        if status.kind == "malformed":
            assert status.reason


@settings(max_examples=1000, deadline=None)
@given(st.one_of(ANY, _structured(), _structured().map(lambda s: s[:-1]), _structured().map(lambda s: s + "\n"),
                 _structured().map(lambda s: s.replace(":", "", 1))))
def test_split_strict_is_the_strict_pattern(value):
    """The fast splitter is the reference pattern, for both IV lengths (DESIGN §8: a fast path
    held equal to its rule)."""
    match = STRICT.fullmatch(value)
    parts = split_strict(value)
    if match is None:
        assert parts is None
    else:
        iv, tag, body = (bytes.fromhex(group) for group in match.groups())
        assert parts == (iv, body + tag)
