"""Keys, derivations and the keyring: which key authenticates a value, refusals, round trips."""

from __future__ import annotations

import hashlib
import pickle
import secrets

import pytest
from hypothesis import given, settings, strategies as st

from toolkit.crypto import (
    AlreadyEncrypted,
    Key,
    Keyring,
    MalformedCiphertext,
    UndecryptableError,
    derive_key,
    fingerprint,
    parse_ciphertext,
)
from toolkit.errors import ConfigError
from toolkit.settings import Settings

CURRENT, OLD, OLDER = (secrets.token_hex(32) for _ in range(3))


def ring(*keys, **kwargs) -> Keyring:
    return Keyring.from_settings(Settings(encryption_key=keys[0], encryption_key_previous=tuple(keys[1:]), **kwargs))


# ---- derivations ---------------------------------------------------------------------------

def test_hex_derivation_accepts_either_case():
    assert derive_key(CURRENT) == bytes.fromhex(CURRENT) == derive_key(CURRENT.upper())


@pytest.mark.parametrize("bad", [CURRENT[:-2], CURRENT + "00", "zz" + CURRENT[2:], " " + CURRENT[1:]])
def test_bad_hex_key_names_the_variable_and_hides_the_key(bad):
    with pytest.raises(ConfigError) as caught:
        derive_key(bad, variable="ENCRYPTION_KEY_PREVIOUS #2")
    message = caught.value.one_line()
    assert "ENCRYPTION_KEY_PREVIOUS #2" in message
    assert bad.strip() not in message and bad[4:20] not in message


def test_raw_derivation_needs_32_bytes():
    assert derive_key("k" * 32, "raw") == b"k" * 32
    with pytest.raises(ConfigError, match="32 bytes as UTF-8.*got 33"):
        derive_key("é" + "k" * 31, "raw")  # 32 characters, 33 bytes


def test_sha256_and_scrypt_derivations():
    assert derive_key("correct horse", "sha256") == hashlib.sha256(b"correct horse").digest()
    expected = hashlib.scrypt(b"pw", salt=b"salt", n=16384, r=8, p=1, dklen=32)
    assert derive_key("pw", "scrypt", salt="salt") == expected
    with pytest.raises(ConfigError, match="TOOLKIT_KEY_SALT"):
        derive_key("pw", "scrypt")


def test_keyring_uses_the_configured_derivation_for_every_key():
    keyring = Keyring.from_settings(
        Settings(encryption_key="new pass", encryption_key_previous=("old pass",), key_derivation="sha256")
    )
    assert [k.material for k in keyring.keys] == [hashlib.sha256(b"new pass").digest(), hashlib.sha256(b"old pass").digest()]


def test_no_guessing_a_passphrase_is_not_a_hex_key():
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY must be 64 hex"):
        Keyring.from_settings(Settings(encryption_key="correct horse battery staple"))


# ---- keys ---------------------------------------------------------------------------------

def test_key_repr_shows_label_and_fingerprint_only():
    keyring = ring(CURRENT, OLD)
    current, previous = keyring.keys
    for text in (repr(current), str(current), repr(keyring), repr(previous)):
        assert CURRENT not in text and OLD not in text and CURRENT[:8] not in text
    assert current.label == "current" and previous.label == "previous #1"
    assert current.fingerprint == fingerprint(bytes.fromhex(CURRENT)) and len(current.fingerprint) == 8
    assert current.fingerprint not in CURRENT  # not a prefix of the key
    assert ring(CURRENT).current.fingerprint == current.fingerprint  # stable


def test_a_key_listed_twice_is_refused():
    with pytest.raises(ConfigError, match=r"ENCRYPTION_KEY_PREVIOUS #2 is the same key as ENCRYPTION_KEY\b"):
        ring(CURRENT, OLD, CURRENT.upper())
    with pytest.raises(ConfigError, match="#2 is the same key as ENCRYPTION_KEY_PREVIOUS #1"):
        ring(CURRENT, OLD, OLD)


def test_missing_current_key():
    keyring = Keyring.from_settings(Settings())
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY is not set"):
        keyring.current
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY is not set"):
        keyring.decrypt(ring(CURRENT).encrypt("x"))
    assert keyring.inspect("plain").kind == "plaintext"  # the audit still classifies
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY_PREVIOUS is set but ENCRYPTION_KEY is not"):
        Keyring.from_settings(Settings(encryption_key_previous=(OLD,)))


# ---- decrypt / encrypt / inspect ------------------------------------------------------------

def test_which_key_authenticates():
    keyring = ring(CURRENT, OLD, OLDER)
    for index, key in enumerate((CURRENT, OLD, OLDER)):
        value = ring(key).encrypt("s3cret-value")
        decrypted = keyring.decrypt(value)
        assert decrypted.secret.reveal() == "s3cret-value"
        assert decrypted.key_index == index and decrypted.key is keyring.keys[index]
        status = keyring.inspect(value)
        assert status.kind == ("current" if index == 0 else "previous")
        assert status.key_index == index and status.plaintext == b"s3cret-value"
        assert status.iv == parse_ciphertext(value).iv


def test_wrong_key_and_tampering_fail_loudly():
    keyring = ring(CURRENT, OLD)
    foreign = ring(OLDER).encrypt("x")
    with pytest.raises(UndecryptableError, match="wrong key or tampered") as caught:
        keyring.decrypt(foreign)
    assert keyring.keys[1].fingerprint in str(caught.value)
    assert keyring.inspect(foreign).kind == "undecryptable"
    good = keyring.encrypt("payload")
    iv, tag, body = good.split(":")
    for tampered in (f"{iv}:{tag}:{flip(body)}", f"{iv}:{flip(tag)}:{body}", f"{flip(iv)}:{tag}:{body}"):
        with pytest.raises(UndecryptableError):
            keyring.decrypt(tampered)
        assert keyring.inspect(tampered).kind == "undecryptable"


def flip(hex_text: str) -> str:
    """The same hex with the lowest bit of its last byte flipped."""
    return hex_text[:-2] + f"{int(hex_text[-2:], 16) ^ 1:02x}"


def test_malformed_is_not_undecryptable():
    with pytest.raises(MalformedCiphertext, match="IV is 10 bytes"):
        ring(CURRENT).decrypt("ab" * 10 + ":" + "cd" * 16 + ":00")
    with pytest.raises(MalformedCiphertext, match="not in the iv:authTag:ciphertext format"):
        ring(CURRENT).decrypt("just a password")


def test_encrypt_output_format_and_iv_length():
    for iv_length in (16, 12):
        value = ring(CURRENT, iv_length=iv_length).encrypt("hello")
        iv, tag, body = value.split(":")
        assert len(iv) == 2 * iv_length and len(tag) == 32 and len(body) == 10
        assert value == value.lower()
    assert ring(CURRENT).encrypt("").endswith(":")  # empty plaintext, empty ciphertext part
    assert ring(CURRENT).decrypt(ring(CURRENT).encrypt("")).secret.reveal() == ""


def test_fresh_iv_every_time():
    keyring = ring(CURRENT)
    ivs = {parse_ciphertext(keyring.encrypt("same")).iv for _ in range(200)}
    assert len(ivs) == 200


def test_refuses_double_encryption():
    keyring = ring(CURRENT, OLD)
    with pytest.raises(AlreadyEncrypted, match="decrypts under the current key"):
        keyring.encrypt(keyring.encrypt("x"))
    with pytest.raises(AlreadyEncrypted, match="previous #1"):
        keyring.encrypt(ring(OLD).encrypt("x"))
    with pytest.raises(AlreadyEncrypted, match="key not in this keyring"):
        keyring.encrypt(ring(OLDER).encrypt("x"))
    # Shaped but malformed is not a ciphertext: it is encrypted like any text.
    assert keyring.decrypt(keyring.encrypt("ab:cd:ef")).secret.reveal() == "ab:cd:ef"


def test_invalid_utf8_plaintext_is_flagged_not_crashing():
    keyring = ring(CURRENT)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    iv = b"\x01" * 16
    sealed = AESGCM(bytes.fromhex(CURRENT)).encrypt(iv, b"ok\xff\xfe", None)
    value = f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"
    secret = keyring.decrypt(value).secret
    assert secret.invalid_utf8 and secret.reveal() == "ok\ufffd\ufffd"
    assert keyring.inspect(value).plaintext == b"ok\xff\xfe"


def test_value_status_repr_hides_plaintext():
    keyring = ring(CURRENT)
    status = keyring.inspect(keyring.encrypt("topsecretvalue"))
    assert "topsecret" not in repr(status) and "14 bytes hidden" in repr(status)


def test_keyring_pickles_for_worker_processes():
    keyring = ring(CURRENT, OLD, mask_visible=2)
    copy = pickle.loads(pickle.dumps(keyring))
    assert [k.fingerprint for k in copy.keys] == [k.fingerprint for k in keyring.keys]
    assert copy.mask_visible == 2 and copy.decrypt(keyring.encrypt("x")).secret.reveal() == "x"


# ---- properties ---------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.sampled_from([12, 16]))
def test_round_trip_exactly(text, iv_length):
    keyring = ring(CURRENT, OLD, iv_length=iv_length)
    value = keyring.encrypt(text)
    decrypted = keyring.decrypt(value)
    assert decrypted.secret.reveal() == text and decrypted.key_index == 0
    assert keyring.inspect(value).plaintext == text.encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(TEXT, st.binary(min_size=32, max_size=32))
def test_never_decrypts_without_the_right_key(text, other):
    value = ring(CURRENT).encrypt(text)
    stranger = Keyring.from_materials([other]) if other != bytes.fromhex(CURRENT) else ring(OLD)
    assert stranger.inspect(value).kind == "undecryptable"
    with pytest.raises(UndecryptableError):
        stranger.decrypt(value)


def test_lone_surrogates_are_refused_not_altered():
    from toolkit.errors import UsageError

    with pytest.raises(UsageError, match="lone surrogate"):
        ring(CURRENT).encrypt("a\ud800b")


def test_key_requires_32_bytes():
    with pytest.raises(ValueError):
        Key(b"short")


def test_inspect_throughput_figure(capsys):
    """A figure, not an assertion (shared machine): the audit's per-value cost."""
    import time

    keyring = ring(CURRENT, OLD)
    values = [keyring.encrypt(f"sk_live_{n:024d}") for n in range(20_000)]
    start = time.perf_counter()
    kinds = [keyring.inspect(v).kind for v in values]
    elapsed = time.perf_counter() - start
    assert set(kinds) == {"current"}
    with capsys.disabled():
        print(f"\n  keyring.inspect: {elapsed / len(values) * 1e6:.2f} µs per value (current key)")
