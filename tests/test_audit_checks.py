"""The audit's building blocks: the codes table, the pure checks, the per-installation row auditor,
IV traces, and the COPY text decoding — without a database."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolkit.audit as audit
from audit_planted import CURRENT_KEY, OTHER_KEY, PREVIOUS_KEY, REGISTRY_PATH, keyring, seal
from toolkit.audit import checks
from toolkit.codes import ALL_CODES, CODES, at_or_above, select_codes
from toolkit.audit.nonces import IVLog, nonce_reuse_findings
from toolkit.audit.row_auditor import FREE, Auditor, _unescape_copy
from toolkit.errors import UsageError
from toolkit.registry import check_value, load_registry

DESIGN_TABLE = {  # DESIGN.md §4.4, verbatim
    "app.unknown": "error", "config.not-object": "error", "config.non-string": "error",
    "field.unknown": "warning", "field.missing": "error", "field.invalid": "error",
    "field.unexpected-ciphertext": "warning", "secret.plaintext": "error", "secret.malformed": "error",
    "secret.undecryptable": "error", "secret.stale-key": "warning", "secret.nonce-reuse": "error",
    "status.not-configured": "info", "installation.timestamps": "warning",
    "user.email-case-duplicate": "warning",
}


@pytest.fixture(scope="module")
def registry():
    return load_registry(REGISTRY_PATH)


# ---- the package and the codes table ------------------------------------------------------

def test_public_api_is_exactly_all():
    public = {name for name in dir(audit) if not name.startswith("_")}
    modules = {"checks", "engine", "finding", "nonces", "row_auditor", "report", "sql", "store", "incremental", "_spill", "_text", "_html"}
    assert set(audit.__all__) == public - modules
    for name in audit.__all__:
        assert getattr(audit, name) is not None


def test_codes_table_is_design_4_4():
    assert {code: entry.severity for code, entry in CODES.items()} == DESIGN_TABLE
    assert list(CODES) == list(DESIGN_TABLE)  # the order reports use
    assert all(entry.hint and entry.when for entry in CODES.values())


def test_select_codes_by_id_prefix_and_glob():
    assert select_codes([]) == frozenset(ALL_CODES)
    assert select_codes(["secret"]) == {c for c in ALL_CODES if c.startswith("secret.")}
    assert select_codes(["field.*", "app.unknown"]) == {c for c in ALL_CODES if c.startswith("field.")} | {"app.unknown"}
    with pytest.raises(UsageError, match="unknown audit code 'secret.nope'"):
        select_codes(["secret.nope"])


@pytest.mark.parametrize("severity, level, fails", [
    ("error", "error", True), ("warning", "error", False), ("warning", "warning", True),
    ("info", "warning", False), ("info", "info", True), ("error", "never", False),
])
def test_fail_levels(severity, level, fails):
    assert at_or_above(severity, level) is fails


# ---- the config document ------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (None, {}), ("null", {}), (b"null", {}), ('{"a": "b"}', {"a": "b"}), (b' \n{"a": "b"}', {"a": "b"}),
])
def test_load_config_objects_and_nulls(raw, expected):
    assert checks.load_config(raw) == expected


@pytest.mark.parametrize("raw, message", [
    ('"a string"', "config is a string, not a JSON object"),
    ("[1, 2]", "config is an array, not a JSON object"),
    ("42", "config is a number, not a JSON object"),
    ("true", "config is a boolean, not a JSON object"),
    ("{not json", "config is not valid JSON"),
    ("[" * 5000 + "]" * 5000, "config is an array, not a JSON object"),
    ("", "config is not valid JSON"),
])
def test_config_not_object(raw, message):
    assert checks.config_not_object(checks.load_config(raw)) == message


def test_huge_string_config_is_not_parsed_and_not_quoted():
    secretish = "sk_live_" + "x" * 5_000_000
    config = checks.load_config(json.dumps(secretish).encode())
    message = checks.config_not_object(config)
    assert message == "config is a string, not a JSON object" and "sk_live" not in message


def test_deep_value_keeps_the_other_keys():
    raw = '{"a": "1", "deep": ' + "[" * 5000 + "]" * 5000 + ', "b": "x\\"y", "c": {' + '"k":{' * 3000 + "}" * 3001 + "}"
    config = checks.load_config(raw)
    assert config == {"a": "1", "deep": [], "b": 'x"y', "c": {}}
    assert checks.config_non_string(config["deep"]) == "value is an array, not a string"
    assert checks.config_non_string(config["c"]) == "value is an object, not a string"


def test_values_orjson_refuses_still_load():
    # numbers beyond a double and lone surrogates (orjson refuses both; jsonb can hold the first)
    assert checks.load_config('{"n": 1e400, "s": "ok"}')["s"] == "ok"
    assert checks.safe_name(checks.load_config('{"\\ud800": "v"}').popitem()[0]) == "\\ud800"


# ---- secrets --------------------------------------------------------------------------------

def test_secret_problems_for_each_kind():
    ring = keyring()
    assert checks.secret_problems(ring.inspect(seal("fine")), 2) == []
    assert checks.secret_problems(ring.inspect(seal("")), 2) == []  # encrypted "" is valid
    assert checks.secret_problems(ring.inspect(seal("clé 🔑")), 2) == []
    for plaintext in ("hunter2", "a:b:c with colons", "Summer:2024:Pass!", "ab:cd:ef"):
        assert [c for c, _ in checks.secret_problems(ring.inspect(plaintext), 2)] == ["secret.plaintext"]
    malformed = checks.secret_problems(ring.inspect("ab" * 10 + ":" + "cd" * 16 + ":ef"), 2)
    assert malformed[0][0] == "secret.malformed" and "IV" in malformed[0][1]
    assert checks.secret_problems(ring.inspect(seal("x", OTHER_KEY)), 2) == [
        ("secret.undecryptable", "no key of the keyring (2 keys) authenticates it: written with another key, or tampered")]
    assert checks.secret_problems(ring.inspect(seal("x", PREVIOUS_KEY)), 2) == [
        ("secret.stale-key", "decrypts only with the previous key ENCRYPTION_KEY_PREVIOUS #1")]
    garbage = checks.secret_problems(ring.inspect(seal(b"\xff\xfe")), 2)
    assert [c for c, _ in garbage] == ["secret.undecryptable"] and "UTF-8" in garbage[0][1]
    both = checks.secret_problems(ring.inspect(seal(b"\xc3", PREVIOUS_KEY)), 2)
    assert [c for c, _ in both] == ["secret.stale-key", "secret.undecryptable"]


def test_unexpected_ciphertext_only_when_it_decrypts():
    ring = keyring()
    assert checks.unexpected_ciphertext(ring.inspect(seal("x"))) is not None
    assert checks.unexpected_ciphertext(ring.inspect(seal("x", OTHER_KEY))) is None
    assert checks.unexpected_ciphertext(ring.inspect("ab:cd:ef")) is None


# ---- status, users ----------------------------------------------------------------------------

def test_not_configured_rules():
    required = ("apiKey", "region")
    full = {"apiKey": "v", "region": "us"}
    assert checks.not_configured("installed", required, full, ()) is not None
    assert checks.not_configured("configured", required, full, ()) is None
    assert checks.not_configured("installed", required, {"apiKey": "v"}, ()) is None
    assert checks.not_configured("installed", required, {**full, "region": ""}, ()) is None
    assert checks.not_configured("installed", required, full, {"region"}) is None  # invalid
    assert checks.not_configured("installed", required, full, {"other"}) is not None  # optional field's problem
    # No required fields: only when something is set and nothing is wrong.
    assert checks.not_configured("installed", (), {}, ()) is None
    assert checks.not_configured("installed", (), {"host": ""}, ()) is None
    assert checks.not_configured("installed", (), {"host": "h"}, ()) is not None
    assert checks.not_configured("installed", (), {"host": "h"}, {"port"}) is None


def test_email_case_duplicates_one_per_user_without_the_address():
    found = dict(checks.email_case_duplicates([[9, 3], [4, 6, 5], [7]]))
    assert set(found) == {3, 9, 4, 5, 6}
    assert found[3] == "email equals, ignoring case, that of user 9"
    assert found[5] == "email equals, ignoring case, those of users 4, 6"
    assert not any("@" in message for message in found.values())


def test_timestamps_problem():
    assert checks.timestamps_problem("") is None
    assert "earlier" in checks.timestamps_problem("installed_at 2024-05-01, updated_at 2024-04-30")


# ---- the row auditor: one installation ---------------------------------------------------------------

def audit_one(registry, config, *, app="stripe", status="configured", codes=ALL_CODES, raw=False):
    auditor = Auditor(registry, keyring(), codes)
    text = config if raw or config is None else json.dumps(config)
    auditor.audit(1, 2, app, status, "", text)
    return {(code, field) for code, _, _, _, field, _ in auditor.findings}, auditor


def test_plan_clean_configured_row(registry):
    found, auditor = audit_one(registry, {"apiKey": seal("k"), "region": "us", "webhookSecret": seal("", iv=os.urandom(12))})
    assert found == set() and len(auditor.ivs) == 2


def test_plan_encrypted_empty_and_password_patterns(registry):
    # encrypt(""): fine when optional, missing when required (configured), not "set" (installed)
    assert audit_one(registry, {"apiKey": seal("k"), "region": "us", "webhookSecret": seal("")})[0] == set()
    found, auditor = audit_one(registry, {"apiKey": seal(""), "region": "us"})
    assert found == {("field.missing", "apiKey")}
    assert auditor.findings[0][5] == "required field decrypts to an empty value"
    assert audit_one(registry, {"apiKey": seal(""), "region": "us"}, status="installed")[0] == set()
    # a password pattern applies to the decrypted value; the message names the pattern only
    assert audit_one(registry, {"endpoint": "https://e.example.com", "signingSecret": seal("whsec_ok1")}, app="hooks")[0] == set()
    found, auditor = audit_one(registry, {"endpoint": "https://e.example.com", "signingSecret": seal("nope")}, app="hooks")
    assert found == {("field.invalid", "signingSecret")}
    assert auditor.findings[0][5] == "does not match the pattern whsec_[A-Za-z0-9]+"
    # not UTF-8: one finding (undecryptable), no pattern noise
    found, _ = audit_one(registry, {"endpoint": "https://e.example.com", "signingSecret": seal(b"\xff")}, app="hooks")
    assert found == {("secret.undecryptable", "signingSecret")}


def test_plan_blank_and_whitespace(registry):
    # "" is not set (optional: fine; required: missing); "  " is a value (registry rule)
    found, _ = audit_one(registry, {"apiKey": "", "region": "us", "webhookSecret": ""})
    assert found == {("field.missing", "apiKey")}
    found, _ = audit_one(registry, {"apiKey": "  ", "region": "us"})
    assert found == {("secret.plaintext", "apiKey")}


def test_plan_installed_may_be_incomplete_but_not_invalid(registry):
    assert audit_one(registry, {"region": "us"}, status="installed")[0] == set()
    assert audit_one(registry, {"region": "mars"}, status="installed")[0] == {("field.invalid", "region")}
    assert audit_one(registry, {"apiKey": seal("k"), "region": "us"}, status="installed")[0] == {("status.not-configured", None)}
    assert audit_one(registry, {"apiKey": "plain", "region": "us"}, status="installed")[0] == {("secret.plaintext", "apiKey")}


def test_plan_unknown_app_gets_no_field_checks(registry):
    found, auditor = audit_one(registry, {"apiKey": "plain", "x": 1}, app="nope")
    assert found == {("app.unknown", None)}
    assert auditor.findings[0][5] == "app 'nope' is not in the registry"


def test_plan_codes_skip_work(registry):
    _, auditor = audit_one(registry, {"apiKey": seal("k"), "region": "us"}, codes={"field.unknown"})
    assert len(auditor.ivs) == 0  # nothing decrypted when no selected code needs it
    assert not auditor.decrypts and not auditor.scans_plain


def test_check_value_results_are_cached_per_field(registry):
    calls = []

    def counting(field, value):
        calls.append(value)
        return check_value(field, value)

    auditor = Auditor(registry, keyring(), check_value=counting)
    for n in range(50):
        auditor.audit(n, n, "stripe", "installed", "", json.dumps({"region": "us" if n % 2 else "mars"}))
    assert sorted(calls) == ["mars", "us"]
    assert sum(1 for f in auditor.findings if f[0] == "field.invalid") == 25


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_free_fields_have_no_rule_in_check_value(value):
    """The plan skips check_value for text/textarea fields without a pattern: hold it to it."""
    registry = load_registry(REGISTRY_PATH)
    auditor = Auditor(registry, keyring())
    free = [rule.definition for plan in auditor.plans.values() for rule in plan.rules.values() if rule.kind == FREE]
    assert free
    for field in free:
        assert check_value(field, value) is None


# ---- IV traces ----------------------------------------------------------------------------------

def test_iv_log_finds_exact_reuse_per_key():
    log = IVLog()
    a, b = os.urandom(16), os.urandom(12)
    log.add(a, 0, 1, 10, 100)
    log.add(a, 0, 2, 11, 101)  # reuse under key 0
    log.add(a, 1, 1, 12, 102)  # same IV, other key: no reuse with the two above
    log.add(b, 0, 1, 13, 103)
    log.add(b + b"\0\0\0\0", 0, 1, 14, 104)  # padded 12-byte IV is not that 16-byte IV
    log.add(os.urandom(16), 0, 1, 15, 105)
    groups = log.reused()
    assert [sorted(log.location(p)[0] for p in g) for g in groups] == [[10, 11]]
    assert sorted(map(sorted, log._reused_pure())) == sorted(map(sorted, groups))


def test_iv_log_state_crosses_processes_and_reports_each_value():
    first, second = IVLog(), IVLog()
    iv = os.urandom(12)
    first.add(iv, 0, 0, 1, 7)
    second.add(iv, 0, 1, 2, 8)
    second.add(iv, 0, 0, 3, 9)
    merged = IVLog()
    merged.extend(first.state())
    merged.extend(second.state())
    found = nonce_reuse_findings(merged, [("stripe", "apiKey"), ("slack", "botToken")])
    assert sorted((f[1], f[2], f[3], f[4]) for f in found) == [
        (1, 7, "stripe", "apiKey"), (2, 8, "slack", "botToken"), (3, 9, "stripe", "apiKey")]
    message = next(f[5] for f in found if f[1] == 1)
    assert message == "its IV is used by 2 other ciphertexts under ENCRYPTION_KEY (installation 2 botToken, installation 3 apiKey)"
    assert iv.hex() not in message


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.booleans()), max_size=40))
def test_numpy_and_pure_reuse_agree(entries):
    log = IVLog()
    for n, (iv_seed, key_index, short) in enumerate(entries):
        iv = bytes([iv_seed]) * (12 if short else 16)
        log.add(iv, key_index, 0, n, n)
    normal = sorted(sorted(g) for g in log.reused())
    assert normal == sorted(sorted(g) for g in log._reused_pure())


# ---- COPY text format ----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, decoded", [
    (b"plain", b"plain"), (b"\\N", None), (b"a\\\\b", b"a\\b"), (b"tab\\there", b"tab\there"),
    (b"nl\\nx\\r\\b\\f\\v", b"nl\nx\r\b\f\v"), (b"\\101\\x41\\7", b"AA\x07"), (b"\\q", b"q"),
    (b'{"k": "a\\\\"b"}', b'{"k": "a\\"b"}'),
])
def test_unescape_copy(raw, decoded):
    assert _unescape_copy(raw) == decoded


def test_copy_line_with_escapes_and_null_config(registry):
    auditor = Auditor(registry, keyring())
    auditor.audit_copy_line(b'1\t2\tstripe\tinstalled\t\t\\N\n')
    auditor.audit_copy_line(b'3\t4\tstripe\tinstalled\t\t{"description": "a\\\\nb \\\\\\\\ c", "region": "us"}\n')
    assert auditor.findings == [] and auditor.rows == 2


def test_keys_are_not_in_any_message(registry):
    ring = keyring()
    auditor = Auditor(registry, ring)
    auditor.audit(1, 1, "stripe", "configured", "", json.dumps({"apiKey": seal("x", OTHER_KEY), "region": "us"}))
    for finding in auditor.findings:
        for key in (CURRENT_KEY, PREVIOUS_KEY, OTHER_KEY):
            assert key.hex() not in repr(finding)
