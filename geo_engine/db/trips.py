"""Trips in the database (SPEC 11): the ``trips`` table, one row a trip with its whole record.

A device's open trip is also in its ``devices`` row (what a ping needs to move it, written
under the row's version: :mod:`.devices`); this table is what the store's board, a trip's
``GET`` and the wait-time figures read. SQL and row shapes only: how a trip moves is
:mod:`geo_engine.trips`.
"""

from __future__ import annotations

import orjson

from .devices import write_later

__all__ = ["TRIP_COLUMNS", "Trips"]

TRIP_COLUMNS = ("trip_id, device_id, store_id, mode, approaching_s, metadata, status, created_ts, "
                "updated_ts, approaching_ts, arrived_ts, ended_ts, arrived_elsewhere, distance_m, "
                "eta_s")


def trip_record(row: tuple) -> dict:
    """A trip's row as a dict (:data:`TRIP_COLUMNS`' names; ``metadata`` parsed)."""
    out = dict(zip(TRIP_COLUMNS.split(", "), row, strict=True))
    out["metadata"] = orjson.loads(out["metadata"])
    return out


class Trips:
    """Reads and writes of the ``trips`` table."""

    def __init__(self, db):
        self._db = db

    @staticmethod
    def insert(tx, trip_id: str, device_id: str, store_id: str, mode: str, approaching_s: float,
               metadata: dict, ts: float) -> bool:
        """Add a started trip; False when the id is taken or the device has an open trip
        (nothing written: a device's open trips are unique, whatever two requests race)."""
        return tx.execute(
            "INSERT INTO trips (trip_id, device_id, store_id, mode, approaching_s, metadata, "
            "status, created_ts, updated_ts) VALUES (?, ?, ?, ?, ?, ?, 'started', ?, ?) "
            "ON CONFLICT DO NOTHING",
            (trip_id, device_id, store_id, mode, approaching_s, orjson.dumps(metadata).decode(),
             ts, ts)).rowcount == 1

    @staticmethod
    def moved(tx, trip_id: str, status: str, ts: float, distance_m: float, eta_s: float,
              elsewhere: str | None) -> None:
        """A ping moved the trip: its status (the time it became approaching, arrived or
        expired kept), the last distance and estimate. Held for the commit on PostgreSQL."""
        write_later(tx,
            "UPDATE trips SET status = ?, updated_ts = ?, distance_m = ?, eta_s = ?, "
            "arrived_elsewhere = ?, "
            "approaching_ts = CASE WHEN ? = 'approaching' AND approaching_ts IS NULL THEN ? "
            "ELSE approaching_ts END, "
            "arrived_ts = CASE WHEN ? = 'arrived' AND arrived_ts IS NULL THEN ? ELSE arrived_ts END, "
            "ended_ts = CASE WHEN ? = 'expired' THEN ? ELSE ended_ts END "
            "WHERE trip_id = ? AND status IN ('started', 'approaching', 'arrived')",
            [(status, ts, distance_m if distance_m != float("inf") else None, eta_s
              if eta_s != float("inf") else None, elsewhere, status, ts, status, ts, status, ts,
              trip_id)])

    @staticmethod
    def ended(tx, trip_id: str, status: str, ts: float) -> bool:
        """A store (or the expiry) ended an open trip; False when it had ended already."""
        return tx.execute("UPDATE trips SET status = ?, ended_ts = ?, updated_ts = ? WHERE "
                          "trip_id = ? AND status IN ('started', 'approaching', 'arrived')",
                          (status, ts, ts, trip_id)).rowcount == 1

    def get(self, trip_id: str, tx=None) -> dict | None:
        sql, args = f"SELECT {TRIP_COLUMNS} FROM trips WHERE trip_id = ?", (trip_id,)
        rows = tx.execute(sql, args).fetchall() if tx is not None else self._db.query(sql, args)
        return trip_record(rows[0]) if rows else None

    def of_store(self, store_id: str, since_ts: float) -> list[dict]:
        """The store's trips still open, and those ended since ``since_ts``, oldest first."""
        rows = self._db.query(
            f"SELECT {TRIP_COLUMNS} FROM trips WHERE store_id = ? AND (status IN ('started', "
            "'approaching', 'arrived') OR ended_ts >= ?) ORDER BY created_ts, trip_id",
            (store_id, since_ts))
        return [trip_record(r) for r in rows]

    def waits(self, store_id: str, t0: float, t1: float) -> list[tuple[float, float]]:
        """``(arrived_ts, ended_ts)`` of the store's trips completed in ``[t0, t1)`` after an
        arrival (the wait: from arrived to completed)."""
        return self._db.query(
            "SELECT arrived_ts, ended_ts FROM trips WHERE store_id = ? AND status = 'completed' "
            "AND arrived_ts IS NOT NULL AND ended_ts >= ? AND ended_ts < ? ORDER BY ended_ts",
            (store_id, t0, t1))

    def overdue(self, created_before: float, limit: int = 500) -> list[tuple[str, str]]:
        """``(trip_id, device_id)`` of trips started before ``created_before`` and not arrived."""
        return self._db.query(
            "SELECT trip_id, device_id FROM trips WHERE status IN ('started', 'approaching') AND "
            "created_ts < ? ORDER BY created_ts LIMIT ?", (created_before, limit))
