"""The database: WAL file, schema version, round trips, imports that are all or nothing, device
rows under a version check, and the checkpointer."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_engine import Database, Engine, Geofence, Settings, StorageError, Store, ValidationFailed
from geo_engine.db import MIGRATIONS
from geo_engine.io.places import Dataset
from geo_engine.io.shapes import geofence_from_geometry
from geo_engine.snapshot import Places

from .conftest import DEMO


def snapshot(location):
    """Every store and geofence row, read through a connection of its own."""
    db = Database(location)
    try:
        return (db.sql.query("SELECT * FROM stores ORDER BY id"),
                db.sql.query("SELECT * FROM geofences ORDER BY id"))
    finally:
        db.close()


def test_a_file_database_is_wal_and_versioned(db_path):
    db = Database(db_path)
    assert db.sql.journal_mode == "wal"
    assert db.sql.schema_version == len(MIGRATIONS)
    db.close()
    assert Database(db_path).sql.schema_version == len(MIGRATIONS)  # reopening migrates nothing


def test_a_newer_schema_is_refused(db_path):
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StorageError, match="schema version 99, newer than this geo-engine knows"):
        Database(db_path)


def test_import_round_trips_and_reimport_updates(database):
    engine = Engine(Settings(db=database))
    counts, data = engine.import_files([DEMO])
    assert counts == {"stores": len(data.stores), "geofences": len(data.geofences)}
    stores = {s.id: s for s in engine.db.places.stores()}
    for s in data.stores:
        assert stores[s.id] == s
    fences = {g.id: g for g in Places.load(engine.db.places).geofences}
    for g in data.geofences:
        assert fences[g.id] == g
        if not g.is_circle:
            assert [p.wkb for p in fences[g.id].parts] == [p.wkb for p in g.parts]
    # a re-import of the same id replaces it
    moved = Dataset(stores=[Store(id=data.stores[0].id, lat=1.0, lon=2.0, name="moved")])
    engine.db.places.import_dataset(moved.stores, moved.geofences)
    assert engine.db.places.stores([data.stores[0].id])[0].name == "moved"
    assert engine.db.places.counts()["stores"] == len(data.stores)


def test_a_failed_validation_changes_nothing(database, tmp_path):
    engine = Engine(Settings(db=database))
    engine.import_files([DEMO])
    before = snapshot(database)
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
         "properties": {"kind": "store", "id": "fc-ferry", "name": "overwritten?"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
         "properties": {"id": "bad", "store_id": "fc-ferry"}}]}))
    with pytest.raises(ValidationFailed, match="needs radius_m"):
        engine.import_files([bad])
    assert snapshot(database) == before


def test_a_write_refused_midway_rolls_back_the_whole_import(database):
    db = Database(database)
    db.places.import_dataset([Store(id="keep", lat=0, lon=0)], [])
    before = snapshot(database)
    # the stores go in first; the geofence's store does not exist, so SQLite refuses it
    stores = [Store(id="new", lat=1, lon=1), Store(id="keep", lat=5, lon=5)]
    fences = [Geofence(id="g", store_id="missing", lat=0, lon=0, radius_m=10)]
    with pytest.raises(StorageError, match="refused and nothing was changed"):
        db.places.import_dataset(stores, fences)
    assert snapshot(database) == before


def test_store_arrays_are_sorted_by_id(database):
    """By code point, as Python sorts (the store index relies on it), on either backend."""
    db = Database(database)
    ids = ["b", "a", "ä", "B", "a-1", "a_1", "A1", "10", "9"]
    db.places.import_dataset([Store(id=i, lat=0, lon=0) for i in ids], [])
    assert db.places.store_arrays().ids.tolist() == sorted(ids)
    assert [s.id for s in db.places.store_page(4, "a")] == sorted(i for i in ids if i > "a")[:4]


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(text.filter(bool), st.floats(-90, 90), st.floats(-180, 180), text,
                          st.lists(text, max_size=3)), max_size=8, unique_by=lambda t: t[0]),
       st.floats(1, 50_000))
def test_stores_and_fences_round_trip(database, stores, radius):
    fresh_db = Database(database)
    data = Dataset(stores=[Store(id=i, lat=la, lon=lo, name=n, tags=tuple(t))
                           for i, la, lo, n, t in stores])
    data.geofences = [Geofence(id=f"g-{s.id}", store_id=s.id, lat=s.lat, lon=s.lon, radius_m=radius)
                      for s in data.stores]
    if data.stores:
        ring = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
        data.geofences.append(geofence_from_geometry({"type": "Polygon", "coordinates": [ring]},
                                                     id="poly", store_id=data.stores[0].id))
    fresh_db.places.import_dataset(data.stores, data.geofences)
    assert fresh_db.places.stores() == sorted(data.stores, key=lambda s: s.id)
    assert Places.load(fresh_db.places).geofences == sorted(data.geofences, key=lambda g: g.id)
    with fresh_db.atomic() as tx:
        tx.execute("DELETE FROM geofences")
        tx.execute("DELETE FROM stores")
    fresh_db.close()


def test_store_time_zones_are_derived_offline_when_absent(tmp_path, database):
    path = tmp_path / "tz.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"kind": "store", "id": "suva"},
         "geometry": {"type": "Point", "coordinates": [178.44, -18.14]}},
        {"type": "Feature", "properties": {"kind": "store", "id": "tromso"},
         "geometry": {"type": "Point", "coordinates": [18.96, 69.65]}},
        {"type": "Feature", "properties": {"kind": "store", "id": "given", "timezone": "Asia/Tokyo"},
         "geometry": {"type": "Point", "coordinates": [18.96, 69.65]}}]}))
    engine = Engine(Settings(db=database))
    engine.import_files([path])
    assert {s.id: s.timezone for s in engine.db.places.stores()} == {
        "suva": "Pacific/Fiji", "tromso": "Europe/Oslo", "given": "Asia/Tokyo"}


def test_version_3_device_state_moves_into_the_device_row(db_path):
    """A database written by schema 3 (visits in their own table) keeps every open visit and
    the push history the caps need."""
    with sqlite3.connect(db_path) as conn:
        for k, migration in enumerate(MIGRATIONS[:3], 1):
            conn.executescript(migration)
            conn.execute(f"PRAGMA user_version = {k}")
        conn.executescript("""
            INSERT INTO devices (device_id, last_ts, opted_out) VALUES ('a', 50, 0), ('b', 60, 1);
            INSERT INTO visits VALUES ('a', 'g1', 's1', 5.5, 0), ('a', 'g2', 's2', 6, 1);
            INSERT INTO pushes (device_id, campaign_id, store_id, ts, local_day) VALUES
                ('a', 'c1', 's1', 10, '2026-11-01'), ('a', 'c1', 's1', 12, '2026-11-01'),
                ('a', 'c1', 's2', 30, '2026-11-02'), ('a', 'c2', 's1', 40, '2026-11-02');
        """)
    db = Database(db_path)
    assert db.sql.schema_version == len(MIGRATIONS)
    with db.atomic() as conn:
        a, b = db.devices.load(conn, "a"), db.devices.load(conn, "b")
    assert {f: (v.store_id, v.entered_ts, v.dwell_done) for f, v in a.visits.items()} == {
        "g1": ("s1", 5.5, False), "g2": ("s2", 6.0, True)}
    assert a.history == {"c1": [3, 30.0, {"2026-11-01": 2, "2026-11-02": 1}],
                         "c2": [1, 40.0, {"2026-11-02": 1}]}
    assert a.last_ts == 50 and b.opted_out and b.visits == {} and b.history == {}


def test_a_device_write_is_refused_when_the_row_moved_on(database):
    from geo_engine.db.devices import new_version
    from geo_engine.model import DeviceState

    db = Database(database)
    with db.atomic() as conn:
        assert db.devices.save(conn, DeviceState("d", last_ts=1.0, version=new_version()), None)
        assert not db.devices.save(conn, DeviceState("d", version=new_version()), None)  # exists
        first = db.devices.load(conn, "d", cached=False)
        assert db.devices.save(conn, DeviceState("d", last_ts=2.0, version=new_version()), first.version)
        # a second writer holding the first version is refused, and nothing changes
        assert not db.devices.save(conn, DeviceState("d", last_ts=3.0, version=new_version()),
                                  first.version)
        assert db.devices.load(conn, "d", cached=False).last_ts == 2.0
        assert db.devices.load(conn, "d").last_ts == 2.0  # the copy kept is the row written


def test_the_checkpointer_copies_the_wal_into_the_database_file(db_path):
    import time

    db = Database(db_path)
    db.devices.set_consent("before", True)

    def in_main_file():  # the database file alone, WAL ignored
        conn = sqlite3.connect(f"file:{db_path}?immutable=1", uri=True)
        try:
            return {r[0] for r in conn.execute("SELECT device_id FROM devices")}
        except sqlite3.DatabaseError:  # not even the schema there yet, or a page being copied
            return set()  # in (immutable=1 reads the file without locks): look again
        finally:
            conn.close()
    assert "before" not in in_main_file()  # a small commit stays in the WAL by itself
    db.sql.start_checkpointer(every_s=0.05)
    db.devices.set_consent("after", True)
    deadline = time.monotonic() + 10
    while {"before", "after"} - in_main_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {"before", "after"} <= in_main_file()
    db.close()
    assert not db.sql.checkpointing


def test_the_wal_file_starts_over_under_steady_writes(db_path):
    """A passive checkpoint never catches up with a writer that never pauses, and SQLite only
    starts the WAL over once one has: the checkpointer makes it catch up past a size."""
    import os
    import threading
    import time

    db = Database(db_path)
    with db.atomic() as conn:
        conn.execute("CREATE TABLE filler (k INTEGER PRIMARY KEY, blob BLOB)")
    limit = 1 << 20
    db.sql.start_checkpointer(every_s=0.02, restart_bytes=limit)
    wal = f"{db_path}-wal"
    largest = 0
    stop = threading.Event()

    def watch():
        nonlocal largest
        while not stop.is_set():
            largest = max(largest, os.path.getsize(wal) if os.path.exists(wal) else 0)
            time.sleep(0.005)
    watcher = threading.Thread(target=watch)
    watcher.start()
    written = 0
    k = 0
    while written < 80 * limit:  # 80 MB in small commits, no pause between them
        with db.atomic() as conn:
            conn.execute("INSERT OR REPLACE INTO filler VALUES (?, randomblob(8000))", (k % 500,))
        written += 8192
        k += 1
    stop.set()
    watcher.join()
    db.close()
    assert 0 < largest < 24 * limit, f"the WAL grew to {largest / 1e6:.1f} MB"
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM filler").fetchone()[0] == 500
    conn.close()


def test_both_backends_hold_the_same_tables_and_columns(pg_cluster, tmp_path):
    """The PostgreSQL schema is SQLite's, step for step: the same tables with the same columns,
    at the same version."""
    from geo_engine.db import PG_MIGRATIONS

    lite, pg = Database(tmp_path / "s.db"), Database(pg_cluster.new_database("schema_same"))
    tables = [t for (t,) in lite.sql.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
    lite_cols = {t: {r[1] for r in lite.sql.query(f"PRAGMA table_info({t})")} for t in tables}
    pg_cols: dict[str, set] = {}
    for t, c in pg.sql.query("SELECT table_name, column_name FROM information_schema.columns "
                             "WHERE table_schema = 'public' AND table_name <> 'schema_version'"):
        pg_cols.setdefault(t, set()).add(c)
    assert pg_cols == lite_cols
    assert len(PG_MIGRATIONS) == len(MIGRATIONS) == pg.sql.schema_version == lite.sql.schema_version
    pg.close()
    lite.close()


def test_a_newer_postgres_schema_is_refused_and_instances_starting_together_migrate_once(pg_cluster):
    import threading

    url = pg_cluster.new_database("migrate_once")
    opened, failed = [], []

    def start():
        try:
            opened.append(Database(url))
        except Exception as exc:  # noqa: BLE001 - the test reports whatever it was
            failed.append(exc)
    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed and len(opened) == 4
    versions = opened[0].sql.query("SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in versions] == list(range(1, len(MIGRATIONS) + 1))  # each step once
    with opened[0].atomic() as tx:
        tx.execute("INSERT INTO schema_version (version) VALUES (99)")
    for db in opened:
        db.close()
    with pytest.raises(StorageError, match="schema version 99, newer than this geo-engine knows"):
        Database(url)


def test_the_migrate_command_makes_the_schema_and_says_its_version(database):
    import subprocess
    import sys

    for _ in range(2):  # the second run finds it made
        r = subprocess.run([sys.executable, "-m", "geo_engine", "migrate", "--db", database],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith(f"schema version {len(MIGRATIONS)}")
    assert Database(database).sql.schema_version == len(MIGRATIONS)
