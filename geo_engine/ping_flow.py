"""The steps of one ping: snapshot, state, rules, record, answer (SPEC 6, 11, 12).

``Engine.handle_ping`` (a transaction of its own: the CLI, the benchmarks, library users) and
``Engine.handle_ping_async`` (a server's event loop: the loop's group commit,
:mod:`geo_engine.commits`) both run :class:`PingFlow`. Each step calls one module: the snapshot
(where is the fix), the database (the device's state), :mod:`geo_engine.devices`,
:mod:`geo_engine.decide` and :mod:`geo_engine.trips` (what happens, pure), the database again
(the durable record: events, the trip, the push, the webhooks' outbox, the reply). A server's
quiet ping (no event, no offer, no trip) is answered from this process's copy of the device's
state with no write transaction; its position is written behind.

It holds no SQL (``db/``), no geometry (``spatial/``) and no rule: it runs the steps in order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from . import devices, trips
from .campaigns import local_day
from .commits import GroupCheck, GroupCommit, ThreadedGroupCommit, Unwritten
from .db.devices import new_version
from .decide import decide
from .errors import Conflict, StorageError, WriteContention
from .geodesy import distance_m
from .model import NO_DECISION, Decision, DeviceState, Event, Ping, PingAnswer, StoreHit, Trip, ping_digest
from .snapshot import FOLLOWED, Places, Snapshot
from .trip_desk import trip_view as full_trip_view
from .trips import TripStep
from .webhooks import outgoing

__all__ = ["PingFlow"]


_RETRIES = 20  # a ping decided on a snapshot that changed meanwhile is decided again


class _Unchecked(NamedTuple):
    """A quiet ping's answer decided on the copy of its device's state kept here, to stand only
    if the stored row is still at ``version`` (checked in a batch: :class:`GroupCheck`)."""

    answer: PingAnswer
    version: int | None
    moved: tuple


class _Stale(Unwritten):  # noqa: N818 - a signal inside the engine, not an error
    """The places or campaigns changed after the snapshot a ping was decided on."""

    def __init__(self, seen: dict[str, int]):
        super().__init__("stale snapshot")
        self.seen = seen


@dataclass(frozen=True)
class _Fix:
    """A ping's time and accuracy as the engine takes them (server time, 50 m when absent)."""

    at: datetime
    ts: float
    accuracy_m: float
    flags: tuple[str, ...] = ()  # what the clock rule noticed: clock_ahead or late


@dataclass(frozen=True)
class _Outcome:
    """What a ping does: the device's next state, its events, the decision and its flags."""

    state: DeviceState
    events: list[Event]
    decision: Decision
    flags: list[str]
    spent: bool = False  # whether a campaign's spend was read (budgets: only in a transaction)
    trip: tuple[Trip, TripStep] | None = None  # the device's trip before the ping, and after


class PingFlow:
    """The ping path of one engine (``engine.pings``), with what a server's pings share: the
    group commit, the quiet pings' checks and the data version they last found current."""

    def __init__(self, engine):
        self._engine = engine
        self.db = engine.db
        self._group: GroupCommit | ThreadedGroupCommit | None = None  # a server's group commit
        self._checks: GroupCheck | None = None  # and its quiet pings' checks (PostgreSQL)
        self._quiet_at: int | None = None  # the data version quiet pings last found current
        self._outbox_written = False  # a ping put events in the outbox: wake the worker

    @property
    def settings(self):
        """The engine's settings (as they are now: a test may replace them)."""
        return self._engine.settings

    def handle(self, ping: Ping) -> PingAnswer:
        """Return the answer to a ping, after recording its events and any push (and count
        the reasons its campaigns were turned down: :meth:`_tally`); see :meth:`_handle`."""
        answer = self._handle(ping)
        self._tally(ping, answer)
        return answer

    async def handle_async(self, ping: Ping) -> PingAnswer:
        """:meth:`handle` for a server's event loop: the same answer, the write in the loop's
        group commit (:mod:`geo_engine.commits`), answered once that has committed."""
        answer = await self._handle_async(ping)
        self._tally(ping, answer)
        return answer

    def _tally(self, ping: Ping, answer: PingAnswer) -> None:
        """The day's count of each reason a campaign was turned down (results' "why not
        sent"), on the UTC day of the ping's time as the engine took it."""
        if answer.decision.rejected:
            at, _ = devices.clock(ping.timestamp, datetime.now(UTC), self.settings.trust_client_clock)
            self.db.tallies.add(at.date().isoformat(), answer.decision.rejected)

    def _handle(self, ping: Ping) -> PingAnswer:
        """Return the answer to a ping, after recording its events and any push.

        snapshot lookup -> device state -> rules -> durable record -> answer. Reads and writes
        of one ping are one transaction (BEGIN IMMEDIATE), so two pings of a device never both
        take a cap's last slot, in one process or several; the push is committed before the
        answer leaves. A repeated ``ping_id`` gets the first answer, byte for byte.

        The device's state comes from this process's copy when it has one; the write back is
        conditional on the row's version, so a stale copy (another worker, a consent change)
        is caught inside the transaction, read again, and the ping decided again.
        """
        contended = False
        for _ in range(_RETRIES):
            answer, write, stages = self._prepare_ping(ping)
            if write is None:
                return answer
            t1 = time.perf_counter()
            try:
                with self.db.atomic() as tx:
                    answer, written = write(tx)
                break
            except _Stale as stale:  # places or campaigns changed since the snapshot: follow
                self._engine.follow(stale.seen)
            except WriteContention:  # another instance held a row it needed: nothing kept, again
                contended = True
        else:
            if contended:
                raise WriteContention("the database could not take this ping's write now "
                                      f"(other instances held its rows, {_RETRIES} tries); try again")
            raise StorageError("places or campaigns kept changing under a ping; try again")
        self.db.devices.committed(ping.device_id, written)
        self._posted()
        if self._engine.stage_times is not None and len(stages) == 5:  # bench_ping: where time goes
            index_s, early_s, t2, t3, t4 = stages
            self._engine.stage_times.append((index_s, t2 - t1, early_s + t3 - t2, t4 - t3,
                                     time.perf_counter() - t4))
        return answer

    async def _handle_async(self, ping: Ping) -> PingAnswer:
        if self._group is None:
            # a server a round trip away: its writes on a thread of their own, the loop free
            # (and each group's device rows read and locked in one query)
            self._group = ThreadedGroupCommit(self.db.sql, prepare=self.db.devices.lock) \
                if self.db.sql.dialect == "postgresql" else GroupCommit(self.db.sql)
            if self.db.followed:  # no shared-memory signal: quiet pings' rows checked per turn
                self._checks = GroupCheck(self.db.devices.versions)
        contended = False
        quiet = True
        for _ in range(_RETRIES):
            answer, write, _ = self._prepare_ping(ping, quiet, defer_check=self._checks is not None)
            if isinstance(answer, _Unchecked):  # decided on the copy kept: is the row still at it?
                if await self._checks.current(ping.device_id, answer.version):
                    self.db.devices.keep(ping.device_id, *answer.moved)
                    return answer.answer
                quiet = False  # another instance wrote the row: the write path reads it
                continue
            if write is None:
                return answer
            try:
                answer, written = await self._group.write(write, ping.device_id)
            except _Stale as stale:  # places or campaigns changed since the snapshot: follow
                self._engine.follow(stale.seen)
                continue
            except WriteContention:  # another instance held a row it needed: nothing kept, again
                contended = True
                continue
            self.db.devices.committed(ping.device_id, written)
            self._posted()
            return answer
        if contended:
            raise WriteContention("the database could not take this ping's write now (other "
                                  f"instances held its rows, {_RETRIES} tries); try again")
        raise StorageError("places or campaigns kept changing under a ping; try again")

    def _prepare_ping(self, ping: Ping, quiet: bool = True, defer_check: bool = False):
        """Everything a ping needs before its transaction: ``(answer, None, [])`` when it needs
        none (a replay, or a server's quiet ping), else ``(None, write, stages)`` with the
        transaction's work ``write(tx)``, which returns the answer and the device row's version
        it wrote (``stages`` gets the index step's seconds and the
        seconds of rules decided before the transaction, then the times the state was read, the
        rules were done and the records were written in it)."""
        snap = self._engine.refresh()  # the one snapshot this ping reads, whatever changes meanwhile
        clock = time.perf_counter
        t0 = clock()
        replayed = self._replay(ping)
        if replayed is not None:
            return replayed, None, []
        at, noticed = devices.clock(ping.timestamp, datetime.now(UTC),
                                    self.settings.trust_client_clock)
        fix = _Fix(at, at.timestamp(),
                   self.settings.default_accuracy_m if ping.accuracy_m is None else ping.accuracy_m,
                   tuple(noticed))
        hits = snap.places.hits(ping.lat, ping.lon, fix.accuracy_m, at)
        nearest = snap.places.nearest_one(ping.lat, ping.lon)
        stages: list[float] = [clock() - t0]
        early = None  # (version, outcome) decided on this process's copy, to reuse
        t1 = clock()
        if self._engine.serving and ping.ping_id is None and quiet:
            answer, early = self._quiet(snap, ping, fix, hits, nearest, defer_check)
            if answer is not None:
                if self._engine.stage_times is not None:
                    self._engine.stage_times.append((stages[0], 0.0, clock() - t1, 0.0, 0.0))
                return answer, None, []
        stages.append(clock() - t1)

        def write(tx) -> tuple[PingAnswer, int | None]:  # the answer, the row version written
            replayed = self._replay(ping, tx)  # a twin of this ping may have committed meanwhile
            if replayed is not None:
                return replayed, None
            seen = self.db.generations(tx)  # no decision on what has changed since the snapshot
            if any(seen[k] != snap.generations[k] for k in FOLLOWED):
                raise _Stale(seen)
            state = self.db.devices.load(tx, ping.device_id)
            stages.append(clock())
            if early is not None and early[0] == state.version and not early[1].spent:
                out = early[1]  # the same state, and no budget to read in this transaction
            else:
                out = self._outcome(snap, tx, state, ping, fix, hits, nearest)
            stages.append(clock())
            if not self.db.devices.save(tx, out.state, state.version):
                # the copy was stale: read the row (we hold the write lock) and decide again
                state = self.db.devices.load(tx, ping.device_id, cached=False)
                out = self._outcome(snap, tx, state, ping, fix, hits, nearest)
                if not self.db.devices.save(tx, out.state, state.version):
                    raise WriteContention(f"device {ping.device_id!r} changed under a write lock")
            answer = self._record(tx, snap, ping, fix, out, nearest)
            stages.append(clock())
            return answer, out.state.version
        return None, write, stages

    def _quiet(self, snap: Snapshot, ping: Ping, fix: _Fix, hits: dict, nearest: StoreHit | None,
               defer_check: bool = False) -> tuple[PingAnswer | None, tuple[int | None, _Outcome] | None]:
        """A server's quiet ping: no event, no offer. Decided on this process's copy of the
        device's state with no write transaction; its new position and time are kept in memory
        and written behind within a second (``Devices.flush``). None when the ping must take the
        write path: no copy here, something happens, or another writer changed the row (one
        read of its version); the outcome decided on the copy then comes back with its version,
        for the write path to reuse when the row is still at it. A killed server forgets at most
        that second of quiet positions; never an event, a push or a reply."""
        state = self.db.devices.kept(ping.device_id)
        if state is None or state.trip is not None:  # a trip moves with every ping: written
            return None, None
        early = None
        if self._settled(snap, state, ping, fix, hits, nearest):
            # the short cut: no event, no campaign in reach, nothing odd; the rules need not run
            answer = PingAnswer.of((), NO_DECISION, nearest, ())
            moved = (fix.ts, ping.lat, ping.lon, fix.accuracy_m)
        else:
            out = self._outcome(snap, None, state, ping, fix, hits, nearest)
            early = (state.version, out)
            if out.events or out.decision.chosen is not None or out.decision.held_out:
                return None, early  # something to record: the write path
            answer = PingAnswer.of(out.events, out.decision, nearest, out.flags)
            after = out.state
            moved = (after.last_ts, after.last_lat, after.last_lon, after.last_accuracy_m)
        if defer_check:  # PostgreSQL: changes are announced (followed at the ping's start); the
            # row's version is checked with the other quiet pings of this loop turn
            return _Unchecked(answer, state.version, moved), None
        # current? Only another connection's commit can have changed the row or the places and
        # campaigns (this one's own changes are in force already): while the data version
        # holds still, nothing is read; once it moves, the counters and the row once each
        data_version = self.db.data_version()
        if data_version != self._quiet_at:
            if self._engine.follow(self.db.generations()):
                return None, early
            self._quiet_at = data_version
        if not self.db.devices.is_current(ping.device_id, state.version, data_version):
            return None, early
        self.db.devices.keep(ping.device_id, *moved)
        return answer, None

    def _settled(self, snap: Snapshot, state: DeviceState, ping: Ping, fix: _Fix, hits: dict,
                 nearest: StoreHit | None) -> bool:
        """Whether this ping surely makes no event and has no campaign to consider, told from
        the index's answer and the state alone (:func:`devices.settled`): nothing odd about the
        fix, no store within any nearby campaign's radius, no visit begun, ended or long
        enough for a dwell campaign."""
        if fix.flags or devices.movement_flags(state, ping.lat, ping.lon, fix.ts, fix.accuracy_m,
                                               self.settings.max_speed_mps):
            return False
        targeting = snap.targeting
        if nearest is not None and nearest.distance_m <= targeting.nearby_reach_m and \
                targeting.nearby_reach(ping.lat, ping.lon):
            return False
        dwell = targeting.dwell_thresholds(state.visits) if targeting.has_dwell else {}
        return devices.settled(state.visits, hits, fix.ts, fix.accuracy_m, dwell)

    def _replay(self, ping: Ping, tx=None) -> PingAnswer | None:
        """The first answer to this ``ping_id``, when there was one; :class:`Conflict` when it
        answered a ping that said something else (an idempotency key reused)."""
        if ping.ping_id is None:
            return None
        found = self.db.devices.reply(ping.device_id, ping.ping_id, tx)
        if found is None:
            return None
        body, request = found
        if request is not None and request != ping_digest(ping):
            raise Conflict(f"ping_id {ping.ping_id!r} already answered another ping of device "
                           f"{ping.device_id!r} (other position, time, accuracy or segments); "
                           "a retry must send the same body, a new ping a new ping_id")
        return PingAnswer.replay(body)

    def _outcome(self, snap: Snapshot, tx, state: DeviceState, ping: Ping, fix: _Fix,
                 hits: dict, nearest: StoreHit | None) -> _Outcome:
        """The rules step: flags, events and the decision, from values (the campaigns' spend
        is read in the ping's transaction, so budgets hold across processes; with ``tx`` None,
        outside one, for a ping that will not push)."""
        flags = [*fix.flags, *devices.movement_flags(state, ping.lat, ping.lon, fix.ts,
                                                     fix.accuracy_m, self.settings.max_speed_mps)]
        if "out_of_order" in flags:  # changes nothing (the write only proves the state current)
            return _Outcome(devices.next_state(state, new_version()), [], NO_DECISION, flags)
        suspicious = "suspicious_movement" in flags
        places, targeting = snap.places, snap.targeting
        away = {fid: places.distance_to_fence(fid, ping.lat, ping.lon, fix.at)
                for fid in devices.leaving(state.visits, hits, fix.accuracy_m)}
        dwell = targeting.dwell_thresholds({**hits, **state.visits}) if targeting.has_dwell else {}
        events, visits = devices.transition(state.visits, hits, fix.ts, fix.accuracy_m, away, dwell)
        # a late ping's events count (visits need them), but it pushes nothing: no candidates
        candidates = [] if "late" in fix.flags else \
            targeting.ping_candidates(events, hits, ping.lat, ping.lon, fix.accuracy_m, nearest)
        budgeted = sorted({c.campaign.id for c in candidates if c.campaign.budget_total is not None})
        decision = decide(
            candidates, device_id=ping.device_id, segments=frozenset(ping.segments), at=fix.at,
            ts=fix.ts, opted_out=state.opted_out, suspicious=suspicious,
            interval_blocked=state.last_offer_ts is not None and
            fix.ts - state.last_offer_ts < self.settings.min_offer_interval_s,
            history=state.history, spend=self.db.devices.spend(tx, budgeted))
        chosen = decision.chosen
        pushed = None if chosen is None else \
            (chosen.campaign.id, fix.ts, local_day(fix.at, chosen.store.timezone))
        moved_to = None if suspicious else (fix.ts, ping.lat, ping.lon, fix.accuracy_m)
        trip = None if state.trip is None or suspicious else \
            (state.trip, self._trip_step(places, state.trip, ping, fix, visits))
        after = devices.next_state(state, new_version(), moved_to=moved_to, visits=visits,
                                   pushed=pushed, trip=devices.KEEP if trip is None else trip[1].trip)
        return _Outcome(after, [] if suspicious else events, decision, flags, bool(budgeted), trip)

    def _posted(self) -> None:
        """After a commit: when events went to the outbox, the delivery worker looks now."""
        if self._outbox_written:
            self._outbox_written = False
            self._engine.delivery.wake()

    def to_outbox(self, tx, snap: Snapshot, events: list) -> None:
        """Put events in the outbox of each enabled subscription that wants them (in ``tx``),
        and have this process's delivery worker look once the transaction has committed."""
        rows = [(w.id, e) for e in events for w in snap.webhooks if w.wants(e.type)]
        if rows:
            self.db.webhooks.enqueue(tx, rows)
            self._outbox_written = True

    def _trip_step(self, places: Places, trip: Trip, ping: Ping, fix: _Fix, visits) -> TripStep:
        """What this ping does to the device's trip (:func:`geo_engine.trips.step`): the
        geodesic distance to its store measured here, the rules there."""
        store = places.find_store(trip.store_id)
        away = float("inf") if store is None else distance_m(ping.lat, ping.lon, store.lat, store.lon)
        return trips.step(trip, ts=fix.ts, distance_m=away, visits=visits,
                          expiry_s=self.settings.trip_expiry_s, client_eta_s=ping.eta_s)

    def _record(self, tx, snap: Snapshot, ping: Ping, fix: _Fix, out: _Outcome,
                nearest: StoreHit | None) -> PingAnswer:
        """The durable record step: events, the trip, the push, the webhooks' outbox and the
        reply, in the ping's transaction."""
        self.db.devices.record_events(tx, ping.device_id, fix.ts, out.events, ping.ping_id)
        trip_view, trip_events = None, ()
        if out.trip is not None:
            before, moved = out.trip
            trip_view, trip_events = moved.as_dict(before), moved.events
            self.db.trips.moved(tx, before.trip_id, moved.status, fix.ts, moved.distance_m,
                                moved.eta_s, trip_view["arrived_elsewhere"])
            self.db.devices.record_trip_events(tx, ping.device_id, fix.ts, trip_events, ping.ping_id)
        self.db.devices.record_holdouts(tx, ping.device_id, fix.ts, out.decision.held_out,
                                        ping.ping_id)
        c = out.decision.chosen
        if c is not None:
            self.db.devices.record_push(tx, ping.device_id, c.campaign.id, c.store.id,
                                        c.geofence_id, fix.ts, local_day(fix.at, c.store.timezone),
                                        c.distance_m, ping.ping_id,
                                        budgeted=c.campaign.budget_total is not None)
        if snap.webhooks:
            sent = trip_view
            if trip_events:  # the receiver gets the whole trip: its metadata names the order
                record = self.db.trips.get(out.trip[0].trip_id, tx)
                sent = trip_view if record is None else {**full_trip_view(record, fix.ts),
                                                         "distance_m": trip_view["distance_m"],
                                                         "eta_s": trip_view["eta_s"]}
            self.to_outbox(tx, snap, outgoing(ping.device_id, fix.ts, out.events,
                                               [(e, sent) for e in trip_events], c))
        answer = PingAnswer.of(out.events, out.decision, nearest, out.flags, trip_view)
        if ping.ping_id is not None:
            self.db.devices.save_reply(tx, ping.device_id, ping.ping_id, answer.body,
                                       ping_digest(ping))
        return answer
