"""Scratch PostgreSQL databases with N installations, generated fast (for the benchmarks).

    name = create_database("bench_audit")            # a fresh database with the app's schema
    stats = fill(dsn(name), rows=1_000_000, keys=[current, previous], previous_share=0.1,
                 iv_length="mixed", plaintext_share=0.0)
    drop_database(name)

Rows go in with `COPY … FROM STDIN` from a generator (nothing is held in memory): about 1/3
as many users as installations, three apps per user (the (user_id, app_id) index is unique),
two encrypted secrets per installation (AES-256-GCM exactly as the app stores them, random
IVs of `iv_length` bytes: 12, 16, or "mixed" — every other row 12) plus a select and an email
field. `previous_share` of the rows are under the second key (a rotation under way).
`finding_every` plants one plaintext secret every N rows so the audit has a few findings to
carry, as a real database would; `plaintext_share` = 1.0 stores every apiKey in plaintext (a
bad deploy: one finding per row).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg2
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
APPS = ("stripe", "slack", "mailer")
PASSWORDS = ("apiKey", "webhookSecret")

# The registry the generated rows satisfy (all three apps share one shape).
REGISTRY = {
    app: {"name": app.title(), "category": "bench", "fields": [
        {"key": "apiKey", "label": "API key", "type": "password", "required": True},
        {"key": "webhookSecret", "label": "Webhook secret", "type": "password"},
        {"key": "region", "label": "Region", "type": "select", "required": True, "options": ["us", "eu"]},
        {"key": "accountEmail", "label": "Account email", "type": "email"},
    ]}
    for app in APPS
}


def dsn(name: str) -> str:
    base = dict(part.split("=", 1) for part in ADMIN_DSN.split())
    base["dbname"] = name
    return " ".join(f"{k}={v}" for k, v in base.items())


def url(name: str) -> str:
    base = dict(part.split("=", 1) for part in ADMIN_DSN.split())
    user = base.get("user", "postgres")
    return f"postgresql://{user}@{base.get('host', '127.0.0.1')}:{base.get('port', '5432')}/{name}"


def _admin():
    connection = psycopg2.connect(ADMIN_DSN)
    connection.autocommit = True
    return connection


def create_database(prefix: str = "bench") -> str:
    """A new database with the app's schema (the drizzle SQL of migrations/)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = _admin()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    connection = psycopg2.connect(dsn(name))
    with connection, connection.cursor() as cursor:
        for path in sorted((ROOT / "migrations").glob("*.sql")):
            for statement in path.read_text().split("--> statement-breakpoint"):
                if statement.strip():
                    cursor.execute(statement)
    connection.close()
    return name


def drop_database(name: str) -> None:
    admin = _admin()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


class _GeneratorFile:
    """A read()-able file over a generator of text chunks (what copy_expert reads from)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size=-1):
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks).encode("utf-8")
            except StopIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    readline = read


def _users(count: int, batch: int = 20_000):
    for start in range(1, count + 1, batch):
        yield "".join(f"User {i}\tuser{i}@example.com\tcustomer\n"
                      for i in range(start, min(start + batch, count + 1)))


def _iv_length(iv_length, row: int) -> int:
    if iv_length == "mixed":
        return 12 if row % 2 else 16
    if iv_length not in (12, 16):
        raise ValueError(f"iv_length must be 12, 16 or 'mixed', not {iv_length!r}")
    return iv_length


def _installations(rows: int, keys, previous_share: float, finding_every: int, batch: int = 10_000,
                   iv_length=16, plaintext_share: float = 0.0):
    """COPY text lines: user_id, app_id, status, config, installed_at, updated_at."""
    ciphers = [AESGCM(key) for key in keys]
    previous_every = int(1 / previous_share) if previous_share else 0
    plaintext_every = int(1 / plaintext_share) if plaintext_share else 0
    stamp = "2024-01-15 09:30:00\t2024-02-01 12:00:00"
    for start in range(0, rows, batch):
        stop = min(start + batch, rows)
        ivs = os.urandom(16 * 2 * (stop - start))
        lines = []
        for n, i in enumerate(range(start, stop)):
            cipher = ciphers[1] if previous_every and i % previous_every == 0 else ciphers[0]
            values = []
            size = _iv_length(iv_length, i)
            for k in range(2):
                iv = ivs[(2 * n + k) * 16:(2 * n + k) * 16 + size]
                sealed = cipher.encrypt(iv, f"sk_{i}_{k}_{iv[:6].hex()}".encode(), None)
                values.append(f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}")
            if (finding_every and i % finding_every == finding_every - 1) or (
                    plaintext_every and i % plaintext_every == 0):
                values[0] = f"sk_live_plaintext_{i}"  # a secret.plaintext finding
            user = i // len(APPS) + 1
            app = APPS[i % len(APPS)]
            region = "eu" if i & 1 else "us"
            lines.append(
                f'{user}\t{app}\tconfigured\t{{"apiKey": "{values[0]}", "region": "{region}", '
                f'"webhookSecret": "{values[1]}", "accountEmail": "ops{user}@example.com"}}\t{stamp}\n'
            )
        yield "".join(lines)


def fill(connection_dsn: str, rows: int, keys, *, previous_share: float = 0.0, finding_every: int = 1000,
         iv_length=16, plaintext_share: float = 0.0) -> dict:
    """Load `rows` installations (and rows/3 users) with COPY FROM, then VACUUM ANALYZE so
    every timed read afterwards starts from the same, hint-bit-set table."""
    users = -(-rows // len(APPS))
    connection = psycopg2.connect(connection_dsn)
    with connection, connection.cursor() as cursor:
        cursor.copy_expert("COPY users (name, email, role) FROM STDIN", _GeneratorFile(_users(users)))
        cursor.copy_expert(
            "COPY app_installations (user_id, app_id, status, config, installed_at, updated_at) FROM STDIN",
            _GeneratorFile(_installations(rows, keys, previous_share, finding_every,
                                          iv_length=iv_length, plaintext_share=plaintext_share)),
        )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (FREEZE, ANALYZE) users")
        cursor.execute("VACUUM (FREEZE, ANALYZE) app_installations")
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('app_installations'))")
        size = cursor.fetchone()[0]
    connection.close()
    return {"installations": rows, "users": users, "table_size": size,
            "planted_findings": rows // finding_every if finding_every else 0}


def write_registry(path: Path) -> Path:
    import json

    path.write_text(json.dumps(REGISTRY, indent=2))
    return path
