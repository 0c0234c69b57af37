"""Group commit on the event loop: the writes of one loop turn share a transaction, each answer
waits for it, and a write that fails is rolled back alone."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

import pytest

from geo_engine import Database, StorageError
from geo_engine.commits import GroupCommit
from geo_engine.model import Ping

from .test_pings import SF, T0, at, campaign, engine  # noqa: F401 - engine is a fixture


def _rows(path):
    """The rows of t as another connection sees them: what is committed."""
    other = Database(path)
    try:
        return [r[0] for r in other.sql.query("SELECT k FROM t ORDER BY k")]
    finally:
        other.close()


def test_writes_of_one_turn_share_one_commit_and_answer_after_it(database):
    db = Database(database)
    with db.atomic() as tx:
        tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    group = GroupCommit(db.sql)
    seen_before_commit = []

    def insert(k):
        def work(tx):
            tx.execute("INSERT INTO t (k) VALUES (?)", (k,))
            seen_before_commit.append(_rows(database))  # another connection: nothing committed yet
            return k
        return work

    async def main():
        return await asyncio.gather(*(group.write(insert(k)) for k in range(20)))
    assert asyncio.run(main()) == list(range(20))
    assert all(seen == [] for seen in seen_before_commit)
    assert _rows(database) == list(range(20))
    assert (group.groups, group.writes) == (1, 20)


def test_on_postgresql_a_failed_write_takes_its_group_down_and_the_others_run_again(pg_cluster):
    """PostgreSQL's writes run on a thread of their own, one group after another, with no
    savepoint a write (a round trip each): a write that fails in the database rolls its group
    back; the writes that had joined it are told to run again (nothing of them kept), the
    failing one gets its error, the next ones a new group; a write that stops before writing
    (Unwritten) leaves its group as it was; the answers wait for their group's commit."""
    import threading

    from geo_engine.commits import ThreadedGroupCommit, Unwritten
    from geo_engine.errors import WriteContention

    url = pg_cluster.new_database("group_down")
    db = Database(url)
    with db.atomic() as tx:
        tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    group = ThreadedGroupCommit(db.sql, writers=1)  # one thread: the five writes one group
    gate = threading.Event()
    threads = set()

    def insert(k, fail=None):
        def work(tx):
            threads.add(threading.current_thread().name)
            gate.wait(10)  # the five writes are queued before the first runs: one group
            if fail == "before":
                raise Unwritten()
            tx.execute("INSERT INTO t (k) VALUES (?)", (k,))
            if fail == "sql":
                tx.execute("SELECT no_such_column FROM t")
            return k
        return work

    async def main():
        writes = [asyncio.ensure_future(group.write(w)) for w in (
            insert(1), insert(2, "before"), insert(3), insert(4, "sql"), insert(5))]
        await asyncio.sleep(0.2)
        gate.set()
        return await asyncio.gather(*writes, return_exceptions=True)
    got = asyncio.run(main())
    assert threads == {"group-commit"}  # not the event loop's thread
    assert isinstance(got[0], WriteContention) and isinstance(got[2], WriteContention)
    assert isinstance(got[1], Unwritten)
    assert isinstance(got[3], StorageError) and "no_such_column" in str(got[3])
    assert got[4] == 5
    assert _rows(url) == [5]  # 1 and 3 were rolled back with the group, to be run again
    assert (group.groups, group.writes) == (1, 1)
    db.close()


def test_on_postgresql_held_writes_go_at_the_next_read_or_the_commit(pg_cluster):
    """A write given to ``Tx.later`` is not sent when given (a duplicate key fails only at the
    next statement that reads), a read sees every write held before it, and a held write that
    must change one row and changes none fails the commit: nothing of the transaction is kept."""
    import psycopg

    from geo_engine.errors import WriteContention

    url = pg_cluster.new_database("held_writes")
    db = Database(url)
    with db.atomic() as tx:
        tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        tx.execute("INSERT INTO t (k, v) VALUES (1, 0)")
    with pytest.raises(psycopg.errors.UniqueViolation), db.atomic() as tx:
        tx.later("INSERT INTO t (k, v) VALUES (?, ?)", (1, 5))  # a duplicate, not sent yet
        assert tx.held == 1
        tx.execute("SELECT 1")  # sent first: the duplicate fails here
    with db.atomic() as tx:
        for k in range(2, 40):  # two texts, interleaved
            tx.later("INSERT INTO t (k, v) VALUES (?, ?)", (k, k))
            tx.later("UPDATE t SET v = v + 1 WHERE k = ?", (k - 1,), one_row=True)
        assert tx.held == 76
        # every insert, then every update (1 to 38 each one up): all seen by the read
        assert tx.execute("SELECT count(*), sum(v) FROM t").fetchone() == (39, sum(range(2, 40)) + 38)
        assert tx.held == 0
    with pytest.raises(WriteContention, match="1 of 2 rows changed"), db.atomic() as tx:
        tx.later("INSERT INTO t (k, v) VALUES (?, ?)", (100, 0))
        tx.later("UPDATE t SET v = 0 WHERE k = ? AND v = ?", (1, 1), one_row=True)
        tx.later("UPDATE t SET v = 0 WHERE k = ? AND v = ?", (2, 99), one_row=True)  # not at 99
    assert db.sql.query("SELECT count(*), sum(v) FROM t") == [(39, sum(range(2, 40)) + 38)]  # undone
    db.close()


def test_on_postgresql_a_group_reads_and_locks_its_devices_rows_first(pg_cluster):
    """A server's group on PostgreSQL reads and locks (in one query) the rows of the devices its
    pings name before any of them runs: a load is that row (even when this process kept an older
    copy), a save of a stale version is refused with nothing sent, a good one is held for the
    commit; a write that fails after holding one takes its group down."""
    import threading

    import psycopg

    from geo_engine.commits import ThreadedGroupCommit, Unwritten
    from geo_engine.db.devices import new_version
    from geo_engine.errors import WriteContention
    from geo_engine.model import DeviceState

    url = pg_cluster.new_database("group_rows")
    db = Database(url)
    with db.atomic() as tx:
        for d in ("a", "b"):
            assert db.devices.save(tx, DeviceState(d, last_ts=1.0, version=new_version()), None)
    kept_b = db.devices.kept("b")
    other = Database(url)  # another instance moves b on
    with other.atomic() as tx:
        stored_b = other.devices.load(tx, "b", cached=False)
        assert other.devices.save(tx, DeviceState("b", last_ts=2.0, version=new_version()),
                                  stored_b.version)
    prepared = []

    def prepare(tx, keys):
        prepared.append(list(keys))
        db.devices.lock(tx, keys)
    group = ThreadedGroupCommit(db.sql, writers=1, prepare=prepare)
    gate = threading.Event()
    seen = {}

    def ping(device_id, fail=False):
        def work(tx):
            gate.wait(10)
            with psycopg.connect(url, autocommit=True) as conn:  # locked since the group began
                conn.execute("SET lock_timeout = 50")
                try:
                    conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))
                    seen[device_id, "locked"] = False
                except psycopg.errors.LockNotAvailable:
                    seen[device_id, "locked"] = True
            state = db.devices.load(tx, device_id)
            seen[device_id] = state
            held = tx.held
            stale = DeviceState(device_id, last_ts=9.0, version=new_version())
            assert not db.devices.save(tx, stale, 12345)  # not the row's version: refused
            assert tx.held == held
            after = DeviceState(device_id, last_ts=(state.last_ts or 0.0) + 10, version=new_version())
            assert db.devices.save(tx, after, state.version)
            assert tx.held == held + 1  # held for the commit, not sent
            if fail:
                raise Unwritten()  # too late to leave the group as it was
            return after.version
        return work

    async def main(*works):
        futures = [asyncio.ensure_future(group.write(w, key)) for w, key in works]
        await asyncio.sleep(0.2)
        gate.set()
        return await asyncio.gather(*futures, return_exceptions=True)
    got = asyncio.run(main((ping("a"), "a"), (ping("b"), "b"), (ping("new"), "new")))
    assert prepared == [["a", "b", "new"]]  # one group, its rows read at once
    assert all(seen[d, "locked"] for d in ("a", "b"))
    assert seen["b"].last_ts == 2.0 and kept_b.last_ts == 1.0  # the stored row, not the copy
    assert seen["new"].version is None
    assert db.sql.query("SELECT device_id, last_ts, version FROM devices ORDER BY device_id") == [
        ("a", 11.0, got[0]), ("b", 12.0, got[1]), ("new", 10.0, got[2])]
    gate.clear()
    got = asyncio.run(main((ping("a"), "a"), (ping("b", fail=True), "b"), (ping("c"), "c")))
    assert isinstance(got[0], WriteContention) and isinstance(got[1], Unwritten)
    assert isinstance(got[2], int)
    assert db.sql.query("SELECT device_id, last_ts FROM devices ORDER BY device_id") == [
        ("a", 11.0), ("b", 12.0), ("c", 10.0), ("new", 10.0)]  # a and b as they were
    other.close()
    db.close()


def test_a_failing_write_is_rolled_back_alone(db_path):
    db = Database(db_path)
    with db.atomic() as tx:
        tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    group = GroupCommit(db.sql)

    def insert(k, fail=False):
        def work(tx):
            tx.execute("INSERT INTO t (k) VALUES (?)", (k,))
            if fail:
                raise ValueError(f"write {k} fails after its insert")
        return work

    async def main():
        return await asyncio.gather(group.write(insert(1)), group.write(insert(2, fail=True)),
                                    group.write(insert(3)), return_exceptions=True)
    results = asyncio.run(main())
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ValueError)
    assert _rows(db_path) == [1, 3]


def test_a_refused_commit_fails_every_answer_of_its_group(db_path):
    db = Database(db_path)
    with db.atomic() as tx:
        tx.execute("CREATE TABLE parent (k INTEGER PRIMARY KEY)")
        tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(k) "
                   "DEFERRABLE INITIALLY DEFERRED)")
    group = GroupCommit(db.sql)

    async def main():
        # a deferred foreign key is checked at COMMIT: the whole group is refused there
        return await asyncio.gather(
            group.write(lambda tx: tx.execute("INSERT INTO t (k, p) VALUES (1, NULL)")),
            group.write(lambda tx: tx.execute("INSERT INTO t (k, p) VALUES (2, 99)")),
            return_exceptions=True)
    results = asyncio.run(main())
    assert all(isinstance(r, StorageError) for r in results)
    assert _rows(db_path) == []
    with db.atomic() as tx:  # and the connection is free for the next write
        tx.execute("INSERT INTO t (k) VALUES (5)")
    assert _rows(db_path) == [5]


@pytest.mark.parametrize("serving", [False, True])
def test_concurrent_pings_of_one_device_take_a_cap_once(engine, serving):  # noqa: F811
    if serving:
        engine.start_serving()
    engine.put_campaign("c1", campaign(caps={"per_device_total": 1}))

    async def main():
        away = [engine.handle_ping_async(Ping(f"d{k}", *at(2000), 10, T0)) for k in range(10)]
        await asyncio.gather(*away)
        walk_in = [engine.handle_ping_async(Ping(f"d{k}", *SF, 10, T0 + timedelta(minutes=10)))
                   for k in range(10) for _ in range(3)]  # three pings of each device at once
        return await asyncio.gather(*walk_in)
    answers = asyncio.run(main())
    offered = [a for a in answers if a.decision.chosen is not None]
    assert len(offered) == 10  # one per device, though each sent three pings at once
    assert sorted(p[0] for p in engine.db.devices.pushes()) == [f"d{k}" for k in range(10)]
    assert sum(len(a.events) for a in answers) == 10  # one enter each


def test_synchronous_says_what_a_commit_survives(db_path, tmp_path):
    assert Database(db_path).sql.query("PRAGMA synchronous")[0][0] == 2  # FULL by default
    assert Database(tmp_path / "n.db", "normal").sql.query("PRAGMA synchronous")[0][0] == 1


def test_a_group_waiting_for_another_process_lock_does_not_block_the_loop(db_path):
    db = Database(db_path)
    with db.atomic() as tx:
        tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    other = sqlite3.connect(db_path, isolation_level=None)  # another process's connection
    other.execute("BEGIN IMMEDIATE")  # it holds the write lock
    group = GroupCommit(db.sql)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    async def main():
        beat = asyncio.get_running_loop().create_task(ticker())
        asyncio.get_running_loop().call_later(0.3, lambda: other.execute("COMMIT"))
        await group.write(lambda tx: tx.execute("INSERT INTO t (k) VALUES (1)"))
        beat.cancel()
    asyncio.run(main())
    assert _rows(db_path) == [1]
    assert ticks > 50  # the loop kept running while the write waited for the lock
