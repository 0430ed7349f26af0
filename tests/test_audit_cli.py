"""`toolkit audit` as an operator and CI run it: formats, --output, exit codes, --baseline,
one-line errors — and no secret (plaintext or ciphertext) in any output."""

from __future__ import annotations

import json

import pytest

from audit_planted import CURRENT_KEY, PREVIOUS_KEY, REGISTRY_PATH, plant, seal
from toolkit import db


@pytest.fixture
def planted_pg(pg_url):
    database = db.open_postgres(pg_url)
    planted = plant(database)
    database.close()
    return pg_url, planted


@pytest.fixture
def env(planted_pg):
    url, _ = planted_pg
    return {"DATABASE_URL": url, "ENCRYPTION_KEY": CURRENT_KEY.hex(),
            "ENCRYPTION_KEY_PREVIOUS": PREVIOUS_KEY.hex(), "TOOLKIT_REGISTRY": str(REGISTRY_PATH)}


def one_line_error(result, code: int, text: str):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr


def test_json_report_is_exactly_the_planted_set(run_cli, env, planted_pg):
    _, planted = planted_pg
    result = run_cli("audit", "--format", "json", env=env)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    got = {(f["code"], f["installation_id"], f["user_id"], f["field"]) for f in document["findings"]}
    assert got == planted.expected
    assert document["summary"]["jobs"] == 1  # a small table is not worth forking for
    assert result.stderr == ""  # no progress bar: stderr is not a terminal


@pytest.mark.parametrize("fmt", ["text", "json", "csv", "html"])
def test_no_secret_in_any_format(run_cli, env, planted_pg, fmt):
    _, planted = planted_pg
    result = run_cli("audit", "--format", fmt, "--fail-on", "never", env=env)
    assert result.returncode == 0, result.stderr
    assert "secret.plaintext" in result.stdout
    leaked = [s for s in planted.secrets if s in result.stdout or s in result.stderr]
    assert leaked == []
    # nor a piece of one: no 24+ hex-digit run (an IV, a tag, a ciphertext)
    import re

    assert not re.search(r"[0-9a-fA-F]{24,}", result.stdout)


def test_output_file_and_fail_levels(run_cli, env, tmp_path):
    report = tmp_path / "out.html"
    result = run_cli("audit", "--format", "html", "--output", report, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().endswith(f"written to {report}")
    assert report.read_text().startswith("<!DOCTYPE html>")
    # only a warning-level code selected: passes at --fail-on error, fails at warning
    assert run_cli("audit", "--code", "installation.timestamps", env=env).returncode == 0
    assert run_cli("audit", "--code", "installation.timestamps", "--fail-on", "warning", env=env).returncode == 1
    assert run_cli("audit", "--code", "status.not-configured", "--fail-on", "warning", env=env).returncode == 0
    assert run_cli("audit", "--code", "status.not-configured", "--fail-on", "info", env=env).returncode == 1


def test_baseline_gates_on_new_findings_only(run_cli, env, planted_pg, tmp_path):
    url, _ = planted_pg
    baseline = tmp_path / "baseline.json"
    assert run_cli("audit", "--format", "json", "-o", baseline, env=env).returncode == 1
    same = run_cli("audit", "--baseline", baseline, env=env)
    assert same.returncode == 0, same.stdout
    assert "0 new, 0 fixed" in same.stdout

    database = db.open_postgres(url)
    with database.atomic():
        user_id = database.execute_sql("INSERT INTO users (email) VALUES ('new@example.com') RETURNING id").fetchone()[0]
        database.execute_sql(
            "INSERT INTO app_installations (user_id, app_id, status, config) VALUES (%s, 'stripe', 'configured', %s::jsonb)",
            (user_id, json.dumps({"apiKey": "sk_new_plaintext_value", "region": "us"})))
        database.execute_sql("DELETE FROM app_installations WHERE app_id = 'ghost-app'")
    database.close()
    changed = run_cli("audit", "--baseline", baseline, env=env)
    assert changed.returncode == 1
    assert "1 new, 1 fixed" in changed.stdout
    assert "NEW secret.plaintext (error) — 1 finding" in changed.stdout
    assert "FIXED app.unknown (error) — 1 finding" in changed.stdout
    assert "sk_new_plaintext_value" not in changed.stdout


def test_filters_on_the_command_line(run_cli, env, planted_pg):
    _, planted = planted_pg
    result = run_cli("audit", "--format", "json", "--app", "slack,mailer", "--code", "secret", "--status", "configured",
                     "--fail-on", "never", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {f["app_id"] for f in document["findings"]} == {"slack", "mailer"}
    assert {f["code"].split(".")[0] for f in document["findings"]} == {"secret"}
    assert document["summary"]["filters"] == {
        "apps": ["slack", "mailer"], "statuses": ["configured"],
        "codes": sorted(c for c in document["summary"]["codes"])}


@pytest.mark.parametrize("args, code, text", [
    (("--code", "secret.bogus"), 2, "unknown audit code 'secret.bogus'"),
    (("--baseline", "/nonexistent/base.json"), 2, "cannot read the baseline"),
    (("--since", "yesterday"), 2, "--since"),
])
def test_usage_errors(run_cli, env, args, code, text):
    result = run_cli("audit", *args, env=env)
    assert result.returncode == code
    assert "Traceback" not in result.stderr and text in result.stderr


def test_missing_registry_and_key_are_one_line_errors(run_cli, env, tmp_path):
    one_line_error(run_cli("audit", env={**env, "TOOLKIT_REGISTRY": str(tmp_path / "missing.json")}), 2, "missing.json")
    no_key = {k: v for k, v in env.items() if not k.startswith("ENCRYPTION_KEY")}
    one_line_error(run_cli("audit", env=no_key), 2, "ENCRYPTION_KEY")
    # without a key the checks that need none still run
    assert run_cli("audit", "--code", "app.unknown", env=no_key).returncode == 1


def test_unreachable_database_is_exit_3(run_cli, env):
    result = run_cli("audit", env={**env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"})
    one_line_error(result, 3, "")


def test_new_rows_of_any_shape_never_crash(run_cli, env, planted_pg):
    url, _ = planted_pg
    database = db.open_postgres(url)
    with database.atomic():
        user_id = database.execute_sql("INSERT INTO users (email) VALUES ('odd@example.com') RETURNING id").fetchone()[0]
        weird_app = "app\twith\ttabs\\and\nnewlines"
        database.execute_sql(
            "INSERT INTO app_installations (user_id, app_id, status, config) VALUES (%s, %s, 'installed', %s::jsonb)",
            (user_id, weird_app, json.dumps({"k\u202e\x1b[2J": seal("x")})))
    database.close()
    result = run_cli("audit", "--code", "app.unknown", "--format", "text", env=env)
    assert result.returncode == 1
    assert "app\\twith\\ttabs\\and\\nnewlines" in result.stdout  # shown escaped, on one line
    assert json.loads(run_cli("audit", "--format", "json", env=env).stdout)["summary"]["findings"] > 0


def test_forced_progress_bar_leaves_stdout_alone(run_cli, env):
    quiet = run_cli("audit", "--format", "json", "--no-progress", env=env)
    forced = run_cli("audit", "--format", "json", "--progress", env=env)
    assert forced.returncode == quiet.returncode == 1
    strip = lambda out: {k: v for k, v in json.loads(out)["summary"].items() if k not in ("duration_s", "generated_at")}  # noqa: E731
    assert strip(forced.stdout) == strip(quiet.stdout)
