"""Key rotation of N installations (two secrets each, all under the previous key), timed beside
the write floor `UPDATE app_installations SET config = config || '{}'` of the same rows, in one run.

    .venv/bin/python benchmarks/bench_rotate.py                 # 1,000,000 installations
    .venv/bin/python benchmarks/bench_rotate.py --rows 200000 --batch-size 5000 --workers 2

Target (issue 8): rotation <= 3 x the UPDATE. Creates a scratch database on the local
PostgreSQL (dropped at the end unless --keep), fills it with COPY, VACUUMs between the steps
so both timed writes start from the same table state, and checks afterwards that every secret
decrypts under the new key to its original plaintext.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from toolkit import rotation  # noqa: E402
from toolkit.crypto import Keyring  # noqa: E402
from toolkit.registry import parse_registry  # noqa: E402

ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
REGISTRY = {
    "stripe": {"name": "Stripe", "fields": [
        {"key": "apiKey", "label": "Secret key", "type": "password", "required": True},
        {"key": "webhookSecret", "label": "Webhook secret", "type": "password"},
        {"key": "region", "label": "Region", "type": "select", "options": ["us", "eu"], "required": True},
    ]},
}


def make_database() -> str:
    name = f"bench_rotate_{secrets.token_hex(4)}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    connection = psycopg2.connect(_dsn(name))
    with connection, connection.cursor() as cursor:
        for path in sorted((ROOT / "migrations").glob("*.sql")):
            for statement in path.read_text().split("--> statement-breakpoint"):
                if statement.strip():
                    cursor.execute(statement)
    connection.close()
    return name


def drop_database(name: str) -> None:
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _dsn(name: str) -> str:
    return ADMIN_DSN.replace("dbname=postgres", f"dbname={name}")


def fill(connection, rows: int, old: Keyring) -> None:
    """N users and N stripe installations, both secrets sealed under `old` (COPY, in chunks)."""
    import orjson

    chunk = 100_000
    with connection.cursor() as cursor:
        for start in range(1, rows + 1, chunk):
            stop = min(rows + 1, start + chunk)
            users = io.StringIO("".join(f"{i}\tuser{i}@example.com\n" for i in range(start, stop)))
            cursor.copy_expert("COPY users (id, email) FROM STDIN", users)
            lines = []
            for i in range(start, stop):
                config = {
                    "apiKey": old.encrypt(f"sk_live_{i:012d}"),
                    "webhookSecret": old.encrypt(f"whsec_{i:010d}"),
                    "region": "eu" if i % 3 else "us",
                }
                lines.append(f"{i}\t{i}\tstripe\tconfigured\t{orjson.dumps(config).decode()}\n")
            cursor.copy_expert(
                "COPY app_installations (id, user_id, app_id, status, config) FROM STDIN", io.StringIO("".join(lines))
            )
        cursor.execute("SELECT setval('app_installations_id_seq', %s)", (rows,))
    connection.commit()


def vacuum(connection) -> None:
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE app_installations")
    connection.autocommit = False


def timed_update(connection) -> float:
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("UPDATE app_installations SET config = config || '{}'")
        connection.commit()
        return time.perf_counter() - started


def verify(connection, keyring: Keyring, rows: int) -> None:
    """Every secret decrypts under the current key alone, to the plaintext it started with."""
    current_only = Keyring.from_materials([keyring.current.material])
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, config->>'apiKey', config->>'webhookSecret' FROM app_installations")
        checked = 0
        for row_id, api_key, webhook in cursor:
            assert current_only.decrypt(api_key).secret.reveal() == f"sk_live_{row_id:012d}", row_id
            assert current_only.decrypt(webhook).secret.reveal() == f"whsec_{row_id:010d}", row_id
            checked += 1
    assert checked == rows, (checked, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=rotation.DEFAULT_BATCH_SIZE)
    parser.add_argument("--workers", type=int, default=rotation.DEFAULT_WORKERS)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()

    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    old = Keyring.from_materials([old_key])
    keyring = Keyring.from_materials([new_key, old_key])
    registry = parse_registry(REGISTRY)

    name = make_database()
    print(f"database {name}: {args.rows:,} installations, 2 secrets each", file=sys.stderr)
    try:
        connection = psycopg2.connect(_dsn(name))
        started = time.perf_counter()
        fill(connection, args.rows, old)
        vacuum(connection)
        print(f"filled in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        update_seconds = timed_update(connection)
        vacuum(connection)

        from toolkit.db import open_postgres

        database = open_postgres(f"postgresql://postgres@127.0.0.1:5432/{name}")
        report = rotation.rotate(database, registry, keyring, batch_size=args.batch_size, workers=args.workers)
        rotate_seconds = report.result.elapsed
        assert report.rotated == 2 * args.rows and report.complete, report.as_dict()

        if not args.no_verify:
            verify(connection, keyring, args.rows)
        connection.close()
    finally:
        if not args.keep:
            drop_database(name)

    ratio = rotate_seconds / update_seconds
    print(f"rows                              {args.rows:>12,}")
    print(f"UPDATE config = config || '{{}}'     {update_seconds:>10.2f} s")
    print(f"toolkit keys rotate (batch {args.batch_size}, {args.workers} worker{'s' if args.workers > 1 else ''})"
          f"{'':<1}{rotate_seconds:>8.2f} s   ({report.rotated:,} values)")
    print(f"ratio rotate / UPDATE             {ratio:>10.2f}   (target <= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
