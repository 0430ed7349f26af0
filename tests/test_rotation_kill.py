"""The app keeps writing while a rotation is SIGKILLed half-way and run again.

The "app" is a second connection doing what a Next.js app does: merge a non-secret field,
save a new secret sealed by the app's own crypto (tests/node_crypto.js, run by Node — with
the new key, and some with the old key as an instance not yet redeployed would), and save
the whole settings form read a moment earlier (read-modify-write, which may put back a
ciphertext rotation just replaced: the app's write wins, the next run rotates it again).

A watcher reads the table throughout: at no instant may a secret be unreadable under the
keyring (current + previous). At the end every secret decrypts under the new key alone to
its original plaintext or the app's newer one, and every app write is there.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from test_rotation_seed import NEW_KEY, OLD_KEY, cli_env, keyring, open_under, seed_stripe, write_registry

ROOT = Path(__file__).resolve().parent.parent
NODE_CRYPTO = Path(__file__).resolve().parent / "node_crypto.js"
ROWS = 3000
PAGE = 20

# Runs the rotation in its own process and prints each committed page (and how many rows the
# app changed under it) so the test can kill it mid-way. Planning is slowed a little, as on a
# busy machine, so the app's writes land between a page's read and its write.
DRIVER = """
import collections, sys, time
from toolkit.writes import rewrite
from toolkit.keys import rotation
from toolkit.crypto import Keyring
from toolkit.db import installations, open_postgres
from toolkit.registry import load_registry
url, registry, new, old = sys.argv[1:5]
ring = Keyring.from_materials([bytes.fromhex(new), bytes.fromhex(old)])
planner = rotation.RotationPlanner.from_registry(load_registry(registry), ring)
seen = collections.Counter()
class Slow:
    def plan(self, row):
        seen[row.id] += 1
        time.sleep(0.002)
        return planner.plan(row)
def page(n):
    print(n, sum(seen.values()) - len(seen), flush=True)
with installations.PostgresStore(open_postgres(url).url.dsn()) as store:
    rewrite.run_rewrite(store, Slow(), batch_size=int(sys.argv[5]), after_batch=page)
print("finished", flush=True)
"""


def node_seal(node_bin, key_hex, plaintexts, iv_length=16):
    requests = [{"op": "encrypt", "value": p} for p in plaintexts]
    result = subprocess.run(
        [node_bin, str(NODE_CRYPTO)], input=json.dumps(requests), capture_output=True, text=True, check=True,
        env={**os.environ, "ENCRYPTION_KEY": key_hex, "IV_LENGTH": str(iv_length)},
    )
    return [r["ok"] for r in json.loads(result.stdout)]


class App(threading.Thread):
    """Writes like the app until stopped; remembers the last value it wrote per row and field."""

    def __init__(self, url, ids, new_secrets, old_secrets):
        super().__init__(daemon=True)
        self.url, self.ids = url, ids
        # Set by the test while run 1 goes: the page the rotation is reading and planning now.
        # The app then writes there, so its writes land between that page's read and write.
        self.page: int | None = None
        self.new_secrets, self.old_secrets = new_secrets, old_secrets
        self.stop = threading.Event()
        self.wrote_url: dict[int, str] = {}
        self.wrote_api_key: dict[int, str] = {}  # row -> plaintext of the apiKey the app saved
        self.writes = 0
        self.error = None

    def run(self):
        rng = random.Random(8)
        connection = psycopg2.connect(self.url)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self.stop.is_set():
                    page = self.page
                    near = self.ids[page * PAGE:(page + 1) * PAGE] if page is not None else ()
                    row_id = rng.choice(near or self.ids)
                    self.writes += 1
                    marker = f"https://app.example.com/hook/{self.writes}"
                    action = rng.random()
                    if 0.3 <= action < 0.7 and row_id in self.wrote_api_key:
                        # A secret is saved once per row: a later save would hide an earlier lost one.
                        continue
                    if action < 0.3:  # a non-secret field, merged server-side
                        cursor.execute("UPDATE app_installations SET config = config || jsonb_build_object('webhookUrl', %s::text),"
                                       " updated_at = now() WHERE id = %s", (marker, row_id))
                        self.wrote_url[row_id] = marker
                    elif action < 0.7:  # a new secret, sealed by the app (Node), new key or an old instance's key
                        plaintext, value = rng.choice(self.new_secrets if rng.random() < 0.7 else self.old_secrets)
                        cursor.execute("UPDATE app_installations SET config = jsonb_set(config, '{apiKey}', to_jsonb(%s::text)),"
                                       " updated_at = now() WHERE id = %s", (value, row_id))
                        self.wrote_api_key[row_id] = plaintext
                    else:  # the settings form saved whole: read, change one field, write everything back
                        cursor.execute("SELECT config FROM app_installations WHERE id = %s", (row_id,))
                        config = cursor.fetchone()[0]
                        time.sleep(0.002)  # the request's think time: rotation may rewrite the row meanwhile
                        config["webhookUrl"] = marker
                        cursor.execute("UPDATE app_installations SET config = %s::jsonb, updated_at = now() WHERE id = %s",
                                       (json.dumps(config), row_id))
                        self.wrote_url[row_id] = marker
                    time.sleep(0.001)
        except Exception as exc:  # surfaced by the test
            self.error = exc
        finally:
            connection.close()


class Watcher(threading.Thread):
    """Reads every secret again and again: each must decrypt under the keyring at every instant."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.ring = keyring(NEW_KEY, OLD_KEY)
        self.stop = threading.Event()
        self.scans = 0
        self.unreadable: list = []
        self.error = None

    def run(self):
        connection = psycopg2.connect(self.url)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self.stop.is_set():
                    cursor.execute("SELECT id, config->>'apiKey', config->>'webhookSecret' FROM app_installations")
                    for row_id, *values in cursor.fetchall():
                        for value in values:
                            if self.ring.inspect(value).key_index is None:
                                self.unreadable.append(row_id)
                    self.scans += 1
        except Exception as exc:
            self.error = exc
        finally:
            connection.close()


def under_new_key(url) -> tuple[int, int]:
    ring = keyring(NEW_KEY, OLD_KEY)
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT config->>'webhookSecret' FROM app_installations")
        kinds = [ring.inspect(v).kind for (v,) in cursor.fetchall()]
    connection.close()
    return kinds.count("current"), kinds.count("previous")


@pytest.mark.slow
def test_app_writes_during_a_killed_rotation_and_nothing_is_lost(pg_url, node_bin, tmp_path, run_cli):
    original = seed_stripe(pg_url, ROWS)
    registry_path = write_registry(tmp_path)
    new_secrets = list(zip([f"sk_app_new_{i}" for i in range(200)],
                           node_seal(node_bin, NEW_KEY, [f"sk_app_new_{i}" for i in range(200)])))
    old_secrets = list(zip([f"sk_app_old_{i}" for i in range(50)],
                           node_seal(node_bin, OLD_KEY, [f"sk_app_old_{i}" for i in range(50)], iv_length=12)))
    app = App(pg_url, sorted(original), new_secrets, old_secrets)
    watcher = Watcher(pg_url)
    app.start()
    watcher.start()
    try:
        # Run 1: killed with SIGKILL at a random instant after 30 committed pages.
        process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, pg_url, registry_path, NEW_KEY, OLD_KEY, str(PAGE)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        replanned = 0
        for line in process.stdout:
            if line.strip() == "finished":
                break
            page, replanned = map(int, line.split())
            app.page = page
            if page >= 30:
                break
        time.sleep(random.uniform(0, 0.03))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        app.page = None
        assert process.returncode == -signal.SIGKILL
        rotated, stale = under_new_key(pg_url)
        assert rotated >= 30 * PAGE - 50 and stale > 0, "the kill must land half-way"
        assert replanned > 0, "the app must have written between a page's read and its write"

        # Run 2: the command line, to the end, while the app keeps writing.
        second = run_cli("keys", "rotate", "--yes", "--json", "--batch-size", "100",
                         env=cli_env(pg_url, registry_path))
        assert second.returncode in (0, 1), second.stderr
        assert json.loads(second.stdout)["values"]["rotated"] > 0
    finally:
        app.stop.set()
        app.join(timeout=30)
    assert app.error is None and app.writes > 100

    # Run 3, with the app quiet: what the app put back under the old key meanwhile is rotated now.
    third = run_cli("keys", "rotate", "--yes", "--json", env=cli_env(pg_url, registry_path))
    assert third.returncode == 0, third.stderr
    watcher.stop.set()
    watcher.join(timeout=30)
    assert watcher.error is None and watcher.scans > 3
    assert watcher.unreadable == []

    connection = psycopg2.connect(pg_url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, config FROM app_installations ORDER BY id")
        final = dict(cursor.fetchall())
    connection.close()
    assert sorted(final) == sorted(original)
    for row_id, config in final.items():
        # Under the new key alone, to the app's newer value or else the original one.
        api_key = open_under(NEW_KEY, config["apiKey"]).decode()
        assert api_key == app.wrote_api_key.get(row_id, original[row_id]["apiKey"]), row_id
        assert open_under(NEW_KEY, config["webhookSecret"]).decode() == original[row_id]["webhookSecret"]
        assert config["region"] == original[row_id]["region"]
        # No app write lost: the last URL the app saved is there.
        assert config.get("webhookUrl") == app.wrote_url.get(row_id), row_id
