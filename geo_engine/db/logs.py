"""The event and push logs, read for campaign results (:mod:`geo_engine.results`).

Each read is one indexed range: a campaign's pushes by ``(campaign_id, ts)``, its held_out
events by ``(campaign_id, ts)``, the enters and exits at a set of stores by ``(store_id, ts)``
(schema version 9). Rows come back as plain tuples, oldest first; what they mean is the results
module's.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["EventFollower", "Logs"]

_CHUNK = 500  # ids a statement, within every backend's limit on parameters
_FEED = "id, device_id, ts, type, geofence_id, store_id, campaign_id, duration_s, trip_id"


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
        return self._db.query(f"SELECT {_FEED} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                              (after_id, limit))

    def events_with_ids(self, ids: list[int]) -> list[tuple]:
        """The events with these ids that exist now (as :meth:`events_after`'s rows), by id."""
        rows: list[tuple] = []
        for k in range(0, len(ids), _CHUNK):
            part = ids[k:k + _CHUNK]
            rows += self._db.query(f"SELECT {_FEED} FROM events WHERE id IN "
                                   f"({','.join('?' * len(part))})", part)
        return sorted(rows)


class EventFollower:
    """The event log read as it grows, for one reader of the live feed, losing no event that
    commits late.

    Ids are handed out when an event is written, not when its transaction commits: on
    PostgreSQL, with several instances (or one instance's writer threads), an event can commit
    after one with a higher id was already read. Each read takes what came after the highest id
    read so far, and remembers the ids it jumped over; for ``wait_s`` seconds each later read
    also asks for those, and hands over the ones that have committed since (a rolled-back
    transaction's ids never come, and are forgotten then). SQLite's one writer commits in id
    order, so there the jumps are only deleted events.
    """

    def __init__(self, logs: Logs, after_id: int, wait_s: float = 10.0, limit: int = 200):
        self._logs, self.last, self.wait_s, self.limit = logs, after_id, wait_s, limit
        self._missing: dict[int, float] = {}  # an id jumped over -> when it was first missed
        self._full = False

    def read(self, now: float) -> list[tuple]:
        """The events committed since the last read (late ones first, then the new, by id)."""
        late: list[tuple] = []
        if self._missing:
            late = self._logs.events_with_ids(sorted(self._missing))
            for row in late:
                del self._missing[row[0]]
            for i in [i for i, t in self._missing.items() if now - t > self.wait_s]:
                del self._missing[i]
        rows = self._logs.events_after(self.last, self.limit)
        expected = self.last + 1
        for row in rows:
            for gap in range(expected, row[0]):
                if len(self._missing) < 10_000:
                    self._missing[gap] = now
            expected = row[0] + 1
        if rows:
            self.last = rows[-1][0]
        self._full = len(rows) >= self.limit
        return late + rows

    @property
    def full(self) -> bool:
        """Whether the last read stopped at its limit (more are waiting: read again at once)."""
        return self._full
