"""The SQLite database: schema and migrations, transactions, import, and reading back.

One file in WAL mode (readers never block the writer), foreign keys on, and every write in an
``atomic()`` block that commits whole or not at all (as sqlite-utils' ``atomic`` does). The
schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` lists the steps from one
version to the next, so a later release upgrades an older file in place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from .errors import StorageError
from .fences import Dataset, build_geofences
from .model import Geofence, Store

__all__ = ["MIGRATIONS", "Database", "StoreArrays"]

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
]


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
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._lock = threading.RLock()
            self._migrate()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the database {self.path}: {exc}") from None

    # --- plumbing --------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    @property
    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise StorageError(f"the database {self.path} has schema version {version}, newer than "
                               f"this geo-engine knows ({len(MIGRATIONS)}); upgrade geo-engine")
        for target in range(version + 1, len(MIGRATIONS) + 1):
            with self.atomic() as conn:
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

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

    def close(self) -> None:
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
        q = self._conn.execute
        return {"stores": q("SELECT count(*) FROM stores").fetchone()[0],
                "geofences": q("SELECT count(*) FROM geofences").fetchone()[0]}

    def store_ids(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT id FROM stores")}

    def store_arrays(self) -> StoreArrays:
        """Return every store's id, lat, lon and name as arrays sorted by id (one query)."""
        rows = self._conn.execute("SELECT id, lat, lon, name FROM stores ORDER BY id").fetchall()
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
        rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [Store(id=r[0], lat=r[1], lon=r[2], name=r[3], tags=tuple(json.loads(r[4])),
                      timezone=r[5], opening_hours=json.loads(r[6]) if r[6] else None,
                      address=r[7], metadata=json.loads(r[8])) for r in rows]

    def geofences(self) -> list[Geofence]:
        """Return every geofence, ordered by id, polygons rebuilt with their parts and edges."""
        rows = self._conn.execute(
            "SELECT id, store_id, name, lat, lon, radius_m, geometry, tags, enabled, expires_at, "
            "metadata FROM geofences ORDER BY id").fetchall()
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
