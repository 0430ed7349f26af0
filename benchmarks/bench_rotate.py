"""Key rotation of N installations (two secrets each, all under the previous key), timed beside
the write floor `UPDATE app_installations SET config = config || '{}'` of the same rows, in one run.

    .venv/bin/python benchmarks/bench_rotate.py                 # 1,000,000 installations
    .venv/bin/python benchmarks/bench_rotate.py --rows 200000 --batch-size 5000 --workers 2

Target (issue 8): rotation <= 3 x the UPDATE. Creates a scratch database on the local
PostgreSQL with `_datagen` (dropped at the end unless --keep) and checks afterwards that every
secret decrypts under the new key alone to the plaintext it was generated with.

Both timed writes start from the same table state: a freshly loaded table is packed full,
so its first UPDATE must put every new row version on a new page, while after one UPDATE
and a VACUUM every page has room for HOT updates — about twice as cheap. So: an untimed
warm-up UPDATE + VACUUM, the timed UPDATE, VACUUM, the timed rotation.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _datagen  # noqa: E402
from toolkit.keys import rotation  # noqa: E402
from toolkit.crypto import Keyring  # noqa: E402
from toolkit.db import open_postgres  # noqa: E402
from toolkit.registry import parse_registry  # noqa: E402

# _datagen seals f"sk_{row index}_{field number}_{first 6 IV bytes as hex}".
_PLAINTEXT = re.compile(r"sk_(\d+)_([01])_[0-9a-f]{12}")


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
    """Every secret decrypts under the current key alone, to the plaintext it was generated with."""
    current_only = Keyring.from_materials([keyring.current.material])
    checked = 0
    with connection.cursor(name="verify") as cursor:  # a named cursor: 1M rows are not held in memory
        cursor.itersize = 20_000
        cursor.execute("SELECT id, config->>'apiKey', config->>'webhookSecret' FROM app_installations ORDER BY id")
        for row_id, *values in cursor:
            for field, value in enumerate(values):
                status = current_only.inspect(value)
                match = _PLAINTEXT.fullmatch(status.plaintext.decode()) if status.kind == "current" else None
                assert match and int(match[1]) == row_id - 1 and int(match[2]) == field, (row_id, field, status.kind)
            checked += 1
    connection.commit()
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
    keyring = Keyring.from_materials([new_key, old_key])
    registry = parse_registry(_datagen.REGISTRY)

    name = _datagen.create_database("bench_rotate")
    print(f"database {name}: {args.rows:,} installations, 2 secrets each, all under the previous key", file=sys.stderr)
    try:
        started = time.perf_counter()
        _datagen.fill(_datagen.dsn(name), args.rows, [old_key], finding_every=0)
        print(f"filled in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        connection = psycopg2.connect(_datagen.dsn(name))
        timed_update(connection)  # warm-up: see the module docstring
        vacuum(connection)

        update_seconds = timed_update(connection)
        vacuum(connection)

        report = rotation.rotate(open_postgres(_datagen.url(name)), registry, keyring,
                                 batch_size=args.batch_size, workers=args.workers)
        rotate_seconds = report.result.elapsed
        assert report.rotated == 2 * args.rows and report.complete, report.as_dict()

        if not args.no_verify:
            verify(connection, keyring, args.rows)
        connection.close()
    finally:
        if not args.keep:
            _datagen.drop_database(name)

    ratio = rotate_seconds / update_seconds
    workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    print(f"installations                           {args.rows:>10,}")
    print(f"UPDATE config = config || '{{}}'           {update_seconds:>8.2f} s")
    print(f"rotation (batch {args.batch_size}, {workers})         {rotate_seconds:>8.2f} s   "
          f"({report.rotated:,} values re-encrypted)")
    print(f"ratio rotation / UPDATE                 {ratio:>8.2f}     (target <= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
