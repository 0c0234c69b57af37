"""The event and push logs, read for campaign results (:mod:`geo_engine.results`).

Each read is one indexed range: a campaign's pushes by ``(campaign_id, ts)``, its held_out
events by ``(campaign_id, ts)``, the enters and exits at a set of stores by ``(store_id, ts)``
(schema version 9). Rows come back as plain tuples, oldest first; what they mean is the results
module's.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Logs"]

_CHUNK = 500  # ids a statement, within every backend's limit on parameters


class Logs:
    """Reads of the ``pushes`` and ``events`` tables for results."""

    def __init__(self, db):
        self._db = db

    def pushes(self, campaign_id: str, t0: float, t1: float) -> list[tuple[str, float, str]]:
        """``(device_id, ts, store_id)`` of every push of the campaign with ``t0 <= ts < t1``."""
        return self._db.query("SELECT device_id, ts, store_id FROM pushes WHERE campaign_id = ? "
                              "AND ts >= ? AND ts < ? ORDER BY ts, device_id",
                              (campaign_id, t0, t1))

    def holdouts(self, campaign_id: str, t0: float, t1: float) -> list[tuple[str, float, str]]:
        """``(device_id, ts, store_id)`` of every held_out event of the campaign in the span."""
        return self._db.query("SELECT device_id, ts, store_id FROM events WHERE campaign_id = ? "
                              "AND type = 'held_out' AND ts >= ? AND ts < ? ORDER BY ts, device_id",
                              (campaign_id, t0, t1))

    def visits_at(self, store_ids: Iterable[str], t0: float, t1: float
                  ) -> list[tuple[str, float, str, str, str]]:
        """``(device_id, ts, type, geofence_id, store_id)`` of the enter and exit events at these
        stores with ``t0 <= ts < t1``, by device, then time."""
        ids = sorted(set(store_ids))
        rows: list[tuple] = []
        for k in range(0, len(ids), _CHUNK):
            part = ids[k:k + _CHUNK]
            rows += self._db.query(
                "SELECT device_id, ts, type, geofence_id, store_id FROM events WHERE store_id IN "
                f"({','.join('?' * len(part))}) AND ts >= ? AND ts < ? AND type IN ('enter', 'exit')",
                (*part, t0, t1))
        rows.sort(key=lambda r: (r[0], r[1], r[2] == "enter"))  # an exit before an enter at a tie
        return rows

    def last_seen(self, device_ids: Iterable[str]) -> dict[str, float]:
        """The time of each device's last ping (devices with no row are absent)."""
        ids = sorted(set(device_ids))
        out: dict[str, float] = {}
        for k in range(0, len(ids), _CHUNK):
            part = ids[k:k + _CHUNK]
            out.update((d, ts) for d, ts in self._db.query(
                f"SELECT device_id, last_ts FROM devices WHERE device_id IN ({','.join('?' * len(part))}) "
                "AND last_ts IS NOT NULL", part))
        return out

    def latest_event_id(self) -> int:
        """The id of the newest event (0 when there is none)."""
        return self._db.query("SELECT coalesce(max(id), 0) FROM events")[0][0]

    def events_after(self, after_id: int, limit: int = 200) -> list[tuple]:
        """``(id, device_id, ts, type, geofence_id, store_id, campaign_id, duration_s, trip_id)``
        of the events with an id above ``after_id``, oldest first (the live feed)."""
        return self._db.query("SELECT id, device_id, ts, type, geofence_id, store_id, campaign_id, "
                              "duration_s, trip_id FROM events WHERE id > ? ORDER BY id LIMIT ?",
                              (after_id, limit))
