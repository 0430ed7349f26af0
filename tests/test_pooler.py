"""The model layer through PgBouncer in transaction mode, as the app's runtime sees Supabase.

The fixture's pool holds 2 server connections per database, so several client connections
share them: whatever one client leaves on a server connection, the next one inherits.
"""

from __future__ import annotations

import threading

import psycopg2
import pytest

from toolkit import db
from toolkit.db import AppInstallation, User
from toolkit.errors import DatabaseError

pytestmark = [pytest.mark.postgres, pytest.mark.pgbouncer]

CLIENTS = 6


@pytest.fixture
def pooled(pg_url, pgbouncer_url):
    database = db.open_postgres(pgbouncer_url(pg_url))
    assert database.url.is_pooler
    with database.bind_ctx(db.MODELS):
        yield database
    database.close()


def backend_pid(database) -> int:
    return database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def test_models_work_from_many_threads_sharing_few_server_connections(pooled):
    pids, errors = set(), []
    barrier = threading.Barrier(CLIENTS)

    def client(n):
        try:
            # One connection per thread (Peewee's rule), opened and closed by the thread.
            with pooled.connection_context():
                barrier.wait()  # all clients connected at once
                for round_ in range(5):
                    with pooled.atomic():
                        pids.add(backend_pid(pooled))
                        user = User.create(email=f"c{n}-{round_}@example.com", name=f"Client {n}")
                        AppInstallation.create(user=user, app_id="stripe", config={"region": "eu"})
                    with db.read_only(pooled):
                        pids.add(backend_pid(pooled))
                        found = (AppInstallation.select(AppInstallation, User).join(User)
                                 .where(User.email == f"c{n}-{round_}@example.com").get())
                        assert found.config == {"region": "eu"} and found.user.name == f"Client {n}"
                    updated = (AppInstallation.update(config={"region": "us"}, status="configured")
                               .where(AppInstallation.id == found.id).execute())
                    assert updated == 1
                    assert AppInstallation.get_by_id(found.id).status == "configured"
                    if round_ % 2:
                        # The foreign key cascades: the installation goes with its user.
                        assert User.delete().where(User.id == user.id).execute() == 1
        except Exception as exc:  # noqa: BLE001 — collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with pooled.connection_context():
        assert User.select().count() == CLIENTS * 3
        assert AppInstallation.select().count() == CLIENTS * 3
        assert AppInstallation.select().where(AppInstallation.status == "configured").count() == CLIENTS * 3
    # 6 clients, at most 2 server connections between them: they were shared.
    assert 1 <= len(pids) <= 2


def test_sequential_clients_share_one_server_connection_and_read_only_leaves_nothing(pooled, pg_url, pgbouncer_url):
    a = db.open_postgres(pgbouncer_url(pg_url))
    b = db.open_postgres(pgbouncer_url(pg_url))
    with a.bind_ctx(db.MODELS):
        with db.read_only(a):
            pid_a = backend_pid(a)
            assert a.execute_sql("SHOW transaction_read_only").fetchone() == ("on",)
        with pytest.raises(DatabaseError, match="read-only"), db.translate_errors(a), db.read_only(a):
            User.create(email="nope@example.com")
    with b.bind_ctx(db.MODELS):
        # PgBouncer hands the most recently used server connection to the next client.
        assert backend_pid(b) == pid_a
        assert b.execute_sql("SHOW transaction_read_only").fetchone() == ("off",)
        User.create(email="writes@example.com")  # read_only() left nothing behind
        assert User.select().count() == 1
    a.close()
    b.close()


def test_a_session_set_would_leak_to_another_client(pg_url, pgbouncer_url):
    # Why the toolkit never issues a session SET (DESIGN.md §2): this is what the pool does.
    first = psycopg2.connect(pgbouncer_url(pg_url))
    first.autocommit = True
    second = psycopg2.connect(pgbouncer_url(pg_url))
    second.autocommit = True
    with first.cursor() as cursor:
        cursor.execute("SET application_name = 'leaked-from-first'")
    with second.cursor() as cursor:
        cursor.execute("SHOW application_name")
        assert cursor.fetchone() == ("leaked-from-first",)
    first.close()
    second.close()


def test_startup_options_are_refused_like_supabases_pooler(pg_url, pgbouncer_url):
    with pytest.raises(psycopg2.OperationalError, match="unsupported startup parameter"):
        psycopg2.connect(pgbouncer_url(pg_url), options="-c statement_timeout=5s")
    # The toolkit's own connection sends none, so it connects.
    database = db.open_postgres(pgbouncer_url(pg_url))
    db.check_connection(database)
    database.close()


def test_pgbouncer_flag_in_the_url_is_accepted_and_recognised(pg_url, pgbouncer_url):
    # Supabase's documented pooler URL carries ?pgbouncer=true, which libpq would refuse.
    database = db.open_postgres(pgbouncer_url(pg_url, query="pgbouncer=true"))
    assert database.url.is_pooler
    with database.bind_ctx(db.MODELS), db.read_only(database):
        assert User.select().count() == 0
    database.close()
