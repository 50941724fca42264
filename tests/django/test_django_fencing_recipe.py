"""The docs/django.md recipe that rejects stale writers, against a real PostgreSQL with
concurrent writers: the row keeps the largest fencing token that wrote it, and a holder whose
lock expired while it was paused writes nothing once a later holder has written.

The recipe's statement is the one ``Invoice.objects.filter(pk=pk, fence__lt=token)
.update(total=..., fence=token)`` sends. The database is the PostgreSQL server of the development
and CI machines (127.0.0.1:5432, database ``test``, user ``postgres``); elsewhere point
``REDSYNC_TEST_POSTGRES`` at one (a libpq connection string). Each test uses its own table,
dropped at teardown.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.sql
import pytest

from redsync_core import Redsync
from redsync_core.testing import RedisServer

DSN = os.environ.get("REDSYNC_TEST_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def q(statement: str, *tables: str) -> Any:
    """Return ``statement`` with each ``{}`` replaced by a quoted table name."""
    return psycopg.sql.SQL(statement).format(*(psycopg.sql.Identifier(t) for t in tables))


@pytest.fixture
def table() -> Iterator[str]:
    name = f"fencing_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(q("CREATE TABLE {} (id int PRIMARY KEY, total int, fence bigint)", name))
        conn.execute(q("CREATE TABLE {} (seq serial PRIMARY KEY, fence bigint)", name + "_log"))
        conn.execute(q("INSERT INTO {} VALUES (1, 0, 0)", name))
    try:
        yield name
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(q("DROP TABLE IF EXISTS {}, {}", name, name + "_log"))


def write(conn: Any, table: str, token: int, total: int) -> bool:
    """The recipe: write only with a token larger than the one the row was written with."""
    with conn.transaction():
        cur = conn.execute(
            q("UPDATE {} SET total = %s, fence = %s WHERE id = %s AND fence < %s", table),
            (total, token, 1, token),
        )
        if cur.rowcount == 1:
            conn.execute(q("INSERT INTO {} (fence) VALUES (%s)", table + "_log"), (token,))
        return bool(cur.rowcount == 1)


def test_concurrent_fenced_writers_never_go_back(
    redis_nodes: list[RedisServer], table: str
) -> None:
    accepted: list[int] = []
    rejected: list[int] = []
    granted: list[int] = []
    lock = threading.Lock()

    def worker(slow: bool) -> None:
        with (
            Redsync([s.url for s in redis_nodes]) as rs,
            psycopg.connect(DSN, autocommit=True) as conn,
        ):
            for i in range(6):
                # A short lease, so that the slow writer's pause outlives it; the fan-outs get
                # half of it (the default 5 %, 7.5 ms, is a node error on a loaded box).
                m = rs.new_mutex(
                    "invoice:1",
                    fencing=True,
                    expiry=0.15,
                    timeout_factor=0.5,
                    tries=None,
                    retry_delay=0.005,
                )
                m.lock()
                assert m.token is not None
                with lock:
                    granted.append(m.token)
                if slow and i % 2 == 0:
                    time.sleep(0.4)  # paused past the expiry: another holder gets in meanwhile
                ok = write(conn, table, m.token, m.token * 10)
                with lock:
                    (accepted if ok else rejected).append(m.token)
                m.unlock()

    threads = [threading.Thread(target=worker, args=(n == 0,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    with psycopg.connect(DSN) as conn:
        log = [
            row[0] for row in conn.execute(q("SELECT fence FROM {} ORDER BY seq", table + "_log"))
        ]
        ((total, fence),) = conn.execute(q("SELECT total, fence FROM {}", table)).fetchall()
    assert len(granted) == 24
    assert len(set(granted)) == 24
    assert log == sorted(set(log))  # in commit order, every accepted token is larger
    assert fence == max(log)
    assert total == fence * 10
    assert rejected  # the paused holder's late writes were refused
    assert sorted(accepted + rejected) == sorted(granted)


def test_a_paused_holder_writes_nothing_after_the_next_holder(
    redis_nodes: list[RedisServer], table: str
) -> None:
    with (
        Redsync([s.url for s in redis_nodes]) as rs,
        psycopg.connect(DSN, autocommit=True) as conn,
    ):
        stale = rs.new_mutex("invoice:1", fencing=True, expiry=0.1)
        stale.lock()
        time.sleep(0.15)  # its lease ran out while it was "paused"
        fresh = rs.new_mutex("invoice:1", fencing=True, expiry=5)
        fresh.lock()
        assert stale.token is not None
        assert fresh.token is not None
        assert write(conn, table, fresh.token, 2)
        assert not write(conn, table, stale.token, 1)  # the stale writer wakes: refused
        fresh.unlock()
        ((total,),) = conn.execute(q("SELECT total FROM {}", table)).fetchall()
    assert total == 2
