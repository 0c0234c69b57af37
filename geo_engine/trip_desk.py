"""Trips as a store sees them (SPEC 11): started, ended, listed, expired, and the wait.

A phone (or its backend) starts a trip; its pings move it (:mod:`geo_engine.ping_flow`, the rules
in :mod:`geo_engine.trips`); the store completes or cancels it; one that never arrives expires,
at its device's next ping or, with no ping, by :meth:`TripDesk.expire_overdue` (each serving
process runs it every few seconds; a trip's end is one conditional write, so two processes
never both end it). Each change writes the trip's row, the device row's copy of its open trip
(under a new row version), its event and its webhook events, in one transaction.

Reads: a trip, a store's board (open trips with their estimate or their wait so far, and those
ended lately) and ``wait_time_s`` by store and day (arrived to completed).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

from . import trips
from .db.behind import Behind
from .errors import Conflict, InvalidInput, NotFound, StorageError
from .model import Ping, Trip
from .trips import TripEvent
from .webhooks import iso_time, outgoing

__all__ = ["TripDesk", "trip_view", "wait_figures"]

_DAY = 86_400.0


def trip_view(record: dict, now: float) -> dict:
    """A trip's record as the API shows it: times in RFC 3339, the wait so far (arrived and
    waiting) or the whole wait (completed after an arrival)."""
    arrived, ended = record["arrived_ts"], record["ended_ts"]
    wait = None
    if arrived is not None:
        if record["status"] == "arrived":
            wait = max(0.0, now - arrived)
        elif record["status"] == "completed" and ended is not None:
            wait = max(0.0, ended - arrived)
    return {
        "trip_id": record["trip_id"], "device_id": record["device_id"],
        "store_id": record["store_id"], "mode": record["mode"], "status": record["status"],
        "approaching_s": record["approaching_s"], "metadata": record["metadata"],
        "distance_m": None if record["distance_m"] is None else round(record["distance_m"], 1),
        "eta_s": None if record["eta_s"] is None or record["status"] not in trips.ON_THE_WAY
        else round(record["eta_s"], 1),
        "arrived_elsewhere": record["arrived_elsewhere"],
        "created_at": iso_time(record["created_ts"]), "updated_at": iso_time(record["updated_ts"]),
        "approaching_at": iso_time(record["approaching_ts"]), "arrived_at": iso_time(record["arrived_ts"]),
        "ended_at": iso_time(ended), "wait_time_s": None if wait is None else round(wait, 3),
    }


def wait_figures(waits: list[tuple[float, float]]) -> list[dict]:
    """``wait_time_s`` by UTC day of completion from ``(arrived_ts, completed_ts)`` pairs: how
    many, the mean, the median, the 90th percentile and the longest."""
    by_day: dict[str, list[float]] = {}
    for arrived, done in waits:
        day = datetime.fromtimestamp(done, UTC).date().isoformat()
        by_day.setdefault(day, []).append(max(0.0, done - arrived))
    out = []
    for day in sorted(by_day):
        w = sorted(by_day[day])
        p90 = w[min(len(w) - 1, max(0, -(-9 * len(w) // 10) - 1))]  # nearest rank
        out.append({"day": day, "completed": len(w), "mean_s": round(statistics.fmean(w), 3),
                    "median_s": round(statistics.median(w), 3), "p90_s": round(p90, 3),
                    "max_s": round(w[-1], 3)})
    return out


class TripDesk:
    """The engine's trips: started, ended, listed and expired (``engine.trips``)."""

    def __init__(self, engine):
        self._engine = engine
        self._db = engine.db
        self._sweeper = Behind(self.expire_overdue, "trip-expiry",
                               (StorageError, engine.db.sql.Error))

    def start(self, trip_id: str, device_id: str, store_id: str, mode: str = "car",
              approaching_s: float = 300.0, metadata: dict | None = None) -> dict:
        """Start a trip: ``trip.started``; a :class:`Conflict` when the id is taken or the
        device has an open trip already (one trip a device at a time)."""
        Ping(device_id, 0.0, 0.0)  # the same device id rules as a ping
        trips.check_new(trip_id, mode, approaching_s)
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict):
            raise InvalidInput("metadata must be a JSON object")
        snap = self._engine.refresh()
        if snap.places.find_store(store_id) is None:
            raise NotFound(f"no store {store_id!r}")
        now = time.time()
        trip = Trip(trip_id, store_id, mode, float(approaching_s), "started", now)
        with self._db.atomic() as tx:
            open_ = self._db.devices.trip_of(tx, device_id)
            if open_ is not None:
                raise Conflict(f"device {device_id!r} has an open trip already ({open_.trip_id!r}, "
                               f"{open_.status}); complete or cancel it first")
            if not self._db.trips.insert(tx, trip_id, device_id, store_id, mode, float(approaching_s),
                                         metadata, now):
                if self._db.trips.get(trip_id, tx) is not None:
                    raise Conflict(f"trip {trip_id!r} exists already")
                raise Conflict(f"device {device_id!r} has an open trip already; complete or "
                               "cancel it first")
            self._db.devices.set_trip(tx, device_id, trip)
            record = self._db.trips.get(trip_id, tx)
            self._changed(tx, snap, device_id, now, TripEvent("trip.started", trip_id, store_id),
                          record)
        self._engine.delivery.wake()
        return trip_view(record, now)

    def get(self, trip_id: str) -> dict:
        record = self._db.trips.get(trip_id)
        if record is None:
            raise NotFound(f"no trip {trip_id!r}")
        return trip_view(record, time.time())

    def of_store(self, store_id: str, hours: float = 12.0) -> list[dict]:
        """A store's board: its open trips and those ended in the last ``hours``."""
        if self._engine.refresh().places.find_store(store_id) is None:
            raise NotFound(f"no store {store_id!r}")
        now = time.time()
        return [trip_view(r, now) for r in self._db.trips.of_store(store_id, now - hours * 3600)]

    def wait_times(self, store_id: str, days: int = 7) -> list[dict]:
        """``wait_time_s`` of the store's completed trips by UTC day, the last ``days`` days."""
        if not 1 <= days <= 366:
            raise InvalidInput(f"days must be from 1 to 366, got {days}")
        now = time.time()
        start = (now // _DAY - (days - 1)) * _DAY
        return wait_figures(self._db.trips.waits(store_id, start, now + 1))

    def expire_overdue(self, now: float | None = None) -> int:
        """End every trip not arrived within the expiry (``trip.expired``); return how many
        this call ended (another process may end some first: each is ended once)."""
        now = time.time() if now is None else now
        n = 0
        for trip_id, _ in self._db.trips.overdue(now - self._engine.settings.trip_expiry_s):
            try:
                self.end(trip_id, "expired", now)
                n += 1
            except (Conflict, NotFound):
                pass  # ended meanwhile (by its ping, a store, or another process)
        return n

    def start_sweeper(self, every_s: float | None = None) -> None:
        """Expire overdue trips from a thread of its own (a server's), every ``every_s``
        (by default a quarter of the expiry, from 0.5 to 5 s)."""
        self._sweeper.start(every_s or max(0.5, min(5.0, self._engine.settings.trip_expiry_s / 4)))

    def stop(self) -> None:
        self._sweeper.stop()

    def end(self, trip_id: str, status: str, now: float | None = None) -> dict:
        """A store completes or cancels a trip (``trip.completed``, ``trip.canceled``), or the
        expiry ends it (``expired``, only once it is overdue); the device's next ping has no
        trip. :class:`Conflict` for one ended already."""
        now = time.time() if now is None else now
        snap = self._engine.refresh()
        with self._db.atomic() as tx:
            record = self._db.trips.get(trip_id, tx)
            if record is None:
                raise NotFound(f"no trip {trip_id!r}")
            event = trips.end(record["status"], status, trip_id, record["store_id"])
            open_ = self._db.devices.trip_of(tx, record["device_id"])  # the row locked first
            if status == "expired" and (record["status"] == "arrived" or
                                         now - record["created_ts"] < self._engine.settings.trip_expiry_s):
                raise Conflict(f"trip {trip_id!r} is not overdue")
            if not self._db.trips.ended(tx, trip_id, status, now):
                raise Conflict(f"trip {trip_id!r} has ended already")
            if open_ is not None and open_.trip_id == trip_id:
                self._db.devices.set_trip(tx, record["device_id"], None)
            record = self._db.trips.get(trip_id, tx)
            self._changed(tx, snap, record["device_id"], now, event, record)
        self._engine.delivery.wake()
        return trip_view(record, now)

    def _changed(self, tx, snap, device_id: str, now: float, event: TripEvent, record: dict) -> None:
        """A trip's change recorded: its event in the log, and in the webhooks' outbox."""
        self._db.devices.record_trip_events(tx, device_id, now, [event], None)
        if snap.webhooks:
            self._engine.pings.to_outbox(tx, snap, outgoing(device_id, now, trip_events=[
                (event, trip_view(record, now))]))
