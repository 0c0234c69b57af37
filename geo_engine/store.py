"""The SQLite database: schema and migrations, transactions, import, and reading back.

One file in WAL mode (readers never block the writer), foreign keys on, and every write in an
``atomic()`` block that commits whole or not at all (as sqlite-utils' ``atomic`` does). The
schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` lists the steps from one
version to the next, so a later release upgrades an older file in place.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from .devices import DeviceState, Event, Visit
from .errors import StorageError
from .io.places import Dataset, build_geofences
from .model import Geofence, Store

__all__ = ["MIGRATIONS", "Database", "StoreArrays", "device_from_row", "new_version"]


def new_version() -> int:
    """A device row's version: random, so a row deleted and made again never repeats one."""
    return random.getrandbits(62) + 1

MIGRATIONS: list[str] = [
    # version 1: stores and their geofences
    """
    CREATE TABLE stores (
        id TEXT PRIMARY KEY,
        lat REAL NOT NULL,
        lon REAL NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '[]',
        timezone TEXT,
        opening_hours TEXT,
        address TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT '{}',
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE geofences (
        id TEXT PRIMARY KEY,
        store_id TEXT NOT NULL REFERENCES stores(id),
        name TEXT NOT NULL DEFAULT '',
        lat REAL,
        lon REAL,
        radius_m REAL,
        geometry TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        enabled INTEGER NOT NULL DEFAULT 1,
        expires_at TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        CHECK ((radius_m IS NULL) <> (geometry IS NULL))
    );
    CREATE INDEX geofences_store ON geofences(store_id);
    """,
    # version 2: campaigns, device state, the event and push log, replies, API keys
    """
    CREATE TABLE campaigns (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        last_ts REAL, last_lat REAL, last_lon REAL, last_accuracy_m REAL,
        last_offer_ts REAL,
        opted_out INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE visits (
        device_id TEXT NOT NULL,
        geofence_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        entered_ts REAL NOT NULL,
        dwell_done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, geofence_id)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        ts REAL NOT NULL,
        type TEXT NOT NULL,
        geofence_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        confidence TEXT,
        duration_s REAL,
        ping_id TEXT
    );
    CREATE INDEX events_device ON events(device_id, ts);
    CREATE TABLE pushes (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        geofence_id TEXT,
        ts REAL NOT NULL,
        local_day TEXT NOT NULL,
        distance_m REAL,
        ping_id TEXT
    );
    CREATE INDEX pushes_device_campaign ON pushes(device_id, campaign_id, ts);
    CREATE TABLE campaign_spend (campaign_id TEXT PRIMARY KEY, pushes INTEGER NOT NULL);
    CREATE TABLE replies (
        device_id TEXT NOT NULL,
        ping_id TEXT NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (device_id, ping_id)
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('admin', 'publishable')),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        revoked_at TEXT
    );
    """,
    # version 3: each address geocoded once per geocoder (lat NULL: the geocoder found nothing)
    """
    CREATE TABLE geocodes (
        geocoder TEXT NOT NULL,
        address TEXT NOT NULL,
        lat REAL,
        lon REAL,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (geocoder, address)
    );
    """,
    # version 4: a device's whole state in its one row, so a ping reads and writes one row (or,
    # with the state cached in the process, only writes it). ``version`` is a random number
    # drawn at every write: a worker whose cached copy is stale sees its conditional write
    # refused, re-reads and decides again. visits: geofence id -> [store id, entered ts,
    # dwell done]; history: campaign id -> [pushes, last push ts, {store's local day: pushes}]
    # (the push log stays the record; history is what the caps need of it). A trigger keeps
    # each campaign's spend with its push log (one statement a push fewer).
    """
    ALTER TABLE devices ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN visits TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE devices ADD COLUMN history TEXT NOT NULL DEFAULT '{}';
    UPDATE devices SET visits = coalesce((
        SELECT json_group_object(geofence_id, json_array(store_id, entered_ts, dwell_done))
        FROM visits v WHERE v.device_id = devices.device_id), '{}');
    UPDATE devices SET history = coalesce((
        SELECT json_group_object(campaign_id, json_array(total, last, json(days))) FROM (
            SELECT campaign_id, sum(n) AS total, max(last) AS last,
                   json_group_object(local_day, n) AS days FROM (
                SELECT campaign_id, local_day, count(*) AS n, max(ts) AS last FROM pushes p
                WHERE p.device_id = devices.device_id GROUP BY campaign_id, local_day)
            GROUP BY campaign_id)), '{}');
    DROP TABLE visits;
    CREATE TRIGGER pushes_spend AFTER INSERT ON pushes BEGIN
        INSERT INTO campaign_spend (campaign_id, pushes) VALUES (NEW.campaign_id, 1)
        ON CONFLICT(campaign_id) DO UPDATE SET pushes = pushes + 1;
    END;
    """,
    # version 5: change counters, so each worker process on one file notices what another one
    # changed: 'places' (stores and geofences: rebuild the indexes), 'campaigns'
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('places', 0), ('campaigns', 0);
    """,
]


def _statements(script: str) -> Iterator[str]:
    """The statements of a script, one by one (a trigger's body holds semicolons of its own).

    ``executescript`` would commit first, and a migration must be one transaction.
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


def device_from_row(row: tuple) -> DeviceState:
    """A device's state from its row (``Database.DEVICE_COLUMNS`` order), as read or written."""
    visits = {fid: Visit(fid, sid, entered, bool(done))
              for fid, (sid, entered, done) in orjson.loads(row[8]).items()}
    return DeviceState(row[0], row[2], row[3], row[4], row[5], row[6], bool(row[7]), visits,
                       row[1], orjson.loads(row[9]))


class StoreArrays:
    """Stores as parallel arrays (what the index is built from), sorted by id."""

    def __init__(self, ids: np.ndarray, lats: np.ndarray, lons: np.ndarray, names: np.ndarray):
        self.ids, self.lats, self.lons, self.names = ids, lats, lons, names

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_stores(cls, stores: list[Store]) -> StoreArrays:
        ordered = sorted(stores, key=lambda s: s.id)
        return cls(np.array([s.id for s in ordered], dtype=object),
                   np.array([s.lat for s in ordered], dtype=float),
                   np.array([s.lon for s in ordered], dtype=float),
                   np.array([s.name for s in ordered], dtype=object))


class Database:
    """A geo-engine database file (created and migrated on open).

    Parameters
    ----------
    path : str or Path
        The SQLite file; ``":memory:"`` for a private in-memory database (tests).
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL with NORMAL: a commit is in the WAL file before it returns, so a killed process
            # loses nothing committed; only a power cut can lose the last commits.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=10000")
            # the device rows and indexes a ping touches stay in memory: 64 MB of page cache,
            # and reads through a memory map rather than a read() call each
            self._conn.execute("PRAGMA cache_size=-65536")
            self._conn.execute("PRAGMA mmap_size=268435456")
            self._checkpointer: threading.Thread | None = None
            self._stop = threading.Event()
            self._lock = threading.RLock()
            self._migrate()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the database {self.path}: {exc}") from None

    # --- plumbing --------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self._query("PRAGMA user_version")[0][0]

    @property
    def journal_mode(self) -> str:
        return self._query("PRAGMA journal_mode")[0][0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise StorageError(f"the database {self.path} has schema version {version}, newer than "
                               f"this geo-engine knows ({len(MIGRATIONS)}); upgrade geo-engine")
        for target in range(version + 1, len(MIGRATIONS) + 1):
            with self.atomic() as conn:
                for statement in _statements(MIGRATIONS[target - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Read outside a write transaction, whole, under the connection's lock.

        The connection is shared by threads: a read left running while another thread begins
        a write would make that BEGIN an upgrade of a stale snapshot once another process has
        written, which SQLite refuses at once ("database is locked") instead of waiting.
        """
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """Run a block in one write transaction: committed whole, or rolled back on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def start_checkpointer(self, every_s: float = 0.2, restart_bytes: int = 64 << 20) -> None:
        """Copy the WAL into the database from a thread of its own, not in a ping's commit.

        SQLite checkpoints in whichever commit crosses 1,000 WAL pages: measured here that one
        commit in a few hundred took milliseconds (bench_ping p99). A long-running process calls
        this; commits then only append. A far larger automatic limit stays as a safety net.

        Under steady writes a checkpoint never catches up with the last commit, and SQLite only
        starts the WAL file over when one has: measured in bench_ping, the WAL grew to 200 MB in
        10,000 pings. Past ``restart_bytes`` the thread therefore holds this process's writers
        back for one short RESTART checkpoint (the frames written since the last pass, and a
        sync: 10 to 12 ms here); the next commit starts the file over. At bench_ping's rate that
        is one ping in a few thousand; 8, 32 and 256 MB were tried and differed by less than the
        machine's noise.
        """
        if self._checkpointer is not None or self.path == ":memory:":
            return
        self._conn.execute("PRAGMA wal_autocheckpoint=50000")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        page = conn.execute("PRAGMA page_size").fetchone()[0]

        def run() -> None:
            try:
                while not self._stop.wait(every_s):
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames * page > restart_bytes:
                        with self._lock:  # no commit of ours in between: the WAL catches up
                            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.Error:  # the safety net takes over; nothing is lost either way
                pass
            finally:
                conn.close()
        self._checkpointer = threading.Thread(target=run, name="wal-checkpoint", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self._conn.close()

    # --- writing -----------------------------------------------------------------------------

    def import_dataset(self, data: Dataset) -> dict[str, int]:
        """Insert or update every store and geofence in one transaction; return the counts.

        A re-import of an id replaces it. Raises :class:`StorageError` (and changes nothing)
        when the database refuses the write.
        """
        store_rows = [(s.id, s.lat, s.lon, s.name, json.dumps(list(s.tags)), s.timezone,
                       json.dumps(s.opening_hours) if s.opening_hours is not None else None,
                       s.address, json.dumps(s.metadata)) for s in data.stores]
        fence_rows = [(g.id, g.store_id, g.name, g.lat, g.lon, g.radius_m,
                       json.dumps(g.geometry) if g.geometry is not None else None,
                       json.dumps(list(g.tags)), int(g.enabled),
                       g.expires_at.isoformat() if g.expires_at else None,
                       json.dumps(g.metadata)) for g in data.geofences]
        try:
            with self.atomic() as conn:
                self._changed(conn, "places")
                conn.executemany(
                    """INSERT INTO stores (id, lat, lon, name, tags, timezone, opening_hours, address,
                                           metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(id) DO UPDATE SET lat=excluded.lat, lon=excluded.lon,
                         name=excluded.name, tags=excluded.tags, timezone=excluded.timezone,
                         opening_hours=excluded.opening_hours, address=excluded.address,
                         metadata=excluded.metadata, updated_at=excluded.updated_at""", store_rows)
                conn.executemany(
                    """INSERT INTO geofences (id, store_id, name, lat, lon, radius_m, geometry, tags,
                                              enabled, expires_at, metadata)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(id) DO UPDATE SET store_id=excluded.store_id, name=excluded.name,
                         lat=excluded.lat, lon=excluded.lon, radius_m=excluded.radius_m,
                         geometry=excluded.geometry, tags=excluded.tags, enabled=excluded.enabled,
                         expires_at=excluded.expires_at, metadata=excluded.metadata,
                         updated_at=excluded.updated_at""", fence_rows)
        except sqlite3.Error as exc:
            raise StorageError(f"the import into {self.path} was refused and nothing was changed: "
                               f"{exc}") from None
        return {"stores": len(store_rows), "geofences": len(fence_rows)}

    # --- reading -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Return how many stores and geofences the database holds."""
        q = self._query
        return {"stores": q("SELECT count(*) FROM stores")[0][0],
                "geofences": q("SELECT count(*) FROM geofences")[0][0]}

    def store_ids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT id FROM stores")}

    def store_arrays(self) -> StoreArrays:
        """Return every store's id, lat, lon and name as arrays sorted by id (one query)."""
        rows = self._query("SELECT id, lat, lon, name FROM stores ORDER BY id")
        if not rows:
            return StoreArrays(np.array([], dtype=object), np.array([]), np.array([]),
                               np.array([], dtype=object))
        ids, lats, lons, names = zip(*rows, strict=True)
        # SQLite sorts TEXT by bytes (BINARY); Python by code point: the same order for UTF-8.
        return StoreArrays(np.array(ids, dtype=object), np.array(lats, dtype=float),
                           np.array(lons, dtype=float), np.array(names, dtype=object))

    def stores(self, ids: list[str] | None = None) -> list[Store]:
        """Return stores (all, or those with these ids), ordered by id."""
        sql = ("SELECT id, lat, lon, name, tags, timezone, opening_hours, address, metadata "
               "FROM stores")
        args: list[str] = []
        if ids is not None:
            sql += f" WHERE id IN ({','.join('?' * len(ids))})"
            args = list(ids)
        rows = self._query(sql + " ORDER BY id", args)
        return [Store(id=r[0], lat=r[1], lon=r[2], name=r[3], tags=tuple(json.loads(r[4])),
                      timezone=r[5], opening_hours=json.loads(r[6]) if r[6] else None,
                      address=r[7], metadata=json.loads(r[8])) for r in rows]

    def geofences(self) -> list[Geofence]:
        """Return every geofence, ordered by id, polygons rebuilt with their parts and edges."""
        rows = self._query(
            "SELECT id, store_id, name, lat, lon, radius_m, geometry, tags, enabled, expires_at, "
            "metadata FROM geofences ORDER BY id")
        circles, polygons = [], []
        for r in rows:
            fields = dict(id=r[0], store_id=r[1], name=r[2], tags=tuple(json.loads(r[7])),
                          enabled=bool(r[8]),
                          expires_at=datetime.fromisoformat(r[9]) if r[9] else None,
                          metadata=json.loads(r[10]))
            if r[5] is not None:
                circles.append(Geofence(lat=r[3], lon=r[4], radius_m=r[5], **fields))
            else:
                polygons.append((json.loads(r[6]), fields))
        # every polygon in one batch: parts and edges for 100k polygons in one array pass
        return sorted(circles + build_geofences(polygons), key=lambda g: g.id)

    # --- campaigns ---------------------------------------------------------------------------

    def campaign_bodies(self) -> list[dict]:
        """Every campaign object as stored, ordered by id."""
        return [json.loads(r[0]) for r in
                self._query("SELECT body FROM campaigns ORDER BY id")]

    def generations(self) -> dict[str, int]:
        """The change counters: ``places`` (stores, geofences) and ``campaigns``."""
        return dict(self._query("SELECT key, value FROM meta"))

    @staticmethod
    def _changed(conn: sqlite3.Connection, what: str) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = ?", (what,))

    def put_campaign(self, campaign_id: str, body: dict) -> None:
        with self.atomic() as conn:
            self._changed(conn, "campaigns")
            conn.execute("INSERT INTO campaigns (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE "
                         "SET body=excluded.body, updated_at=excluded.updated_at",
                         (campaign_id, json.dumps(body)))

    def delete_campaign(self, campaign_id: str) -> bool:
        with self.atomic() as conn:
            self._changed(conn, "campaigns")
            return conn.execute("DELETE FROM campaigns WHERE id = ?", (campaign_id,)).rowcount > 0

    def delete_geofence(self, geofence_id: str) -> bool:
        with self.atomic() as conn:
            self._changed(conn, "places")
            # close the visits open in it, without an exit (the geofence is gone, not left)
            rows = conn.execute("SELECT device_id, visits FROM devices WHERE instr(visits, ?)",
                                (orjson.dumps(geofence_id).decode(),)).fetchall()
            for device_id, text in rows:
                visits = orjson.loads(text)
                if visits.pop(geofence_id, None) is not None:
                    conn.execute("UPDATE devices SET visits = ?, version = ? WHERE device_id = ?",
                                 (orjson.dumps(visits), new_version(), device_id))
            return conn.execute("DELETE FROM geofences WHERE id = ?", (geofence_id,)).rowcount > 0

    # --- devices (call inside atomic(): reads and writes of one ping are one transaction) ----

    DEVICE_COLUMNS = ("device_id, version, last_ts, last_lat, last_lon, last_accuracy_m, "
                       "last_offer_ts, opted_out, visits, history")

    def load_device(self, conn: sqlite3.Connection, device_id: str) -> DeviceState:
        """The device's state as stored (``version`` None when there is no row)."""
        row = conn.execute(f"SELECT {self.DEVICE_COLUMNS} FROM devices WHERE device_id = ?",
                           (device_id,)).fetchone()
        return DeviceState(device_id) if row is None else device_from_row(row)

    def recent_device_rows(self, limit: int) -> list[tuple]:
        """The rows of the ``limit`` devices seen last, for a process to start with them in
        memory (``device_from_row`` makes a row a state)."""
        return self._query(f"SELECT {self.DEVICE_COLUMNS} FROM devices "
                           "ORDER BY last_ts DESC LIMIT ?", (limit,))

    def save_device(self, conn: sqlite3.Connection, state: DeviceState,
                    expected: int | None) -> tuple | None:
        """Write ``state`` (with its new ``version``) if the row is still at ``expected``, and
        return the row as written (``DEVICE_COLUMNS`` order).

        Return None, writing nothing, when another writer changed the row since it was read
        (or created it, when ``expected`` is None): the caller re-reads and decides again.
        """
        visits = orjson.dumps({fid: [v.store_id, v.entered_ts, int(v.dwell_done)]
                               for fid, v in state.visits.items()})
        history = orjson.dumps(state.history)
        values = (state.version, state.last_ts, state.last_lat, state.last_lon,
                  state.last_accuracy_m, state.last_offer_ts, int(state.opted_out), visits,
                  history, state.device_id)
        if expected is None:
            cur = conn.execute(
                "INSERT INTO devices (version, last_ts, last_lat, last_lon, last_accuracy_m, "
                "last_offer_ts, opted_out, visits, history, device_id) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device_id) DO NOTHING", values)
        else:
            cur = conn.execute(
                "UPDATE devices SET version = ?, last_ts = ?, last_lat = ?, last_lon = ?, "
                "last_accuracy_m = ?, last_offer_ts = ?, opted_out = ?, visits = ?, history = ? "
                "WHERE device_id = ? AND version = ?", (*values, expected))
        if cur.rowcount != 1:
            return None
        return (state.device_id, *values[:-1])

    def record_events(self, conn: sqlite3.Connection, device_id: str, ts: float,
                      events: list[Event], ping_id: str | None) -> None:
        if not events:
            return
        conn.executemany(
            "INSERT INTO events (device_id, ts, type, geofence_id, store_id, confidence, "
            "duration_s, ping_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(device_id, ts, str(e.type), e.geofence_id, e.store_id,
              str(e.confidence) if e.confidence else None, e.duration_s, ping_id) for e in events])

    def campaign_pushes(self, conn: sqlite3.Connection, campaign_id: str) -> int:
        """Pushes of a campaign to anyone so far (its budget's spend), read in the transaction."""
        row = conn.execute("SELECT pushes FROM campaign_spend WHERE campaign_id = ?",
                           (campaign_id,)).fetchone()
        return row[0] if row else 0

    def record_push(self, conn: sqlite3.Connection, device_id: str, campaign_id: str,
                    store_id: str, geofence_id: str | None, ts: float, local_day: str,
                    distance_m: float, ping_id: str | None) -> None:
        conn.execute("INSERT INTO pushes (device_id, campaign_id, store_id, geofence_id, ts, "
                     "local_day, distance_m, ping_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (device_id, campaign_id, store_id, geofence_id, ts, local_day, distance_m,
                      ping_id))

    def campaign_spend(self) -> dict[str, int]:
        """Pushes so far of every campaign that has any (its budget's spend)."""
        return dict(self._query("SELECT campaign_id, pushes FROM campaign_spend"))

    def reply(self, device_id: str, ping_id: str) -> bytes | None:
        rows = self._query("SELECT body FROM replies WHERE device_id = ? AND ping_id = ?",
                           (device_id, ping_id))
        return rows[0][0] if rows else None

    def save_reply(self, conn: sqlite3.Connection, device_id: str, ping_id: str, body: bytes) -> None:
        conn.execute("INSERT OR IGNORE INTO replies (device_id, ping_id, body) VALUES (?, ?, ?)",
                     (device_id, ping_id, body))

    def set_consent(self, device_id: str, location_offers: bool) -> None:
        with self.atomic() as conn:
            conn.execute("INSERT INTO devices (device_id, opted_out, version) VALUES (?, ?, ?) "
                         "ON CONFLICT(device_id) DO UPDATE SET opted_out = excluded.opted_out, "
                         "version = excluded.version",
                         (device_id, int(not location_offers), new_version()))

    def forget_device(self, device_id: str) -> bool:
        """Delete everything stored about a device; return whether there was anything."""
        with self.atomic() as conn:
            n = 0
            for table in ("devices", "events", "pushes", "replies"):
                n += conn.execute(f"DELETE FROM {table} WHERE device_id = ?", (device_id,)).rowcount
            return n > 0

    def pushes(self, device_id: str | None = None) -> list[tuple]:
        """The push log (device, campaign, store, geofence, ts), oldest first."""
        sql = "SELECT device_id, campaign_id, store_id, geofence_id, ts FROM pushes"
        args: tuple = ()
        if device_id is not None:
            sql += " WHERE device_id = ?"
            args = (device_id,)
        return self._query(sql + " ORDER BY id", args)

    def events(self, device_id: str) -> list[tuple]:
        return self._query("SELECT type, geofence_id, ts, duration_s FROM events WHERE "
                           "device_id = ? ORDER BY id", (device_id,))

    # --- API keys ----------------------------------------------------------------------------

    def api_keys(self) -> list[tuple[str, str, str]]:
        """Active keys: (kind, prefix, created_at)."""
        return self._query("SELECT kind, prefix, created_at FROM api_keys WHERE revoked_at "
                           "IS NULL ORDER BY id")

    def key_kind(self, key_hash: str) -> str | None:
        rows = self._query("SELECT kind FROM api_keys WHERE key_hash = ? AND revoked_at IS "
                           "NULL", (key_hash,))
        return rows[0][0] if rows else None

    def replace_key(self, kind: str, key_hash: str, prefix: str) -> None:
        """Revoke the active keys of a kind and store a new one."""
        with self.atomic() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                         "WHERE kind = ? AND revoked_at IS NULL AND key_hash != ?", (kind, key_hash))
            conn.execute("INSERT OR IGNORE INTO api_keys (kind, key_hash, prefix) VALUES (?, ?, ?)",
                         (kind, key_hash, prefix))

    # --- geocoding cache -----------------------------------------------------------------------

    def cached_geocodes(self, geocoder: str, addresses: list[str]) -> dict[str, tuple]:
        """address -> (lat, lon), (None, None) when known not found; unknown addresses absent."""
        out: dict[str, tuple] = {}
        for k in range(0, len(addresses), 500):
            part = addresses[k:k + 500]
            rows = self._query(
                f"SELECT address, lat, lon FROM geocodes WHERE geocoder = ? AND address IN "
                f"({','.join('?' * len(part))})", (geocoder, *part))
            out.update({a: (la, lo) for a, la, lo in rows})
        return out

    def save_geocodes(self, geocoder: str, found: dict[str, tuple]) -> None:
        with self.atomic() as conn:
            conn.executemany("INSERT OR REPLACE INTO geocodes (geocoder, address, lat, lon) "
                             "VALUES (?, ?, ?, ?)", [(geocoder, a, la, lo) for a, (la, lo) in found.items()])
