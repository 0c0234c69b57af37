"""The Engine: a facade over the database and the snapshot that pings, queries and admin share.

``geo-engine nearest --json`` and ``GET /v1/stores/nearest`` both call :meth:`Engine.nearest`,
``locate`` both call :meth:`Engine.locate`, and a ping is :meth:`Engine.handle_ping` from any
surface, so the surfaces cannot drift. Every method returns values (:mod:`geo_engine.model`);
the edges serialize them.

What a ping reads is ``engine.snapshot``, replaced whole (one assignment) when places or
campaigns change here or in another process on the same database; see
:mod:`geo_engine.snapshot`. The steps of a ping each call one module: the snapshot (where is
it), the database (the device's state), :mod:`geo_engine.devices` and :mod:`geo_engine.decide`
(what happens, pure), the database again (the durable record).

It holds no SQL (``db/``), no geometry (``spatial/``) and no rule (``devices``, ``decide``):
it runs the steps in order and keeps the snapshot current.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from . import devices, trips
from .campaign_results import campaign_results, checked_query
from .campaigns import Campaign, local_day, parse_campaign, parse_campaigns
from .commits import GroupCheck, GroupCommit, ThreadedGroupCommit, Unwritten
from .config import Settings
from .db import Database
from .db.devices import new_version
from .decide import decide
from .delivery import Deliverer
from .errors import Conflict, InvalidInput, NotFound, StorageError, ValidationFailed, WriteContention
from .geodesy import check_lat_lon, distance_m
from .io.places import (
    Dataset,
    FileLimits,
    check_references,
    derive_timezones,
    export_collection,
    geofence_feature,
    load_files,
    parse_geojson,
)
from .model import (
    NO_DECISION,
    Decision,
    DeviceState,
    Event,
    Location,
    NearbyFence,
    Ping,
    PingAnswer,
    Store,
    StoreHit,
    Trip,
    ping_digest,
)
from .snapshot import Places, Snapshot
from .tokens import TokenCache, new_token, token_hash
from .trip_desk import TripDesk
from .trips import TripStep
from .webhook_desk import WebhookDesk
from .webhooks import outgoing

__all__ = ["Engine"]


_RETRIES = 20  # a ping decided on a snapshot that changed meanwhile is decided again
_FOLLOWED = ("places", "campaigns", "webhooks")  # the change counters a snapshot is built at


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


class Engine:
    """Stores, geofences and campaigns in a database, and a snapshot that follows every change.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    database : Database, optional
        Defaults to the file ``settings.db``.
    """

    def __init__(self, settings: Settings | None = None, database: Database | None = None):
        #: when a list, handle_ping appends (index, state, rules, record, commit) seconds per ping
        self.stage_times: list[tuple[float, float, float, float, float]] | None = None
        self.settings = settings or Settings.from_env()
        self.db = database or Database(self.settings.database, self.settings.synchronous)
        self._serving = False  # start_serving: build what pings query in every new snapshot
        self._rebuilding = threading.Lock()  # held only to swap a built snapshot in
        self._group: GroupCommit | ThreadedGroupCommit | None = None  # a server's group commit
        self._checks: GroupCheck | None = None  # and its quiet pings' checks (PostgreSQL)
        self._quiet_at: int | None = None  # the data version quiet pings last found current
        #: devices' token hashes in memory (SPEC 6.1), for the API's checks
        self.tokens = TokenCache(self.db.tokens, check_s=self.settings.reload_check_s)
        self._tokens_required: bool | None = None
        #: the webhook delivery worker (started with the server; one at a time a database works)
        st = self.settings
        self.delivery = Deliverer(self.db, lambda: self.refresh().webhooks, st.webhook_retry_s,
                                  st.webhook_backoff_s, st.webhook_timeout_s,
                                  keep_s=st.webhook_keep_days * 86_400.0)
        self._outbox_written = False  # a ping put events in the outbox: wake the worker
        self.trips = TripDesk(self)  # trips started, ended, listed, expired (SPEC 11)
        self.webhooks = WebhookDesk(self)  # subscriptions, deliveries, replays (SPEC 12)
        self.snapshot: Snapshot
        self.reload()

    def start_serving(self) -> int:
        """Ready a long-running server (``serve``; bench_ping does the same): the grids pings
        query (in this snapshot and every later one), a checkpointer thread, the recent
        devices' rows in memory, and everything loaded so far moved out of the cyclic garbage
        collector's sight (``gc.freeze``: with many devices in memory a full collection stalls
        pings). Return how many devices were read."""
        self._serving = True
        self.snapshot.prepare()
        self.db.start_checkpointer()
        self.db.follow(self._changed_elsewhere)  # PostgreSQL: told at once, not polled
        self.db.devices.start_flusher()  # quiet pings' positions, written behind (handle_ping)
        self.db.tallies.start_flusher()  # the reasons campaigns were turned down, counted behind
        self.delivery.start()  # webhooks: the outbox posted (by whichever process holds the lease)
        self.trips.start_sweeper()  # trips that never arrived, expired
        n = self.db.devices.warm()
        self.tokens.warm()  # and their tokens: a first ping of each reads nothing
        gc.collect()
        gc.freeze()
        return n

    @property
    def path(self) -> str:
        """Where the database is (a file path)."""
        return self.db.path

    # --- the snapshot --------------------------------------------------------------------------

    def reload(self) -> None:
        """Rebuild the snapshot from the database (places and campaigns), then swap it in."""
        seen = self.db.generations()  # read first: a change made meanwhile shows next time
        self._checked = time.monotonic()
        places = Places.load(self.db.places)
        self._swap(Snapshot.build(places, self._read_campaigns(), seen, self._serving,
                                  self.db.webhooks.all()))

    def reload_campaigns(self) -> None:
        """Rebuild the snapshot's campaigns over the same places, then swap it in."""
        current = self.snapshot
        now = self.db.generations()
        seen = {**current.generations, "campaigns": now["campaigns"], "webhooks": now["webhooks"]}
        self._swap(Snapshot.build(current.places, self._read_campaigns(), seen, self._serving,
                                  self.db.webhooks.all()))

    def _swap(self, built: Snapshot) -> None:
        """Put a snapshot in force unless one read later already is (builds run concurrently:
        an import's thread and a ping's, each reading the database without a lock of the
        engine's, so that a ping holding a transaction never waits for a build that waits
        for it)."""
        with self._rebuilding:
            current = getattr(self, "snapshot", None)
            if current is None:
                self.snapshot = built
                return
            have, new = current.generations, built.generations
            if all(new[k] >= have[k] for k in _FOLLOWED):
                self.snapshot = built
                return
            newer_campaigns = new["campaigns"] > have["campaigns"] or \
                new["webhooks"] > have["webhooks"]
        if newer_campaigns:  # newer campaigns over older places: over the places in force
            self.reload_campaigns()

    def _read_campaigns(self) -> list[Campaign]:
        return [parse_campaign(body) for body in self.db.campaigns.bodies()]

    def _changed_elsewhere(self, what: str | None) -> None:
        """Another instance committed a change (``what``; None: maybe some were missed): the
        next ping follows it at once instead of at the next poll. (From the listener's thread:
        it only marks the time checked as long ago.)"""
        self._checked = float("-inf")

    def refresh(self) -> Snapshot:
        """The current snapshot, after following changes another process made on the same
        database (looked for at most every ``reload_check_s``; a ping's decision checks
        again, in its transaction)."""
        now = time.monotonic()
        if now - self._checked >= self.settings.reload_check_s:
            self._checked = now
            self._follow(self.db.generations())
        return self.snapshot

    def _follow(self, seen: dict[str, int]) -> bool:
        """Rebuild what the change counters ``seen`` say changed; return whether anything did."""
        have = self.snapshot.generations
        if seen["places"] != have["places"]:
            self.reload()
        elif seen["campaigns"] != have["campaigns"] or seen["webhooks"] != have["webhooks"]:
            self.reload_campaigns()
        else:
            return False
        return True

    # --- files ---------------------------------------------------------------------------------

    def validate(self, paths: Sequence[str | Path]) -> Dataset:
        """Return what the files hold, or raise ValidationFailed listing every problem.

        Stores already in the database count as known to the files' geofences.
        """
        return load_files(paths, known_store_ids=self.db.places.store_ids(),
                          limits=self.file_limits)

    def import_files(self, paths: Sequence[str | Path]) -> tuple[dict[str, int], Dataset]:
        """Validate the files, then load them in one transaction (all or nothing); reindex."""
        data = self.validate(paths)
        return self._import(data), data

    def import_geojson(self, text: str, source: str = "request") -> dict[str, int]:
        """Validate a FeatureCollection and load it, all or nothing (the HTTP import)."""
        data, problems = parse_geojson(text, source, self.file_limits)
        problems += check_references(data, self.db.places.store_ids())
        if problems:
            raise ValidationFailed(problems)
        return self._import(data)

    @property
    def file_limits(self) -> FileLimits:
        return FileLimits(self.settings.max_features, self.settings.max_ring_vertices)

    def _import(self, data: Dataset) -> dict[str, int]:
        derive_timezones(data)
        counts = self.db.places.import_dataset(data.stores, data.geofences)
        self.reload()
        return counts

    # --- queries -------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many stores, geofences and campaigns the database holds."""
        return {**self.db.places.counts(), "campaigns": len(self.refresh().campaigns)}

    def nearest(self, lat: float, lon: float, k: int | None = None,
                radius_m: float | None = None) -> list[StoreHit]:
        """Return the ``k`` nearest stores, or with ``radius_m`` every store within it.

        Nearest first, ties by store id; distances are WGS84 geodesic metres.
        """
        places = self.refresh().places
        lat, lon = check_lat_lon(lat, lon)
        if radius_m is not None:
            if not radius_m >= 0:
                raise InvalidInput(f"radius_m must be a number of metres >= 0, got {radius_m}")
            return places.within(lat, lon, radius_m)
        k = self.settings.default_k if k is None else k
        if k < 1:
            raise InvalidInput(f"k must be at least 1, got {k}")
        return places.nearest(lat, lon, k)

    def locate(self, lat: float, lon: float, accuracy_m: float = 0.0,
               at: datetime | None = None) -> Location:
        """Return the geofences a fix is in or touches (with confidence) and the nearest store.

        Touches no device state. Geofences are ordered by confidence, highest first, then id.
        """
        places = self.refresh().places
        lat, lon = check_lat_lon(lat, lon)
        if not accuracy_m >= 0:
            raise InvalidInput(f"accuracy_m must be a number of metres >= 0, got {accuracy_m}")
        return places.locate(lat, lon, accuracy_m, at)

    def nearby_geofences(self, lat: float, lon: float, limit: int = 20) -> list[NearbyFence]:
        """The ``limit`` geofences nearest by distance to their boundary (0 inside), as circles.

        Each is the geofence's enclosing circle (``lat``, ``lon``, ``radius_m``): what a phone
        hands to iOS or Android region monitoring. Nearest first, ties by id.
        """
        places = self.refresh().places
        lat, lon = check_lat_lon(lat, lon)
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be from 1 to 1000, got {limit}")
        return places.nearby_fences(lat, lon, limit)

    def geofence_feature(self, geofence_id: str) -> dict:
        """One geofence as a GeoJSON Feature (properties as they would be imported)."""
        fence = self.refresh().places.geofence(geofence_id)
        if fence is None:
            raise NotFound(f"no geofence {geofence_id!r}")
        return geofence_feature(fence)

    def geofence_collection(self) -> dict:
        """Every geofence as one GeoJSON FeatureCollection, ordered by id."""
        fences = self.refresh().places.geofences
        return {"type": "FeatureCollection", "features": [geofence_feature(f) for f in fences]}

    # --- campaigns, geofences, devices ---------------------------------------------------------

    def campaigns(self) -> list[Campaign]:
        """Every campaign, enabled or not, ordered by id."""
        return self.refresh().campaigns

    def campaign(self, campaign_id: str) -> Campaign:
        for c in self.refresh().campaigns:
            if c.id == campaign_id:
                return c
        raise NotFound(f"no campaign {campaign_id!r}")

    def results(self, campaign_id: str, start: datetime | None = None, end: datetime | None = None,
                window_days: int | None = None, by: str | None = None) -> dict:
        """A campaign's results (SPEC 9; :mod:`geo_engine.campaign_results`) for the pushes and
        holdouts in ``[start, end)``: by default the 30 days to now, with the settings' window."""
        campaign = self.campaign(campaign_id)
        start, end, window = checked_query(start, end, window_days, by, self.settings.results_window_days)
        return campaign_results(self.db, self.refresh(), campaign, start, end, window,
                                self.settings.visit_min_dwell_s, by)

    def put_campaign(self, campaign_id: str, body: dict) -> Campaign:
        """Validate and store a campaign (create or replace); it applies from the next ping."""
        campaign = parse_campaign(body, campaign_id)
        self.db.campaigns.put(campaign.id, campaign.body, campaign.budget_total is not None)
        self.reload_campaigns()
        return campaign

    def put_campaigns(self, text: str, source: str = "") -> list[Campaign]:
        """Validate every campaign of a JSON file (one object or a list), then store them all
        in one transaction: all or nothing."""
        campaigns = parse_campaigns(text, source)
        self.db.campaigns.put_many([(c.id, c.body) for c in campaigns],
                                   {c.id for c in campaigns if c.budget_total is not None})
        self.reload_campaigns()
        return campaigns

    def delete_campaign(self, campaign_id: str) -> None:
        if not self.db.campaigns.delete(campaign_id):
            raise NotFound(f"no campaign {campaign_id!r}")
        self.reload_campaigns()

    def campaign_spend(self) -> dict[str, int]:
        """Pushes so far of every campaign that has any (its budget's spend)."""
        return self.db.devices.all_spend()

    def delete_geofence(self, geofence_id: str) -> None:
        """Delete a geofence; the visits open in it close without an exit (it is gone)."""
        with self.db.atomic() as tx:
            self.db.devices.drop_visits_in(tx, geofence_id)
            found = self.db.places.delete_geofence(tx, geofence_id)
        if not found:
            raise NotFound(f"no geofence {geofence_id!r}")
        self.reload()

    def store_page(self, limit: int = 100, after: str | None = None) -> list[Store]:
        """Up to ``limit`` stores ordered by id, after the id ``after`` (paging)."""
        return self.db.places.store_page(limit, after)

    def delete_store(self, store_id: str) -> list[str]:
        """Delete a store with its geofences (their open visits close without an exit); return
        the geofence ids deleted with it."""
        with self.db.atomic() as tx:
            fences = self.db.places.fence_ids_of(tx, store_id)
            for fid in fences:
                self.db.devices.drop_visits_in(tx, fid)
            found = self.db.places.delete_store(tx, store_id)
        if not found:
            raise NotFound(f"no store {store_id!r}")
        self.reload()
        return fences

    def export(self) -> dict:
        """Every store and geofence as one FeatureCollection that ``import`` takes back into an
        empty database unchanged (style properties at the top level, as they came in)."""
        return export_collection(self.db.places.stores(), self.refresh().places.geofences)

    def set_consent(self, device_id: str, location_offers: bool) -> None:
        Ping(device_id, 0.0, 0.0)  # the same device id rules as a ping
        self.db.devices.set_consent(device_id, location_offers)

    def forget_device(self, device_id: str) -> None:
        if not self.db.devices.forget(device_id):
            raise NotFound(f"no device {device_id!r}")
        self.tokens.forget(device_id)

    # --- device tokens (SPEC 6.1) --------------------------------------------------------------

    @property
    def tokens_required(self) -> bool:
        """Whether pings and opt-ins sent with the publishable key need the device's token (the
        setting, or when it is ``auto`` the database's own switch, read once)."""
        if self._tokens_required is None:
            setting = self.settings.require_device_token
            self._tokens_required = self.db.tokens.required() if setting == "auto" else \
                setting == "true"
        return self._tokens_required

    def register_device(self, device_id: str, replace: bool = False) -> str:
        """Register a device and return its new token (shown once: only its hash is kept).

        A device that has a token already is a :class:`Conflict`, unless ``replace`` (the admin
        key's right), which gives it a new one and makes the old one stop working.
        """
        Ping(device_id, 0.0, 0.0)  # the same device id rules as a ping
        token = new_token()
        if not self.db.tokens.register(device_id, token_hash(token), replace):
            raise Conflict(f"device {device_id!r} is registered already; its token is with the "
                           "app that registered it (the admin key may register it again, which "
                           "replaces the token)")
        self.tokens.forget(device_id)
        return token

    # --- the ping ------------------------------------------------------------------------------

    def handle_ping(self, ping: Ping) -> PingAnswer:
        """Return the answer to a ping, after recording its events and any push (and count
        the reasons its campaigns were turned down: :meth:`_tally`); see :meth:`_handle_ping`."""
        answer = self._handle_ping(ping)
        self._tally(ping, answer)
        return answer

    async def handle_ping_async(self, ping: Ping) -> PingAnswer:
        """:meth:`handle_ping` for a server's event loop: the same answer, the write in the
        loop's group commit (:mod:`geo_engine.commits`), answered once that has committed."""
        answer = await self._handle_ping_async(ping)
        self._tally(ping, answer)
        return answer

    def _tally(self, ping: Ping, answer: PingAnswer) -> None:
        """The day's count of each reason a campaign was turned down (results' "why not
        sent"), on the UTC day of the ping's time as the engine took it."""
        if answer.decision.rejected:
            at, _ = devices.clock(ping.timestamp, datetime.now(UTC), self.settings.trust_client_clock)
            self.db.tallies.add(at.date().isoformat(), answer.decision.rejected)

    def _handle_ping(self, ping: Ping) -> PingAnswer:
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
                self._follow(stale.seen)
            except WriteContention:  # another instance held a row it needed: nothing kept, again
                contended = True
        else:
            if contended:
                raise WriteContention("the database could not take this ping's write now "
                                      f"(other instances held its rows, {_RETRIES} tries); try again")
            raise StorageError("places or campaigns kept changing under a ping; try again")
        self.db.devices.committed(ping.device_id, written)
        self._posted()
        if self.stage_times is not None and len(stages) == 5:  # bench_ping: where time goes
            index_s, early_s, t2, t3, t4 = stages
            self.stage_times.append((index_s, t2 - t1, early_s + t3 - t2, t4 - t3,
                                     time.perf_counter() - t4))
        return answer

    async def _handle_ping_async(self, ping: Ping) -> PingAnswer:
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
                self._follow(stale.seen)
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
        snap = self.refresh()  # the one snapshot this ping reads, whatever changes meanwhile
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
        if self._serving and ping.ping_id is None and quiet:
            answer, early = self._quiet(snap, ping, fix, hits, nearest, defer_check)
            if answer is not None:
                if self.stage_times is not None:
                    self.stage_times.append((stages[0], 0.0, clock() - t1, 0.0, 0.0))
                return answer, None, []
        stages.append(clock() - t1)

        def write(tx) -> tuple[PingAnswer, int | None]:  # the answer, the row version written
            replayed = self._replay(ping, tx)  # a twin of this ping may have committed meanwhile
            if replayed is not None:
                return replayed, None
            seen = self.db.generations(tx)  # no decision on what has changed since the snapshot
            if any(seen[k] != snap.generations[k] for k in _FOLLOWED):
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
            if self._follow(self.db.generations()):
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
            self.delivery.wake()

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
            self.to_outbox(tx, snap, outgoing(ping.device_id, fix.ts, out.events,
                                               [(e, trip_view) for e in trip_events], c))
        answer = PingAnswer.of(out.events, out.decision, nearest, out.flags, trip_view)
        if ping.ping_id is not None:
            self.db.devices.save_reply(tx, ping.device_id, ping.ping_id, answer.body,
                                       ping_digest(ping))
        return answer
