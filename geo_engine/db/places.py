"""Stores and geofences in the database: import (all or nothing), read back, delete.

SQL and row shapes only. Polygons come back as their stored GeoJSON with their other fields;
turning them into shapes (parts, edges) is :func:`geo_engine.io.places.build_geofences`' job,
and what a deletion means for devices is the engine's.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

import numpy as np

from ..errors import StorageError
from ..model import Geofence, Store, StoreArrays
from .changes import bump
from .sqlite import SQLite

__all__ = ["Places"]

_STORE_COLUMNS = "id, lat, lon, name, tags, timezone, opening_hours, address, metadata"



def _tags(text: str) -> tuple:
    """A stored JSON list of tags as a tuple (most are empty: a snapshot of 100k stores reads
    them all, and parsing each was a third of loading one)."""
    return () if text == "[]" else tuple(json.loads(text))


def _object(text: str) -> dict:
    """A stored JSON object (a new dict each time: callers may keep it)."""
    return {} if text == "{}" else json.loads(text)

class Places:
    """The ``stores`` and ``geofences`` tables."""

    def __init__(self, db: SQLite):
        self._db = db

    def import_dataset(self, stores: list[Store], geofences: list[Geofence]) -> dict[str, int]:
        """Insert or update every store and geofence in one transaction; return the counts.

        A re-import of an id replaces it. Raises :class:`StorageError` (and changes nothing)
        when the database refuses the write.
        """
        store_rows = [(s.id, s.lat, s.lon, s.name, json.dumps(list(s.tags)), s.timezone,
                       json.dumps(s.opening_hours) if s.opening_hours is not None else None,
                       s.address, json.dumps(s.metadata)) for s in stores]
        fence_rows = [(g.id, g.store_id, g.name, g.lat, g.lon, g.radius_m,
                       json.dumps(g.geometry) if g.geometry is not None else None,
                       json.dumps(list(g.tags)), int(g.enabled),
                       g.expires_at.isoformat() if g.expires_at else None,
                       json.dumps(g.metadata)) for g in geofences]
        try:
            with self._db.atomic() as conn:
                bump(conn, "places")
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
        except self._db.Error as exc:
            raise StorageError(f"the import into {self._db.path} was refused and nothing was "
                               f"changed: {exc}") from None
        return {"stores": len(store_rows), "geofences": len(fence_rows)}

    def counts(self) -> dict[str, int]:
        """Return how many stores and geofences the database holds."""
        q = self._db.query
        return {"stores": q("SELECT count(*) FROM stores")[0][0],
                "geofences": q("SELECT count(*) FROM geofences")[0][0]}

    def store_ids(self) -> set[str]:
        return {r[0] for r in self._db.query("SELECT id FROM stores")}

    def store_arrays(self) -> StoreArrays:
        """Return every store's id, lat, lon and name as arrays sorted by id (one query)."""
        rows = self._db.query("SELECT id, lat, lon, name FROM stores ORDER BY id")
        if not rows:
            return StoreArrays.empty()
        ids, lats, lons, names = zip(*rows, strict=True)
        # SQLite sorts TEXT by bytes (BINARY); Python by code point: the same order for UTF-8.
        return StoreArrays(np.array(ids, dtype=object), np.array(lats, dtype=float),
                           np.array(lons, dtype=float), np.array(names, dtype=object))

    def stores(self, ids: list[str] | None = None) -> list[Store]:
        """Return stores (all, or those with these ids), ordered by id."""
        sql = f"SELECT {_STORE_COLUMNS} FROM stores"
        args: list[str] = []
        if ids is not None:
            sql += f" WHERE id IN ({','.join('?' * len(ids))})"
            args = list(ids)
        rows = self._db.query(sql + " ORDER BY id", args)
        return [Store(id=r[0], lat=r[1], lon=r[2], name=r[3], tags=_tags(r[4]),
                      timezone=r[5], opening_hours=json.loads(r[6]) if r[6] else None,
                      address=r[7], metadata=_object(r[8])) for r in rows]

    def geofence_rows(self) -> tuple[list[Geofence], list[tuple[dict[str, Any], dict[str, Any]]]]:
        """Every geofence, ordered by id: the circles as Geofences, and each polygon as its
        ``(GeoJSON geometry, other fields)`` to be built into shapes."""
        rows = self._db.query(
            "SELECT id, store_id, name, lat, lon, radius_m, geometry, tags, enabled, expires_at, "
            "metadata FROM geofences ORDER BY id")
        circles, polygons = [], []
        for r in rows:
            fields = dict(id=r[0], store_id=r[1], name=r[2], tags=_tags(r[7]),
                          enabled=bool(r[8]),
                          expires_at=datetime.fromisoformat(r[9]) if r[9] else None,
                          metadata=_object(r[10]))
            if r[5] is not None:
                circles.append(Geofence(lat=r[3], lon=r[4], radius_m=r[5], **fields))
            else:
                polygons.append((json.loads(r[6]), fields))
        return circles, polygons

    def store_page(self, limit: int, after: str | None) -> list[Store]:
        """Up to ``limit`` stores ordered by id, those after the id ``after`` (paging)."""
        rows = self._db.query("SELECT id FROM stores WHERE id > ? ORDER BY id LIMIT ?",
                              (after or "", limit))
        return self.stores([r[0] for r in rows]) if rows else []

    @staticmethod
    def fence_ids_of(tx: sqlite3.Connection, store_id: str) -> list[str]:
        """The ids of a store's geofences (inside the caller's transaction)."""
        return [r[0] for r in tx.execute("SELECT id FROM geofences WHERE store_id = ? ORDER BY id",
                                         (store_id,)).fetchall()]

    @staticmethod
    def delete_store(tx: sqlite3.Connection, store_id: str) -> bool:
        """Delete a store and its geofences (inside the caller's transaction); return whether
        it existed."""
        bump(tx, "places")
        tx.execute("DELETE FROM geofences WHERE store_id = ?", (store_id,))
        return tx.execute("DELETE FROM stores WHERE id = ?", (store_id,)).rowcount > 0

    @staticmethod
    def delete_geofence(tx: sqlite3.Connection, geofence_id: str) -> bool:
        """Delete a geofence (inside the caller's transaction); return whether it existed."""
        bump(tx, "places")
        return tx.execute("DELETE FROM geofences WHERE id = ?", (geofence_id,)).rowcount > 0
