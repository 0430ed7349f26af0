"""`toolkit repair` on planted rows in real PostgreSQL: each fix alone, dry run, what the
audit says afterwards, compare-and-swap against the app, bad input, PgBouncer."""

from __future__ import annotations

import json

import pytest

from test_rotation import AppWritesWhilePlanning, _pg_writer
from test_rotation_seed import LOST_KEY, NEW_KEY, OLD_KEY, REGISTRY, checksum, cli_env, insert_rows, keyring, open_under, rows, seal
from toolkit.writes import repair, rewrite
from toolkit.db import installations, open_postgres
from toolkit.errors import UsageError
from toolkit.registry import parse_registry

FIXES = ("secret.plaintext", "status.not-configured", "field.unknown")


@pytest.fixture
def planted(pg_url, tmp_path):
    from test_rotation_seed import write_registry

    clean_slack = {"botToken": seal(NEW_KEY, "xoxb-1"), "channel": "#ops"}
    ids = insert_rows(pg_url, [
        # 0: two plaintext secrets (whitespace is a value too)
        {"app_id": "stripe", "config": {"apiKey": "sk_plain_0", "webhookSecret": "  ", "region": "eu"}},
        # 1: installed, complete and valid
        {"app_id": "stripe", "status": "installed", "config": {"apiKey": seal(NEW_KEY, "sk_1"), "region": "us"}},
        # 2: installed and incomplete
        {"app_id": "stripe", "status": "installed", "config": {"apiKey": seal(NEW_KEY, "sk_2")}},
        # 3: two unknown keys, one of them not a string
        {"app_id": "stripe", "config": {"apiKey": seal(NEW_KEY, "sk_3"), "region": "us", "debug": "true",
                                        "legacy": {"nested": [1, 2]}}},
        # 4: installed, complete, but its required secret is plaintext: status only once that is fixed
        {"app_id": "stripe", "status": "installed", "config": {"apiKey": "sk_plain_4", "region": "eu"}},
        # 5: clean
        {"app_id": "slack", "config": clean_slack},
        # 6: installed, complete, but its secret decrypts under no key: not "valid", no status fix
        {"app_id": "stripe", "status": "installed", "config": {"apiKey": seal(LOST_KEY, "x"), "region": "us"}},
        # 7: an app the registry does not know: its keys are not "unknown fields"
        {"app_id": "legacy-crm", "config": {"token": "t-1"}},
        # 8: a blank optional secret is "not set", not plaintext; a stale one is rotation's business
        {"app_id": "stripe", "config": {"apiKey": seal(OLD_KEY, "sk_8"), "webhookSecret": "", "region": "us"}},
    ])
    return pg_url, write_registry(tmp_path), ids


def env(url, registry):
    return cli_env(url, registry, previous=OLD_KEY)


def audit_counts(run_cli, url, registry) -> dict:
    result = run_cli("audit", "--format", "json", *(a for code in FIXES for a in ("--code", code)), "--fail-on", "never",
                     env=env(url, registry))
    assert result.returncode == 0, result.stderr
    counts = {}
    for finding in json.loads(result.stdout)["findings"]:
        counts.setdefault(finding["code"], set()).add(finding["installation_id"])
    return counts


def test_dry_run_reports_every_fix_and_changes_nothing(planted, run_cli):
    url, registry, ids = planted
    before = checksum(url)
    args = [a for code in FIXES for a in ("--fix", code)]
    result = run_cli("repair", *args, "--dry-run", "--json", env=env(url, registry))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {code: v["fixed"] for code, v in report["fixes"].items()} == {
        "secret.plaintext": 3, "status.not-configured": 1, "field.unknown": 2}
    assert report["rows"]["changed"] == 4 and report["dry_run"]
    assert checksum(url) == before
    # The dry run agrees with the audit: the same rows.
    assert audit_counts(run_cli, url, registry) == {
        "secret.plaintext": {ids[0], ids[4]}, "status.not-configured": {ids[1]}, "field.unknown": {ids[3]}}


def test_each_fix_alone_touches_only_its_findings(planted, run_cli):
    url, registry, ids = planted
    before = rows(url)

    result = run_cli("repair", "--fix", "field.unknown", "--yes", env=env(url, registry))
    assert result.returncode == 0, result.stderr
    after = rows(url)
    assert after[ids[3]][1] == {"apiKey": before[ids[3]][1]["apiKey"], "region": "us"}
    assert after[ids[3]][2] > before[ids[3]][2]  # a repair is an edit: updated_at = now()
    assert {i: r for i, r in after.items() if i != ids[3]} == {i: r for i, r in before.items() if i != ids[3]}

    result = run_cli("repair", "--fix", "secret.plaintext", "--yes", "--json", env=env(url, registry))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["fixes"]["secret.plaintext"]["fixed"] == 3
    fixed = rows(url)
    assert open_under(NEW_KEY, fixed[ids[0]][1]["apiKey"]) == b"sk_plain_0"
    assert open_under(NEW_KEY, fixed[ids[0]][1]["webhookSecret"]) == b"  "
    assert open_under(NEW_KEY, fixed[ids[4]][1]["apiKey"]) == b"sk_plain_4"
    assert fixed[ids[4]][0] == "installed"
    assert {i: fixed[i] for i in ids if i not in (ids[0], ids[4])} == {i: after[i] for i in ids if i not in (ids[0], ids[4])}

    result = run_cli("repair", "--fix", "status.not-configured", "--yes", "--json", env=env(url, registry))
    assert json.loads(result.stdout)["fixes"]["status.not-configured"]["fixed"] == 2  # 1, and 4 now
    final = rows(url)
    assert final[ids[1]][0] == final[ids[4]][0] == "configured"
    assert final[ids[2]][0] == final[ids[6]][0] == "installed"
    assert final[ids[1]][1] == fixed[ids[1]][1]  # the config is left as it was
    assert audit_counts(run_cli, url, registry) == {}
    again = run_cli("repair", *[a for code in FIXES for a in ("--fix", code)], "--yes", "--json", env=env(url, registry))
    assert json.loads(again.stdout)["rows"]["changed"] == 0


def test_status_fix_is_not_applied_when_the_app_empties_a_required_field_meanwhile(planted):
    url, _, ids = planted
    app = _pg_writer(url, "UPDATE app_installations SET config = config || '{\"region\": \"\"}' WHERE id = %s")
    planner = AppWritesWhilePlanning(repair.RepairPlanner(parse_registry(REGISTRY), keyring(NEW_KEY, OLD_KEY),
                                                          ["status.not-configured"]), ids[1], app)
    with installations.PostgresStore(open_postgres(url).url.dsn()) as store:
        result = rewrite.run_rewrite(store, planner, batch_size=4)
    # The compare-and-swap missed, the re-read row was audited again and no longer qualifies.
    assert result.conflicts == 1 and not result.left and result.rows_changed == 0
    assert rows(url)[ids[1]][:2] == ("installed", {"apiKey": rows(url)[ids[1]][1]["apiKey"], "region": ""})


def test_dropping_a_key_keeps_a_concurrent_write_to_another(planted):
    url, _, ids = planted
    app = _pg_writer(url, "UPDATE app_installations SET config = config || '{\"webhookUrl\": \"https://app.example.com\"}'"
                          " WHERE id = %s")
    planner = AppWritesWhilePlanning(repair.RepairPlanner(parse_registry(REGISTRY), keyring(NEW_KEY, OLD_KEY),
                                                          ["field.unknown"]), ids[3], app)
    with installations.PostgresStore(open_postgres(url).url.dsn()) as store:
        result = rewrite.run_rewrite(store, planner, batch_size=4)
    # `legacy` holds an object, so this row's condition is its whole config: one miss, then done.
    assert result.conflicts == 1 and result.tally["field.unknown"] == 2
    config = rows(url)[ids[3]][1]
    assert "debug" not in config and "legacy" not in config
    assert config["webhookUrl"] == "https://app.example.com"


def test_unknown_fixes_are_usage_errors(planted, run_cli):
    url, registry, _ = planted
    with pytest.raises(UsageError, match="cannot be fixed mechanically"):
        repair.check_fixes(["secret.stale-key"])
    with pytest.raises(UsageError, match="not an audit code"):
        repair.check_fixes(["nope"])
    before = checksum(url)
    for args in ((), ("--fix", "secret.stale-key")):
        result = run_cli("repair", *args, "--yes", env=env(url, registry))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
    refused = run_cli("repair", "--fix", "field.unknown", env=env(url, registry))
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert checksum(url) == before


def test_read_only_database_refused(planted, run_cli):
    import psycopg2

    url, registry, _ = planted
    before = checksum(url)
    admin = psycopg2.connect(url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET default_transaction_read_only = on')
    admin.close()
    result = run_cli("repair", "--fix", "secret.plaintext", "--yes", env=env(url, registry))
    assert result.returncode == 3 and "refuses writes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert checksum(url) == before


def test_through_pgbouncer(planted, pgbouncer_url, run_cli):
    url, registry, ids = planted
    pooled = pgbouncer_url(url)
    args = [a for code in FIXES for a in ("--fix", code)]
    result = run_cli("repair", *args, "--yes", "--json", "--batch-size", "2", env=env(pooled, registry))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"]["changed"] == 4
    assert rows(url)[ids[1]][0] == "configured"


def test_demo_database(demo_settings, run_cli):
    env_ = {"TOOLKIT_DATA_DIR": str(demo_settings.data_dir)}
    args = [a for code in FIXES for a in ("--fix", code)]
    dry = json.loads(run_cli("repair", *args, "--dry-run", "--json", env=env_).stdout)
    assert all(v["fixed"] >= 1 for v in dry["fixes"].values())
    done = json.loads(run_cli("repair", *args, "--yes", "--json", env=env_).stdout)
    assert done["fixes"] == dry["fixes"]
    audit = json.loads(run_cli("audit", "--format", "json", "--fail-on", "never", *(a for c in FIXES for a in ("--code", c)),
                               env=env_).stdout)
    assert audit["findings"] == []
