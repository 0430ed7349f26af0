"""The incremental audit against the full one: N installations, 1% of them changed.

    .venv/bin/python benchmarks/bench_incremental.py                 # 1,000,000 installations
    .venv/bin/python benchmarks/bench_incremental.py --rows 200000 --changed 0.01 --keep

Target (issue 14): the incremental audit takes at most 15% of the full audit's time (aim 5%).
Both run as an operator runs them — `python -m toolkit audit --format json` in a subprocess,
interpreter start and imports included — against one database and one audit store:

    1. a full audit, saved (the base); the store file is copied aside
    2. the app changes 1% of the rows: 80% of them updated (config rewritten), 10% deleted,
       10% inserted, one in ten new secrets reusing an untouched row's IV
    3. `--runs` times, alternating: the base store put back, `--incremental` (saving, as cron
       runs it), timed; then a full audit of the same state (`--no-save`), timed
    4. every run's findings must equal the full audit's; the ratio is best / best

Wall times on a shared machine vary by 30% run to run: the script prints the CPU seconds of
each audit process (children included) and the load average before and after. Bytecode is
cached (in the scratch directory) for every run after the base one, as an installed toolkit's
is, even where the environment sets PYTHONDONTWRITEBYTECODE.
`--database NAME` reuses a scratch database kept by `--keep` (no refill: the base audit and
the app's changes run again on top of it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _datagen  # noqa: E402

ROOT = _datagen.ROOT
CURRENT_KEY = "5f" * 32


def run_audit(env, *args) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of the audit and its children, the JSON report)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "toolkit", "audit", "--format", "json", "--no-progress", *args],
                            capture_output=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1):
        raise SystemExit(f"audit failed: {result.stderr.decode()}")
    if result.stderr:
        print(f"  stderr: {result.stderr.decode().strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(result.stdout)


def change(dsn: str, share: float, seed: int = 14) -> dict:
    """The app's writes: updates, deletes and inserts touching `share` of the rows."""
    rng = random.Random(seed)
    cipher = AESGCM(bytes.fromhex(CURRENT_KEY))
    connection = psycopg2.connect(dsn)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id), count(*) FROM app_installations")
        low, high, count = cursor.fetchone()
        touched = int(count * share)
        ids = rng.sample(range(low, high + 1), touched)
        updates, deletes = ids[:touched * 8 // 10], ids[touched * 8 // 10:touched * 9 // 10]
        inserts = touched - len(updates) - len(deletes)
        cursor.execute("SELECT config->>'apiKey' FROM app_installations WHERE id = ANY(%s)",
                       (rng.sample(range(low, high + 1), max(1, inserts // 10)),))
        reused = [row[0].split(":")[0] for row in cursor.fetchall() if row[0] and row[0].count(":") == 2]

        def secret(text, iv=None):
            iv = bytes.fromhex(iv) if iv else os.urandom(16)
            sealed = cipher.encrypt(iv, text.encode(), None)
            return f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"

        for n, row_id in enumerate(updates):
            value = f"sk_changed_{n}" if n % 50 == 0 else secret(f"sk_changed_{n}")  # some plaintext
            cursor.execute("UPDATE app_installations SET config = config || jsonb_build_object('apiKey', %s::text),"
                           " updated_at = now() WHERE id = %s", (value, row_id))
        cursor.execute("DELETE FROM app_installations WHERE id = ANY(%s)", (deletes,))
        cursor.execute("INSERT INTO users (email) SELECT 'bench-new-' || %s || '-' || g || '@example.com'"
                       " FROM generate_series(1, %s) g RETURNING id", (seed, inserts))
        new_users = [row[0] for row in cursor.fetchall()]
        for n, user_id in enumerate(new_users):
            iv = reused[n // 10] if n % 10 == 0 and n // 10 < len(reused) else None
            config = {"apiKey": secret(f"sk_new_{n}", iv), "webhookSecret": secret(f"wh_new_{n}"),
                      "region": "eu", "accountEmail": f"new{n}@example.com"}
            cursor.execute("INSERT INTO app_installations (user_id, app_id, status, config) VALUES (%s, 'stripe',"
                           " 'configured', %s)", (user_id, json.dumps(config)))
    connection.close()
    return {"updated": len(updates), "deleted": len(deletes), "inserted": inserts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--runs", type=int, default=3, help="alternating incremental/full runs; best counts")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--database", metavar="NAME", help="reuse this kept scratch database (no refill)")
    args = parser.parse_args()

    name = args.database or _datagen.create_database("bench_incremental")
    state = tempfile.TemporaryDirectory()
    try:
        if not args.database:
            print(f"filling {name} with {args.rows:,} installations …", flush=True)
            print(" ", _datagen.fill(_datagen.dsn(name), args.rows, [bytes.fromhex(CURRENT_KEY)]))
        registry = _datagen.write_registry(Path(state.name) / "registry.json")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLKIT_", "DATABASE_URL", "ENCRYPTION_KEY"))}
        # Bytecode cached as an installed toolkit has it (the base audit writes it, in the scratch
        # directory): with PYTHONDONTWRITEBYTECODE every run would compile ~40 modules (~50 ms).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(DATABASE_URL=_datagen.url(name), ENCRYPTION_KEY=CURRENT_KEY, TOOLKIT_REGISTRY=str(registry),
                   TOOLKIT_STATE_DIR=state.name, PYTHONPATH=str(ROOT),
                   PYTHONPYCACHEPREFIX=str(Path(state.name) / "pycache"))
        store = Path(state.name) / "audits.sqlite3"
        saved = Path(state.name) / "base.sqlite3"
        base_wall, base_cpu, base = run_audit(env)
        shutil.copyfile(store, saved)  # the last connection closed: the WAL is checkpointed into the file
        print(f"base full audit (saved): {base_wall:.2f} s wall, {base_cpu:.2f} s CPU, "
              f"{base['summary']['findings']:,} findings; store {store.stat().st_size / 1e6:.1f} MB")
        seed = 14 if not args.database else int(time.time())  # a reused database has seed 14's users
        print("  the app changes the rows:", change(_datagen.dsn(name), args.changed, seed))
        load_before = os.getloadavg()
        times = {"incremental": [], "full": []}
        equal = True
        for run in range(args.runs):
            for suffix in ("-wal", "-shm"):
                Path(f"{store}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(saved, store)
            inc_wall, inc_cpu, incremental = run_audit(env, "--incremental")
            full_wall, full_cpu, full = run_audit(env, "--no-save")
            times["incremental"].append((inc_wall, inc_cpu))
            times["full"].append((full_wall, full_cpu))
            same = incremental["findings"] == full["findings"]
            equal = equal and same and incremental["summary"]["mode"] == "incremental"
            print(f"run {run + 1}: incremental {inc_wall:.2f} s wall, {inc_cpu:.2f} s CPU (mode "
                  f"{incremental['summary']['mode']}, rows read {incremental['summary']['rows_read']:,}); "
                  f"full {full_wall:.2f} s wall, {full_cpu:.2f} s CPU (rows read {full['summary']['rows_read']:,}); "
                  f"findings equal: {same} ({full['summary']['findings']:,})", flush=True)
        load_after = os.getloadavg()
        inc_wall, inc_cpu = (min(t[i] for t in times["incremental"]) for i in (0, 1))
        full_wall, full_cpu = (min(t[i] for t in times["full"]) for i in (0, 1))
        print(f"best of {args.runs}: incremental {inc_wall:.2f} s wall, {inc_cpu:.2f} s CPU; "
              f"full {full_wall:.2f} s wall, {full_cpu:.2f} s CPU")
        print(f"ratio incremental / full: {inc_wall / full_wall:.1%} wall, {inc_cpu / full_cpu:.1%} CPU "
              f"(target <= 15%, aim 5%)")
        print(f"findings equal in every run: {equal}")
        print(f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
              f"after {' '.join(f'{x:.2f}' for x in load_after)}")
        print(f"audit store after an incremental run: {store.stat().st_size / 1e6:.1f} MB")
        if not equal:
            raise SystemExit(1)
    finally:
        state.cleanup()
        if not args.keep and not args.database:
            _datagen.drop_database(name)
        elif not args.database:
            print(f"kept {name}: --database {name} reuses it")


if __name__ == "__main__":
    main()
