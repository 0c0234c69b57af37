"""The live feed's reader (``EventFollower``): every event once, those that commit late too."""

from __future__ import annotations

import psycopg
import pytest

from geo_engine import Database
from geo_engine.db.logs import EventFollower

INSERT = "INSERT INTO events (device_id, ts, type, geofence_id, store_id) VALUES (?, ?, 'enter', 'g', 's')"


def _add(db, device: str, event_id: int | None = None) -> None:
    with db.atomic() as tx:
        if event_id is None:
            tx.execute(INSERT, (device, 1.0))
        else:
            tx.execute("INSERT INTO events (id, device_id, ts, type, geofence_id, store_id) "
                       "VALUES (?, ?, 1.0, 'enter', 'g', 's')", (event_id, device))


@pytest.fixture
def db(database):
    d = Database(database)
    yield d
    d.close()


def test_each_event_is_read_once_and_a_jumped_over_id_that_comes_later_is_read_then(db):
    follower = EventFollower(db.logs, 0, wait_s=10)
    _add(db, "a", 1)
    _add(db, "c", 3)  # 2 not there (yet)
    assert [r[1] for r in follower.read(now=100.0)] == ["a", "c"]
    assert follower.read(now=101.0) == []
    _add(db, "b", 2)  # it comes after all
    _add(db, "d", 4)
    assert [r[1] for r in follower.read(now=102.0)] == ["b", "d"]
    assert follower.read(now=103.0) == []
    _add(db, "f", 6)  # 5 never comes (a rolled-back transaction's id)
    assert [r[1] for r in follower.read(now=104.0)] == ["f"]
    follower.read(now=200.0)  # forgotten after wait_s
    _add(db, "e", 5)
    assert follower.read(now=201.0) == []


def test_on_postgresql_an_event_committed_after_a_higher_id_was_read_is_not_lost(pg_cluster):
    """(SQLite's one writer commits in id order: there the case cannot happen.)"""
    database = pg_cluster.new_database("feed_late")
    db = Database(database)
    try:
        follower = EventFollower(db.logs, db.logs.latest_event_id())
        slow = psycopg.connect(database)  # a transaction that takes its id first, commits last
        slow.execute("INSERT INTO events (device_id, ts, type, geofence_id, store_id) "
                     "VALUES ('slow', 1.0, 'enter', 'g', 's')")
        _add(db, "fast")
        assert [r[1] for r in follower.read(now=1.0)] == ["fast"]
        slow.commit()
        slow.close()
        assert [r[1] for r in follower.read(now=2.0)] == ["slow"]
        assert follower.read(now=3.0) == []
    finally:
        db.close()
