"""Devices in the database: each device's state in one row, the event and push logs, replies.

A device's whole state is one row, written under a version check: ``version`` is a random number
drawn at every write, and a write names the version it read, so a stale copy (another worker, a
consent change) is refused inside the transaction and the caller reads again. This process keeps
the rows it last read or wrote in memory (plain values, which the garbage collector need not
scan); the version in the database stays the truth.

SQL, row shapes and the row cache only: how a ping changes a state is :mod:`geo_engine.devices`.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading

import orjson

from ..errors import StorageError
from ..model import DeviceState, Event, Trip, Visit
from .behind import Behind
from .changes import bump
from .sqlite import SQLite

__all__ = ["Devices", "device_from_row", "new_version", "write_later"]

COLUMNS = ("device_id, version, last_ts, last_lat, last_lon, last_accuracy_m, last_offer_ts, "
           "opted_out, visits, history, trip")
CACHE_ROWS = 500_000  # device rows kept in memory (each a few hundred bytes)


def new_version() -> int:
    """A device row's version: random, so a row deleted and made again never repeats one."""
    return random.getrandbits(62) + 1


def device_from_row(row: tuple) -> DeviceState:
    """A device's state from its row (:data:`COLUMNS` order), as read or written."""
    visits = {fid: Visit(fid, sid, entered, bool(done))
              for fid, (sid, entered, done) in orjson.loads(row[8]).items()}
    trip = None if row[10] is None else Trip.from_json(orjson.loads(row[10]))
    return DeviceState(row[0], row[2], row[3], row[4], row[5], row[6], bool(row[7]), visits,
                       row[1], orjson.loads(row[9]), trip)


def _held(tx) -> dict | None:
    """The device rows ``tx`` holds locked (:meth:`Devices.lock`), as they now stand; None when
    it holds none (SQLite's transactions, PostgreSQL's outside a server's group)."""
    memo = getattr(tx, "memo", None)
    return None if memo is None else memo.get("devices")


def write_later(tx, sql: str, rows: list[tuple]) -> None:
    """Writes whose result no one reads: on PostgreSQL held for the transaction's next flush
    (:meth:`~geo_engine.db.postgres.Tx.later`), on SQLite run at once (in-process, nothing to
    save by batching)."""
    later = getattr(tx, "later", None)
    if later is None:
        tx.executemany(sql, rows)
        return
    for row in rows:
        later(sql, row)


def _values(state: DeviceState) -> tuple:
    """A state as the values of its row, ``device_id`` last (the UPDATE's order)."""
    visits = orjson.dumps({fid: [v.store_id, v.entered_ts, int(v.dwell_done)]
                           for fid, v in state.visits.items()}).decode()
    return (state.version, state.last_ts, state.last_lat, state.last_lon, state.last_accuracy_m,
            state.last_offer_ts, int(state.opted_out), visits, orjson.dumps(state.history).decode(),
            None if state.trip is None else orjson.dumps(state.trip.to_json()).decode(),
            state.device_id)


class Devices:
    """The ``devices``, ``events``, ``pushes``, ``campaign_spend`` and ``replies`` tables."""

    def __init__(self, db: SQLite):
        self._db = db
        self._rows: dict[str, tuple] = {}  # device id -> its row as last read or written here
        self._cache_lock = threading.Lock()
        # devices whose kept row moved on (quiet pings: position and time only) since written
        self._dirty: set[str] = set()
        # (device id, version) pairs read back as stored since the data version last moved:
        # while no other connection commits, they need no second read
        self._current: set[tuple[str, int | None]] = set()
        self._current_at: int | None = None
        self._flusher = Behind(self.flush, "quiet-flush", (db.Error, StorageError))

    # --- state (inside atomic(): reads and writes of one ping are one transaction) -----------

    def load(self, tx: sqlite3.Connection, device_id: str, cached: bool = True) -> DeviceState:
        """The device's state (``version`` None when there is no row): this process's copy when
        it has one and ``cached``, else the row as stored (and, on PostgreSQL, locked)."""
        held = _held(tx)
        if held is not None and device_id in held:  # read and locked at the group's start
            row = held[device_id]
            return DeviceState(device_id) if row is None else device_from_row(row)
        row = self._rows.get(device_id) if cached else None
        if row is None:
            # on PostgreSQL the row is locked until the transaction ends: no other instance
            # writes it between this read and this transaction's write (SQLite's one writer
            # at a time does the same)
            lock = " FOR UPDATE" if self._db.dialect == "postgresql" else ""
            row = tx.execute(f"SELECT {COLUMNS} FROM devices WHERE device_id = ?{lock}",
                             (device_id,)).fetchone()
            if row is None:
                return DeviceState(device_id)
        return device_from_row(row)

    def lock(self, tx, device_ids: list[str]) -> None:
        """Read and lock these devices' rows (``FOR UPDATE``, in id order, so that groups never
        wait on each other in a circle) in one query at the start of a server's group
        transaction on PostgreSQL: the group's pings then load and save them with no statement
        of their own (:meth:`save` holds its write for the commit)."""
        held = tx.memo.setdefault("devices", {})
        ids = sorted(set(device_ids).difference(held))
        for k in range(0, len(ids), 500):
            part = ids[k:k + 500]
            found = {row[0]: row for row in tx.execute(
                f"SELECT {COLUMNS} FROM devices WHERE device_id = ANY(?) ORDER BY device_id "
                "FOR UPDATE", (part,), fresh_plan=True).fetchall()}
            for device_id in part:
                held[device_id] = found.get(device_id)

    def warm(self, limit: int = CACHE_ROWS) -> int:
        """Keep the rows of the ``limit`` devices seen last in memory (a server's start), so
        their first pings skip the read; return how many are kept."""
        rows = self._db.query(f"SELECT {COLUMNS} FROM devices ORDER BY last_ts DESC LIMIT ?",
                              (limit,))
        for row in reversed(rows):  # oldest first, as kept
            self._rows.setdefault(row[0], row)
        return len(self._rows)

    def save(self, tx: sqlite3.Connection, state: DeviceState, expected: int | None) -> bool:
        """Write ``state`` (with its new ``version``) if the row is still at ``expected``.

        Return False, writing nothing, when another writer changed the row since it was read
        (or created it, when ``expected`` is None): the caller reads again and decides again.
        The row written is kept in memory before the commit: should the commit fail, the
        version check catches the copy.
        """
        values = _values(state)
        if expected is None:
            sql = ("INSERT INTO devices (version, last_ts, last_lat, last_lon, last_accuracy_m, "
                   "last_offer_ts, opted_out, visits, history, trip, device_id) VALUES "
                   "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device_id) DO NOTHING")
            args = values
        else:
            sql = ("UPDATE devices SET version = ?, last_ts = ?, last_lat = ?, last_lon = ?, "
                   "last_accuracy_m = ?, last_offer_ts = ?, opted_out = ?, visits = ?, history = ?, "
                   "trip = ? WHERE device_id = ? AND version = ?")
            args = (*values, expected)
        held = _held(tx)
        if held is not None and state.device_id in held:
            # a row this transaction holds locked: its version is known here, and the write
            # waits for the commit (a row that changed anyway fails the flush: run again)
            now = held[state.device_id]
            if (None if now is None else now[1]) != expected:
                return False
            tx.later(sql, args, one_row=True)
            held[state.device_id] = (state.device_id, *values[:-1])
        elif tx.execute(sql, args).rowcount != 1:
            return False
        self._dirty.discard(state.device_id)
        self._remember((state.device_id, *values[:-1]))
        return True

    # --- quiet pings: kept in memory, written behind ------------------------------------------

    def kept(self, device_id: str) -> DeviceState | None:
        """This process's copy of a device's state, or None when it has none."""
        row = self._rows.get(device_id)
        return None if row is None else device_from_row(row)

    def is_current(self, device_id: str, version: int | None, data_version: int) -> bool:
        """Whether the stored row is still at ``version``, given the connection's
        :meth:`SQLite.data_version` read just before: one read of the row the first time after
        another connection committed, none while no other has (this connection's own writes
        bump the version they write, so a pair seen current stays current)."""
        if data_version != self._current_at:
            self._current.clear()
            self._current_at = data_version
        if (device_id, version) in self._current:
            return True
        rows = self._db.query("SELECT version FROM devices WHERE device_id = ?", (device_id,))
        if not rows or rows[0][0] != version:
            return False
        self._current.add((device_id, version))
        if len(self._current) > CACHE_ROWS:
            self._current.clear()
        return True

    def versions(self, device_ids: list[str]) -> dict[str, int]:
        """The stored versions of these devices' rows, in one query (a device with no row is
        absent): the quiet pings of a loop turn checked at once (:class:`~geo_engine.commits.GroupCheck`)."""
        out: dict[str, int] = {}
        for k in range(0, len(device_ids), 500):
            part = device_ids[k:k + 500]
            out.update(self._db.query(f"SELECT device_id, version FROM devices WHERE device_id IN "
                                      f"({','.join('?' * len(part))})", part))
        return out

    def committed(self, device_id: str, version: int | None) -> None:
        """The row this connection wrote at ``version`` has committed: it is current until the
        data version moves (no other connection can have written it in between, as this one
        held the write lock), so the device's next quiet ping need not read it."""
        if version is not None and self._current_at is not None:
            self._current.add((device_id, version))

    def keep(self, device_id: str, last_ts: float | None, last_lat: float | None,
             last_lon: float | None, last_accuracy_m: float | None) -> None:
        """Keep a device's new position and time (a quiet ping: nothing else of its state
        moved) in its row in memory, for :meth:`flush` to write behind; the row's version stays
        the stored one's."""
        row = self._rows.get(device_id)  # COLUMNS order
        if row is None:  # dropped meanwhile (a consent change, a forget): the row moved on
            return
        self._remember((row[0], row[1], last_ts, last_lat, last_lon, last_accuracy_m, *row[6:]))
        self._dirty.add(device_id)

    def flush(self) -> int:
        """Write the kept positions and times of quiet pings, in one transaction, each only if
        its row is still at the version it was kept at; return how many were written."""
        if not self._dirty:
            return 0
        dirty, self._dirty = self._dirty, set()
        rows = [r for r in (self._rows.get(d) for d in dirty) if r is not None]
        if not rows:
            return 0
        with self._db.atomic() as tx:  # row: COLUMNS order
            return tx.executemany(
                "UPDATE devices SET last_ts = ?, last_lat = ?, last_lon = ?, "
                "last_accuracy_m = ? WHERE device_id = ? AND version = ? AND "
                "(last_ts IS NULL OR last_ts <= ?)",
                [(row[2], row[3], row[4], row[5], row[0], row[1], row[2]) for row in rows]).rowcount

    def start_flusher(self, every_s: float = 1.0) -> None:
        """Write quiet pings behind from a thread of its own, every ``every_s`` seconds (a
        failed pass is caught up by the next one, or by the next write of the row)."""
        self._flusher.start(every_s)

    def close(self) -> None:
        """Stop the flusher, writing what it still holds."""
        self._flusher.stop()
        self.flush()

    def _drop(self, device_id: str) -> None:
        """Forget this process's copy of a row that is being changed outside a ping."""
        with self._cache_lock:
            row = self._rows.pop(device_id, None)
        if row is not None:
            self._current.discard((device_id, row[1]))

    def _remember(self, row: tuple) -> None:
        # under a lock: a server's writer thread and its event loop both keep rows
        with self._cache_lock:
            cache = self._rows
            cache.pop(row[0], None)  # re-inserted last: the oldest entries go first
            cache[row[0]] = row
            if len(cache) > CACHE_ROWS:
                for device_id in list(itertools.islice(cache, CACHE_ROWS // 10)):
                    del cache[device_id]

    def drop_visits_in(self, tx: sqlite3.Connection, geofence_id: str) -> None:
        """Close the visits open in a geofence that is going away, without an exit (it is gone,
        not left)."""
        find = "instr(visits, ?) > 0" if self._db.dialect == "sqlite" else "strpos(visits, ?) > 0"
        rows = tx.execute(f"SELECT device_id, visits FROM devices WHERE {find}",
                          (orjson.dumps(geofence_id).decode(),)).fetchall()
        for device_id, text in rows:
            visits = orjson.loads(text)
            if visits.pop(geofence_id, None) is not None:
                tx.execute("UPDATE devices SET visits = ?, version = ? WHERE device_id = ?",
                           (orjson.dumps(visits).decode(), new_version(), device_id))
                self._drop(device_id)

    def trip_of(self, tx, device_id: str) -> Trip | None:
        """The device's open trip as its row holds it, the row locked until ``tx`` ends (on
        PostgreSQL; SQLite's one writer at a time does the same)."""
        lock = " FOR UPDATE" if self._db.dialect == "postgresql" else ""
        row = tx.execute(f"SELECT trip FROM devices WHERE device_id = ?{lock}", (device_id,)).fetchone()
        return None if row is None or row[0] is None else Trip.from_json(orjson.loads(row[0]))

    def set_trip(self, tx, device_id: str, trip: Trip | None) -> None:
        """Give the device this open trip (None: none), under a new row version: a copy of the
        row elsewhere is stale and read again by its next ping."""
        self._drop(device_id)
        text = None if trip is None else orjson.dumps(trip.to_json()).decode()
        tx.execute("INSERT INTO devices (device_id, trip, version) VALUES (?, ?, ?) "
                   "ON CONFLICT(device_id) DO UPDATE SET trip = excluded.trip, "
                   "version = excluded.version", (device_id, text, new_version()))

    def set_consent(self, device_id: str, location_offers: bool) -> None:
        self._drop(device_id)
        with self._db.atomic() as tx:
            tx.execute("INSERT INTO devices (device_id, opted_out, version) VALUES (?, ?, ?) "
                       "ON CONFLICT(device_id) DO UPDATE SET opted_out = excluded.opted_out, "
                       "version = excluded.version",
                       (device_id, int(not location_offers), new_version()))

    def forget(self, device_id: str) -> bool:
        """Delete everything stored about a device; return whether there was anything."""
        self._drop(device_id)
        with self._db.atomic() as tx:
            n = 0
            for table in ("devices", "events", "pushes", "replies", "device_tokens", "trips", "outbox"):
                n += tx.execute(f"DELETE FROM {table} WHERE device_id = ?", (device_id,)).rowcount
            bump(tx, "tokens")  # its token, if it had one, is gone in every process too
            return n > 0

    # --- the logs ------------------------------------------------------------------------------

    @staticmethod
    def record_events(tx: sqlite3.Connection, device_id: str, ts: float, events: list[Event],
                      ping_id: str | None) -> None:
        if not events:
            return
        write_later(tx,
            "INSERT INTO events (device_id, ts, type, geofence_id, store_id, confidence, "
            "duration_s, ping_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(device_id, ts, str(e.type), e.geofence_id, e.store_id,
              str(e.confidence) if e.confidence else None, e.duration_s, ping_id) for e in events])

    @staticmethod
    def record_trip_events(tx, device_id: str, ts: float, events, ping_id: str | None) -> None:
        """Log a trip's changes (:class:`~geo_engine.trips.TripEvent`: ``trip.arrived``, ...)
        in the event log, naming the trip (the store's board follows them live)."""
        if not events:
            return
        write_later(tx,
               "INSERT INTO events (device_id, ts, type, geofence_id, store_id, trip_id, ping_id) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)",
               [(device_id, ts, e.type, e.geofence_id, e.store_id, e.trip_id, ping_id)
                for e in events])

    @staticmethod
    def record_holdouts(tx: sqlite3.Connection, device_id: str, ts: float, held_out,
                        ping_id: str | None) -> None:
        """Log a ``held_out`` event for each campaign a ping would have pushed but for the
        device's place in its holdout group (``held_out``: the decision's candidates; the
        geofence is empty for a ``nearby`` campaign)."""
        if not held_out:
            return
        write_later(tx,
               "INSERT INTO events (device_id, ts, type, geofence_id, store_id, campaign_id, "
               "ping_id) VALUES (?, ?, 'held_out', ?, ?, ?, ?)",
               [(device_id, ts, c.geofence_id or "", c.store.id, c.campaign.id, ping_id)
                for c in held_out])

    @staticmethod
    def record_push(tx: sqlite3.Connection, device_id: str, campaign_id: str, store_id: str,
                    geofence_id: str | None, ts: float, local_day: str, distance_m: float,
                    ping_id: str | None, budgeted: bool = False) -> None:
        """Log a push; one with a budget also counts in its campaign's spend (whose row the
        ping's :meth:`spend` read, and on PostgreSQL locked, in the same transaction)."""
        write_later(tx, "INSERT INTO pushes (device_id, campaign_id, store_id, geofence_id, ts, "
               "local_day, distance_m, ping_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               [(device_id, campaign_id, store_id, geofence_id, ts, local_day, distance_m, ping_id)])
        if budgeted:  # (a later read of the spend, in this transaction, sends it first)
            write_later(tx, "INSERT INTO campaign_spend (campaign_id, pushes) VALUES (?, 1) "
                   "ON CONFLICT (campaign_id) DO UPDATE SET pushes = campaign_spend.pushes + 1",
                   [(campaign_id,)])

    def spend(self, tx: sqlite3.Connection | None, campaign_ids: list[str]) -> dict[str, int]:
        """Pushes so far of these campaigns (those with a budget) to anyone, read inside the
        ping's transaction (or outside, with ``tx`` None); a campaign with none is absent.

        On PostgreSQL, inside a transaction, the rows are locked (``FOR UPDATE``, in id order)
        until it commits: another instance deciding on the same budget waits for this one's
        push to count, so the budget is never overshot. (SQLite's one writer at a time does the
        same.)"""
        if not campaign_ids:
            return {}
        ids = sorted(campaign_ids)
        sql = (f"SELECT campaign_id, pushes FROM campaign_spend WHERE campaign_id IN "
               f"({','.join('?' * len(ids))}) ORDER BY campaign_id")
        if tx is None:
            return dict(self._db.query(sql, ids))
        if self._db.dialect == "postgresql":
            sql += " FOR UPDATE"
        return dict(tx.execute(sql, ids).fetchall())

    def all_spend(self) -> dict[str, int]:
        """Pushes so far of every campaign that has any (its budget's spend)."""
        return dict(self._db.query("SELECT campaign_id, pushes FROM campaign_spend"))

    def pushes(self, device_id: str | None = None) -> list[tuple]:
        """The push log (device, campaign, store, geofence, ts), oldest first."""
        sql = "SELECT device_id, campaign_id, store_id, geofence_id, ts FROM pushes"
        args: tuple = ()
        if device_id is not None:
            sql += " WHERE device_id = ?"
            args = (device_id,)
        return self._db.query(sql + " ORDER BY id", args)

    def events(self, device_id: str) -> list[tuple]:
        """A device's events (type, geofence, ts, duration_s), oldest first."""
        return self._db.query("SELECT type, geofence_id, ts, duration_s FROM events WHERE "
                              "device_id = ? ORDER BY id", (device_id,))

    # --- replies to pings with a ping_id ---------------------------------------------------------

    def reply(self, device_id: str, ping_id: str, tx: sqlite3.Connection | None = None
              ) -> tuple[bytes, str | None] | None:
        """The answer given to this ping before and the digest of the ping it answered (None
        for answers stored before digests were), or None (read in ``tx`` when given)."""
        sql = "SELECT body, request FROM replies WHERE device_id = ? AND ping_id = ?"
        args = (device_id, ping_id)
        rows = tx.execute(sql, args).fetchall() if tx is not None else self._db.query(sql, args)
        return (rows[0][0], rows[0][1]) if rows else None

    @staticmethod
    def save_reply(tx: sqlite3.Connection, device_id: str, ping_id: str, body: bytes,
                   request: str) -> None:
        write_later(tx, "INSERT INTO replies (device_id, ping_id, body, request) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (device_id, ping_id) DO NOTHING", [(device_id, ping_id, body, request)])
