"""A dry run lists the rows it would change — (installation, app, field, action) — and those
are exactly the rows the real run then changes: for `keys rotate` (in its worker processes)
and `repair` on PostgreSQL, and for `repair` on the SQLite demo database. The text summary
shows the first --limit rows, escaped, then a count; no value ever appears in either."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from test_rotation_seed import (
    LOST_KEY,
    NEW_KEY,
    OLD_KEY,
    OLDER_KEY,
    REGISTRY,
    cli_env,
    insert_rows,
    keyring,
    open_under,
    rows,
    seal,
    write_registry,
)
from toolkit.writes import rewrite
from toolkit.db import installations, open_postgres
from toolkit.keys import rotation
from toolkit.registry import parse_registry

FIXES = ("secret.plaintext", "status.not-configured", "field.unknown")
HOSTILE_APP = "evil\x1b]0;owned\x07"
HOSTILE_KEY = "legacy\x1b[2JKey"
RLO_KEY = "tok\u202eneKy"
MISSING = object()
# Enough rows that `rotate()` takes its parallel path with these options (its id span is at
# least twice the batch size): the rows then come back from the worker processes.
ROTATE_OPTIONS = ("--batch-size", "10", "--workers", "3")


def changed_fields(before: dict, after: dict) -> set:
    """(id, config key) for every key whose value changed, appeared or went; (id, None) for a status."""
    found = set()
    for row_id, (status, config, *_) in before.items():
        new_status, new_config, *_ = after[row_id]
        if status != new_status:
            found.add((row_id, None))
        if isinstance(config, dict) and isinstance(new_config, dict):
            found |= {(row_id, key) for key in config.keys() | new_config.keys()
                      if config.get(key, MISSING) != new_config.get(key, MISSING)}
        elif config != new_config:
            found.add((row_id, "<the whole config>"))
    return found


def listed(report: dict) -> set:
    pairs = [(c["installation_id"], c["field"]) for c in report["changes"]]
    assert len(pairs) == len(set(pairs)), "a field listed twice"
    assert report["changes_not_listed"] == 0  # --json lists every row
    return set(pairs)


def values_in(configs) -> set:
    return {v for config in configs if isinstance(config, dict) for v in config.values() if isinstance(v, str) and len(v) > 3}


# ---- keys rotate, PostgreSQL, in worker processes ---------------------------------------

@pytest.fixture
def rotation_rows(pg_url, tmp_path):
    planted = []
    for i in range(120):
        kind = i % 6
        if kind == 0:  # both secrets stale, under two different previous keys; a URL holding a ciphertext
            config = {"apiKey": seal(OLD_KEY, f"sk_{i}"), "webhookSecret": seal(OLDER_KEY, f"wh_{i}", 12),
                      "region": "eu", "webhookUrl": seal(OLD_KEY, "https://hooks.example.com/x")}
        elif kind == 1:  # one current, one stale
            config = {"apiKey": seal(NEW_KEY, f"sk_{i}"), "webhookSecret": seal(OLD_KEY, f"wh_{i}"), "region": "us"}
        elif kind == 2:  # a plaintext secret: skipped, never written
            config = {"apiKey": f"sk_plain_{i}", "region": "us"}
        elif kind == 3:
            config = {"botToken": seal(OLD_KEY, f"xoxb-{i}"), "channel": "#ops"}
        elif kind == 4:  # undecryptable (left alone); ciphertexts under keys with hostile names (rotated)
            config = {"apiKey": seal(LOST_KEY, "lost"), "region": "eu", HOSTILE_KEY: seal(OLD_KEY, f"legacy_{i}"),
                      RLO_KEY: seal(OLDER_KEY, f"rlo_{i}")}
        else:  # an app the registry does not know, with a hostile id: its ciphertext is a secret too
            config = {"token": seal(OLD_KEY, f"t_{i}"), "note": "plain words"}
        app = ("stripe", "stripe", "stripe", "slack", "stripe", HOSTILE_APP)[kind]
        planted.append({"app_id": app, "config": config})
    planted.append({"app_id": "stripe", "config": ["not", "an", "object"]})
    ids = insert_rows(pg_url, planted)
    env = cli_env(pg_url, write_registry(tmp_path), previous=f"{OLD_KEY},{OLDER_KEY}")
    return pg_url, env, ids


def test_rotation_dry_run_lists_exactly_what_the_rotation_changes(rotation_rows, run_cli):
    url, env, _ = rotation_rows
    before = rows(url)
    dry = run_cli("keys", "rotate", "--dry-run", "--json", *ROTATE_OPTIONS, env=env)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert rows(url) == before  # a dry run writes nothing
    assert len(report["changes"]) == report["values"]["rotated"] == 20 * 3 + 20 + 20 + 20 * 2 + 20

    done = run_cli("keys", "rotate", "--yes", "--json", *ROTATE_OPTIONS, env=env)
    assert done.returncode == 0, done.stderr
    after = rows(url)
    assert listed(report) == changed_fields(before, after)

    # Each row says what happened to it: the app, and the key the old value was under.
    keys = {"previous #1": OLD_KEY, "previous #2": OLDER_KEY}
    for change in report["changes"]:
        row_id, field = change["installation_id"], change["field"]
        assert change["app_id"] == installation_app(url, row_id)
        source = re.fullmatch(r"re-encrypt \((previous #\d) → current\)", change["action"]).group(1)
        old, new = before[row_id][1][field], after[row_id][1][field]
        assert open_under(keys[source], old) == open_under(NEW_KEY, new)

    # Never a value: no ciphertext or plaintext of the table in the listing.
    assert not [v for v in values_in(c for _, c, _ in before.values()) if v in dry.stdout]
    assert "sk_plain_" not in dry.stdout


def installation_app(url, row_id) -> str:
    from test_rotation_seed import connect

    connection = connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT app_id FROM app_installations WHERE id = %s", (row_id,))
        app = cursor.fetchone()[0]
    connection.close()
    return app


def test_rotation_text_lists_the_first_rows_escaped_then_a_count(rotation_rows, run_cli):
    url, env, ids = rotation_rows
    every = json.loads(run_cli("keys", "rotate", "--dry-run", "--json", *ROTATE_OPTIONS, env=env).stdout)["changes"]

    text = run_cli("keys", "rotate", "--dry-run", *ROTATE_OPTIONS, env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    start = lines.index(f"would change ({len(every)}):")
    shown = lines[start + 2:start + 2 + 20]
    assert [int(line.split()[0]) for line in shown] == [c["installation_id"] for c in every[:20]]
    assert lines[start + 22] == f"  … and {len(every) - 20} more (--limit N shows more, --json lists them all)"

    # The env twin of --limit; customer names escaped, never a raw control character.
    all_rows = run_cli("keys", "rotate", "--dry-run", *ROTATE_OPTIONS, env={**env, "TOOLKIT_KEYS_ROTATE_LIMIT": "1000"})
    out = all_rows.stdout
    assert "… and" not in out and len(re.findall(r"re-encrypt \(previous", out)) == len(every)
    assert "evil\\x1b]0;owned\\x07" in out and "legacy\\x1b[2JKey" in out and "tok\\u202eneKy" in out
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out)
    three = run_cli("keys", "rotate", "--dry-run", "--limit", "3", *ROTATE_OPTIONS, env=env).stdout
    assert f"  … and {len(every) - 3} more" in three


def test_rows_come_back_from_the_worker_processes_in_id_order(rotation_rows):
    """run_parallel's listing equals one process's, whole and cut to a limit (the merge keeps
    the first rows by id, however the workers' ranges split them)."""
    url, _, _ = rotation_rows
    planner = rotation.RotationPlanner.from_registry(parse_registry(REGISTRY), keyring(NEW_KEY, OLD_KEY, OLDER_KEY))
    factory = installations.store_factory(open_postgres(url), read_only=True)
    for limit in (None, 7, 45):
        with factory() as store:
            single = rewrite.run_rewrite(store, planner, dry_run=True, batch_size=10, list_limit=limit)
            bounds = store.id_bounds()
        parallel = rewrite.run_parallel(factory, planner, workers=3, id_bounds=bounds, dry_run=True,
                                         batch_size=10, list_limit=limit)
        assert list(parallel.changes) == list(single.changes)
        assert parallel.changes.total == single.changes.total == 160
        assert len(parallel.changes) == (160 if limit is None else limit)


# ---- repair, PostgreSQL -----------------------------------------------------------------

@pytest.fixture
def repair_rows(pg_url, tmp_path):
    ids = insert_rows(pg_url, [
        {"app_id": "stripe", "config": {"apiKey": "sk_plain_0", "webhookSecret": "  ", "region": "eu"}},
        {"app_id": "stripe", "status": "installed", "config": {"apiKey": seal(NEW_KEY, "sk_1"), "region": "us"}},
        {"app_id": "stripe", "status": "installed", "config": {"apiKey": seal(NEW_KEY, "sk_2")}},
        {"app_id": "stripe", "config": {"apiKey": seal(NEW_KEY, "sk_3"), "region": "us", HOSTILE_KEY: "true",
                                        "legacy": {"nested": [1, 2]}}},
        # the status fix needs the plaintext fixed first: neither run sees it (one reading per row)
        {"app_id": "stripe", "status": "installed", "config": {"apiKey": "sk_plain_4", "region": "eu"}},
        {"app_id": "slack", "config": {"botToken": seal(NEW_KEY, "xoxb-1"), "channel": "#ops"}},
        {"app_id": "stripe", "status": "installed", "config": {"apiKey": seal(LOST_KEY, "x"), "region": "us"}},
        {"app_id": HOSTILE_APP, "config": {"token": "t-1"}},
        {"app_id": "slack", "status": "installed", "config": {"botToken": "xoxb-plain", "channel": "#c", RLO_KEY: "x"}},
    ] * 3)
    return pg_url, cli_env(pg_url, write_registry(tmp_path), previous=OLD_KEY), ids


def fix_args():
    return [a for code in FIXES for a in ("--fix", code)]


def test_repair_dry_run_lists_exactly_what_the_repair_changes(repair_rows, run_cli):
    url, env, ids = repair_rows
    before = rows(url)
    dry = run_cli("repair", *fix_args(), "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert rows(url) == before

    done = run_cli("repair", *fix_args(), "--yes", "--json", "--batch-size", "4", env=env)
    assert done.returncode == 0, done.stderr
    after = rows(url)
    assert listed(report) == changed_fields(before, after)
    assert {c["action"] for c in report["changes"]} == {
        "encrypt plaintext", "remove unknown field", "status installed → configured"}
    for change in report["changes"]:
        row_id, field = change["installation_id"], change["field"]
        old, new = before[row_id], after[row_id]
        if change["action"] == "encrypt plaintext":
            assert open_under(NEW_KEY, new[1][field]).decode() == old[1][field]
        elif change["action"] == "remove unknown field":
            assert field in old[1] and field not in new[1]
        else:
            assert field is None and (old[0], new[0]) == ("installed", "configured")
    assert report["fixes"]["secret.plaintext"]["fixed"] == sum(c["action"] == "encrypt plaintext" for c in report["changes"])
    # Never a value in the listing: the plaintexts it would encrypt are not in it.
    assert "sk_plain_" not in dry.stdout and "xoxb-plain" not in dry.stdout


def test_repair_text_lists_the_first_rows_then_a_count(repair_rows, run_cli):
    url, env, _ = repair_rows
    every = json.loads(run_cli("repair", *fix_args(), "--dry-run", "--json", env=env).stdout)["changes"]
    assert len(every) > 5
    text = run_cli("repair", *fix_args(), "--dry-run", env={**env, "TOOLKIT_REPAIR_LIMIT": "5"})
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    start = lines.index(f"would change ({len(every)}):")
    assert lines[start + 1].split() == ["id", "app", "field", "action"]
    shown = [line.split(None, 3) for line in lines[start + 2:start + 7]]
    # text escapes what JSON carries as is (here: ESC in a field name, shown as \x1b)
    expected = [[str(c["installation_id"]), c["app_id"], escaped(c["field"]) if c["field"] else "(status)", c["action"]]
                for c in every[:5]]
    assert shown == expected and any("\\x1b" in row[2] for row in shown)
    assert lines[start + 7] == f"  … and {len(every) - 5} more (--limit N shows more, --json lists them all)"
    full = run_cli("repair", *fix_args(), "--dry-run", "--limit", "100", env=env).stdout
    assert "legacy\\x1b[2JKey" in full and "tok\\u202eneKy" in full and "\x1b" not in full
    assert "sk_plain_" not in full


def escaped(name: str) -> str:
    return name.encode("unicode_escape").decode("ascii")


# ---- repair, the SQLite demo database ---------------------------------------------------

def sqlite_rows(path) -> dict:
    with sqlite3.connect(path) as connection:
        found = connection.execute("SELECT id, status, config FROM app_installations ORDER BY id").fetchall()
    connection.close()
    decoded = {}
    for row_id, status, config in found:
        try:
            decoded[row_id] = (status, json.loads(config) if config is not None else {})
        except ValueError:
            decoded[row_id] = (status, config)
    return decoded


def test_repair_dry_run_on_the_demo_database_lists_what_it_then_changes(demo_settings, run_cli):
    from toolkit.demo import DEMO_FILENAME

    env = {"TOOLKIT_DATA_DIR": str(demo_settings.data_dir)}
    path = demo_settings.data_dir / DEMO_FILENAME
    before = sqlite_rows(path)
    dry = run_cli("repair", *fix_args(), "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert sqlite_rows(path) == before
    assert {c["action"] for c in report["changes"]} == {
        "encrypt plaintext", "remove unknown field", "status installed → configured"}

    done = run_cli("repair", *fix_args(), "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert listed(report) == changed_fields(before, sqlite_rows(path))


# ---- the JSON document, streamed ---------------------------------------------------------

@pytest.mark.parametrize("count", [0, 1, 3, 10_001])
def test_the_streamed_json_is_byte_for_byte_the_summary(count):
    """The CLI writes a dry run's rows in pieces; they make exactly `as_dict()`'s JSON."""
    import orjson

    from toolkit.writes import repair

    changes = rewrite.ChangeList(None if count != 3 else 2)
    for n in range(count):
        change = installations.Change(n + 1, patch={"apiKey": "x", RLO_KEY: "y"}, drop=(HOSTILE_KEY,),
                                      status=("installed", "configured"))
        changes.add(n + 1, HOSTILE_APP, rewrite.describe(change, ("previous #1",)))
    for changes_ in (changes, None):
        result = rewrite.RewriteResult(dry_run=changes_ is not None, changes=changes_)
        for report in (rotation.RotationReport(result, {"current": "aa54cf22", "previous #1": "2f4119b3"}),
                       repair.RepairReport(result, FIXES)):
            streamed = b"".join(report.json_chunks())
            assert streamed == orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2)
            if changes_ is not None:
                document = json.loads(streamed)
                assert len(document["changes"]) == min(4 * count, 2 if count == 3 else 4 * count)
                assert document["changes_not_listed"] == (4 * count - 2 if count == 3 else 0)
