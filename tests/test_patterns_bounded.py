"""Registry patterns are untrusted code: a catastrophic-backtracking pattern cannot hang the
audit, `show`, the config service or the dashboard (DESIGN.md §2, §4.6).

pytest-timeout guards each test; nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg2
import pytest

from toolkit.registry import FieldDefinition, check_value, parse_registry
from toolkit.registry._field_types import PATTERN_TIMEOUT_S, backtracking_risk, compile_pattern

from conftest import ROOT

# Exponential on `re` (hours for these values); `regex` gives up after PATTERN_TIMEOUT_S.
HOSTILE = [(r"^(x+x+)+y$", "x" * 5000), (r"^(a|aa)+$", "a" * 60 + "b")]
KEY = "ab" * 32


def field(pattern, type_="text"):
    return FieldDefinition(key="code", label="Code", type=type_, pattern=pattern)


# ---- check_value: the one place value rules live ----------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("pattern, value", HOSTILE)
def test_a_pattern_that_takes_too_long_makes_the_value_invalid(pattern, value):
    message = check_value(field(pattern), value)
    assert message is not None and "took too long" in message and pattern in message
    assert value not in message


@pytest.mark.timeout(30)
def test_the_brief_example_ends():
    # The regex package's own guards answer this one at once; either way it ends.
    assert check_value(field(r"^(a+)+$"), "a" * 40 + "b") is not None


@pytest.mark.parametrize("pattern", [r"AC[0-9a-f]{32}", r"^https://", r"^sk_(live|test)_[A-Za-z0-9]{24,}$",
                                     r"[a-z0-9-]+\.slack\.com", r"\d{3}-\d{4}"])
def test_patterns_that_cannot_backtrack_keep_the_fast_engine(pattern):
    import re

    # `regex` with a timeout is ~15x slower per match (benchmarks/bench_patterns.py).
    assert isinstance(compile_pattern(pattern).__self__, re.Pattern)


@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"(ab|cd)*", r"^[^@]+@[^@]+\.[^@]+$", r"x+$",
                                     r"(?<y>\d)-\k<y>"])
def test_patterns_that_may_backtrack_run_with_a_limit(pattern):
    assert not hasattr(compile_pattern(pattern), "__self__")


# The bounded engine keeps the rules of the module docstring: anchors, JavaScript's `$`,
# ASCII classes, JavaScript named groups. Both engines must give the same answers.
SEMANTICS = [
    (r"AC[0-9a-f]{32}", ["AC" + "0" * 32, "xAC" + "0" * 32, "AC" + "0" * 32 + "\n"]),
    (r"^https://", ["https://example.com", "http://example.com", "xhttps://"]),
    (r"^[a-z]+$", ["abc", "abc\n", "abc1", ""]),
    (r"\d+", ["123", "١٢٣", "12a"]),
    (r"\w+@\w+", ["a@b", "é@b", "a@"]),
    (r"(?<year>\d{4})-\k<year>", ["2024-2024", "2024-2025"]),
    (r"(ab|cd)*", ["abcd", "abc", "cdab"]),
    (r"[]a]+", ["]a]", "b"]),
]


@pytest.mark.parametrize("pattern, values", SEMANTICS)
def test_both_engines_agree(pattern, values):
    plain, bounded = compile_pattern(pattern, bounded=False), compile_pattern(pattern, bounded=True)
    for value in values:
        assert (plain(value) is None) == (bounded(value) is None), (pattern, value)


def test_js_dollar_and_ascii_on_the_bounded_engine():
    assert compile_pattern(r"^[a-z]+$", bounded=True)("abc\n") is None
    assert compile_pattern(r"\d+", bounded=True)("١٢٣") is None
    assert compile_pattern(r"\d+", bounded=True)("123") is not None


# ---- registry check warns -------------------------------------------------------------------

@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"(a*)*", r"(a|a)*", r"(.*a){3}", r"^(a|ab)*c$", r"(x+x+)+y"])
def test_known_backtracking_shapes_are_named(pattern):
    assert backtracking_risk(pattern)


@pytest.mark.parametrize("pattern", [r"AC[0-9a-f]{32}", r"^https://", r"(ab|cd)*", r"^sk_(live|test)_\w{24,}$",
                                     r"^[^@]+@[^@]+\.[^@]+$", r"(?:a|b)*", r"(\w|\d)+$"])
def test_ordinary_patterns_are_not_flagged(pattern):
    assert backtracking_risk(pattern) is None


def evil_registry(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({
        "evil": {"name": "Evil", "fields": [
            {"key": "code", "label": "Code", "type": "text", "pattern": r"^(x+x+)+y$"},
            {"key": "zone", "label": "Zone", "type": "text", "pattern": r"^(a|aa)+$"},
            {"key": "site", "label": "Site", "type": "url", "pattern": "^https://"},
        ]},
    }))
    return path


def test_registry_check_warns_naming_app_and_field(tmp_path):
    registry = parse_registry(json.loads(evil_registry(tmp_path).read_text()))
    assert len(registry.warnings) == 2
    assert "app 'evil', field 'code'" in registry.warnings[0] and "backtrack" in registry.warnings[0]
    assert "app 'evil', field 'zone'" in registry.warnings[1]
    assert f"{PATTERN_TIMEOUT_S:g} s" in registry.warnings[0]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "toolkit", "registry", "check", str(evil_registry(tmp_path))],
                            capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "field 'code'" in warnings[0] and "field 'site'" not in result.stderr


# ---- the audit, show and the config service on a hostile row -----------------------------------

@pytest.fixture
def hostile_pg(pg_url, tmp_path):
    connection = psycopg2.connect(pg_url)
    with connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO users (email) VALUES ('mallory@example.com') RETURNING id")
        (user_id,) = cursor.fetchone()
        config = {"code": "x" * 5000, "zone": "a" * 60 + "b", "site": "https://ok.example.com"}
        cursor.execute("INSERT INTO app_installations (user_id, app_id, status, config) "
                       "VALUES (%s, 'evil', 'configured', %s) RETURNING id", (user_id, json.dumps(config)))
        (installation_id,) = cursor.fetchone()
    connection.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": pg_url, "ENCRYPTION_KEY": KEY,
           "TOOLKIT_REGISTRY": str(evil_registry(tmp_path)), "TOOLKIT_ACCESS_LOG": str(tmp_path / "access.log")}
    return env, installation_id


@pytest.mark.timeout(120)
def test_the_audit_ends_and_names_the_field(hostile_pg, tmp_path):
    env, installation_id = hostile_pg
    result = subprocess.run([sys.executable, "-m", "toolkit", "audit", "--format", "json"],
                            capture_output=True, text=True, env=env, timeout=110, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["findings"]
    slow = {f["field"]: f for f in findings if f["code"] == "field.invalid"}
    assert set(slow) == {"code", "zone"}
    for finding in slow.values():
        assert finding["installation_id"] == installation_id and "took too long" in finding["message"]


@pytest.mark.timeout(120)
def test_show_ends(hostile_pg, tmp_path):
    env, installation_id = hostile_pg
    result = subprocess.run([sys.executable, "-m", "toolkit", "show", str(installation_id)],
                            capture_output=True, text=True, env=env, timeout=110, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Code" in result.stdout and "Zone" in result.stdout


@pytest.mark.timeout(120)
def test_the_config_service_refuses_a_value_it_cannot_check(hostile_pg, tmp_path):
    from toolkit import Context, ConfigValidationError
    from toolkit.settings import load_settings

    from toolkit.db import database_proxy

    env, installation_id = hostile_pg
    bound = database_proxy.obj  # the context binds the models process-wide: put them back after
    context = Context(load_settings(cwd=tmp_path, environ=env), announce=lambda line: None)
    try:
        with pytest.raises(ConfigValidationError) as caught:
            context.configs.update_config(installation_id, {"code": "x" * 4000})
        (problem,) = [p for p in caught.value.problems if p.field == "code"]
        assert "took too long" in problem.message
    finally:
        context.close()
        database_proxy.initialize(bound)
