"""Interop with the app's own crypto, run for real in Node (tests/node_crypto.js).

Each test makes one `node` call with a batch of requests (start-up dominates the cost).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from toolkit.crypto import Keyring, UndecryptableError, derive_key, parse_ciphertext
from toolkit.settings import Settings

pytestmark = pytest.mark.node

NODE_CRYPTO = Path(__file__).with_name("node_crypto.js")
KEY, WRONG_KEY = secrets.token_hex(32), secrets.token_hex(32)
SAMPLES = ["", "x", "sk_live_51HxYzABCdef", "héllo wörld ✓ — 日本語 — 🔑🗝️", "a:b:c", "line\nbreak\t\"quote\"", "z" * 10_000]


def node(node_bin, requests, *, key=KEY, iv_length=16):
    env = {**os.environ, "ENCRYPTION_KEY": key, "IV_LENGTH": str(iv_length)}
    result = subprocess.run([node_bin, str(NODE_CRYPTO)], input=json.dumps(requests), capture_output=True,
                            text=True, env=env, timeout=60, check=True)
    return json.loads(result.stdout)


def keyring(key=KEY, **kwargs):
    return Keyring.from_settings(Settings(encryption_key=key, **kwargs))


@pytest.mark.parametrize("iv_length", [16, 12])
def test_node_encrypted_values_decrypt_in_python(node_bin, iv_length):
    results = node(node_bin, [{"op": "encrypt", "value": s} for s in SAMPLES], iv_length=iv_length)
    ours = keyring()
    for sample, result in zip(SAMPLES, results, strict=True):
        value = result["ok"]
        assert len(parse_ciphertext(value).iv) == iv_length
        assert ours.decrypt(value).secret.reveal() == sample
        status = ours.inspect(value)
        assert status.kind == "current" and status.plaintext == sample.encode()
    assert results[0]["ok"].endswith(":")  # Node writes "" as iv:tag: — valid, not malformed


@pytest.mark.parametrize("iv_length", [16, 12])
def test_python_encrypted_values_decrypt_in_node(node_bin, iv_length):
    ours = keyring(iv_length=iv_length)
    results = node(node_bin, [{"op": "decrypt", "value": ours.encrypt(s)} for s in SAMPLES])
    assert [r.get("ok") for r in results] == SAMPLES


def test_tampered_and_wrong_key_fail_in_both(node_bin):
    ours = keyring()
    good = ours.encrypt("the real secret")
    iv, tag, body = good.split(":")
    tampered = [
        f"{iv}:{tag}:{body[:-2]}{int(body[-2:], 16) ^ 0x80:02x}",
        f"{iv}:{tag[:-2]}{int(tag[-2:], 16) ^ 1:02x}:{body}",
        f"{iv[:-2]}{int(iv[-2:], 16) ^ 1:02x}:{tag}:{body}",
    ]
    foreign = keyring(WRONG_KEY).encrypt("someone else's")
    requests = [{"op": "decrypt", "value": v} for v in [*tampered, foreign]]
    for result in node(node_bin, requests):
        assert "error" in result and "ok" not in result  # Node refuses each one too
    for value in [*tampered, foreign]:
        with pytest.raises(UndecryptableError):
            ours.decrypt(value)
    # and Node with the wrong key refuses our value, as we refuse Node's under the wrong key
    assert "error" in node(node_bin, [{"op": "decrypt", "value": good}], key=WRONG_KEY)[0]
    from_node = node(node_bin, [{"op": "encrypt", "value": "x"}], key=WRONG_KEY)[0]["ok"]
    assert ours.inspect(from_node).kind == "undecryptable"


def test_node_is_lenient_where_we_are_strict(node_bin):
    """Why parsing is strict (DESIGN §2): Node decodes damaged hex and uppercase hex."""
    ours = keyring()
    good = ours.encrypt("v")
    iv, tag, body = good.split(":")
    upper = good.upper()
    results = node(node_bin, [{"op": "decrypt", "value": upper}, {"op": "decrypt", "value": good + ":junk"}])
    assert results[0] == {"ok": "v"}  # the app reads uppercase hex: so do we
    assert ours.decrypt(upper).secret.reveal() == "v"
    assert results[1] == {"ok": "v"}  # the app ignores a fourth part: we call it malformed
    assert ours.inspect(good + ":junk").kind == "malformed"


def test_derivations_match_node(node_bin):
    passphrases = ["correct horse battery staple", "ünïcødé pass", "k" * 32]
    requests = [{"op": "sha256", "value": p} for p in passphrases]
    requests += [{"op": "scrypt", "value": p, "salt": "app-salt"} for p in passphrases]
    requests += [{"op": "raw", "value": "k" * 32}]
    results = [r["ok"] for r in node(node_bin, requests)]
    ours = [derive_key(p, "sha256").hex() for p in passphrases]
    ours += [derive_key(p, "scrypt", salt="app-salt").hex() for p in passphrases]
    ours += [derive_key("k" * 32, "raw").hex()]
    assert ours == results


def test_derived_key_round_trips_with_node(node_bin):
    """An app using scryptSync(passphrase, salt, 32) reads what we write with that setting."""
    ours = keyring("app passphrase", key_derivation="scrypt", key_salt="s4lt")
    material = derive_key("app passphrase", "scrypt", salt="s4lt").hex()
    from_node = node(node_bin, [{"op": "encrypt", "value": "derived ✓"}], key=material)[0]["ok"]
    assert ours.decrypt(from_node).secret.reveal() == "derived ✓"
    assert node(node_bin, [{"op": "decrypt", "value": ours.encrypt("back")}], key=material) == [{"ok": "back"}]
