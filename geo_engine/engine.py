"""The Engine: a database, the indexes built from it, and the queries the CLI and API share.

``geo-engine nearest --json`` and ``GET /v1/stores/nearest`` both call :meth:`Engine.nearest`,
and ``locate`` both call :meth:`Engine.locate`, so the two surfaces cannot drift.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from .campaigns import Campaign, local_time, parse_campaign
from .config import Settings
from .decide import Candidate, Counts, Decision, decide
from .devices import POOR_ACCURACY_M, DeviceState, Event, EventType, transition
from .errors import InvalidInput, NotFound, StorageError, ValidationFailed
from .geodesy import GEOD, check_lat_lon, distance_m, lonlat_boxes
from .io.places import Dataset, check_references, load_files, parse_geojson
from .model import Confidence, Store
from .spatial.fences import FenceIndex
from .spatial.grids import BoxGrid
from .spatial.stores import StoreIndex
from .store import Database, device_from_row, new_version

__all__ = ["Engine", "FenceHit", "Location", "Ping", "StoreHit"]


@dataclass(frozen=True)
class Ping:
    """A location update from a device (SPEC section 6). Validated on construction."""

    device_id: str
    lat: float
    lon: float
    accuracy_m: float | None = None
    timestamp: datetime | None = None
    ping_id: str | None = None
    segments: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        d = self.device_id
        if not isinstance(d, str) or not 1 <= len(d) <= 128 or not d.isprintable():
            raise InvalidInput("device_id must be 1 to 128 printable characters")
        lat, lon = check_lat_lon(self.lat, self.lon)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        if self.accuracy_m is not None and not (math.isfinite(self.accuracy_m) and self.accuracy_m >= 0):
            raise InvalidInput(f"accuracy_m must be a number of metres >= 0, got {self.accuracy_m}")
        if self.timestamp is not None and self.timestamp.tzinfo is None:
            raise InvalidInput("timestamp must carry a time zone (RFC 3339, like 2026-11-22T09:15:00Z)")


@dataclass(frozen=True)
class StoreHit:
    """A store found near a point, with its geodesic distance in metres."""

    store_id: str
    name: str
    lat: float
    lon: float
    distance_m: float

    def as_dict(self) -> dict:
        return {"store_id": self.store_id, "name": self.name, "lat": self.lat, "lon": self.lon,
                "distance_m": round(self.distance_m, 3)}


@dataclass(frozen=True)
class FenceHit:
    """A geofence that a fix is in or touches, and how surely."""

    geofence_id: str
    store_id: str
    confidence: Confidence

    def as_dict(self) -> dict:
        return {"geofence_id": self.geofence_id, "store_id": self.store_id,
                "confidence": str(self.confidence)}


@dataclass(frozen=True)
class Location:
    """What a ping at a point would see: the geofences it is in and the nearest store."""

    geofences: list[FenceHit]
    nearest_store: StoreHit | None

    def as_dict(self) -> dict:
        near = self.nearest_store
        return {"geofences": [g.as_dict() for g in self.geofences],
                "nearest_store": None if near is None else
                {"store_id": near.store_id, "distance_m": round(near.distance_m, 3)}}


class Engine:
    """Stores and geofences in a database, with indexes that follow every import.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    database : Database, optional
        Defaults to the file ``settings.db``.
    """

    def __init__(self, settings: Settings | None = None, database: Database | None = None):
        #: when a list, handle_ping appends (index, state, rules, record) seconds per ping
        self.stage_times: list[tuple[float, float, float, float]] | None = None
        self.settings = settings or Settings.from_env()
        self.db = database or Database(self.settings.db)
        self._serving = False  # start_serving: build what pings query at every reload
        self.reload()
        # device id -> its row as last read or written here (plain values, which the garbage
        # collector need not scan); the row's version in the database is the truth
        self._devices: dict[str, tuple] = {}

    def warm_devices(self) -> int:
        """Read the most recently seen devices' state into memory (``serve`` does, at start):
        their first pings then skip the read. Return how many. Other commands need none."""
        for row in reversed(self.db.recent_device_rows(_DEVICE_CACHE)):  # oldest first, as kept
            self._devices.setdefault(row[0], row)
        return len(self._devices)

    def start_serving(self) -> int:
        """Ready a long-running server (``serve``; bench_ping does the same): the grids pings
        query (:meth:`_prepare_for_pings`, again at every reload), a checkpointer thread, the
        recent devices' rows in memory, and everything loaded so far moved out of the cyclic
        garbage collector's sight (``gc.freeze``). Return the devices read.

        Measured in bench_ping: with 100k devices in memory a full collection took 90 ms and
        more; frozen, the whole ping's mean was 336 to 360 us in three runs, against 381 to 459.
        """
        self._serving = True
        self._prepare_for_pings()
        self.db.start_checkpointer()
        n = self.warm_devices()
        gc.collect()
        gc.freeze()
        return n

    def _prepare_for_pings(self) -> None:
        """Build what pings query (the stores' grid, each nearby campaign's reach) now, in a
        server's start or reload, rather than in the first ping to ask: the reach of a campaign
        over 25k stores took 0.37 s."""
        self.store_index.prepare_point_queries()
        for c in self._nearby_campaigns:
            self._reach_of(c)

    def reload(self) -> None:
        """Rebuild the indexes (and the campaign list) from the database."""
        seen = self.db.generations()  # read first: a change made meanwhile shows next time
        self._checked = time.monotonic()
        self.stores = self.db.store_arrays()
        self.store_index = StoreIndex(self.stores.lats, self.stores.lons)
        self.fence_index = FenceIndex(self.db.geofences())
        self._fence_pos = {f.id: i for i, f in enumerate(self.fence_index.fences)}
        # store details (tags, time zone, hours) for the decision: all of them in one query
        # when they fit easily in memory, else read on first use and kept
        self._store_cache: dict[str, Store] = {}
        if len(self.stores) <= _PRELOAD_STORES:
            self._store_cache = {s.id: s for s in self.db.stores()}
        self._seen = seen
        self.reload_campaigns(seen["campaigns"])

    def reload_campaigns(self, generation: int | None = None) -> None:
        """Re-read the campaigns (``generation``: their change counter, read before them)."""
        if generation is None:
            generation = self.db.generations()["campaigns"]
        # only the campaigns' counter: a change to places made meanwhile must still show
        self._seen["campaigns"] = generation
        self.campaigns = [parse_campaign(body) for body in self.db.campaign_bodies()]
        self._active = [c for c in self.campaigns if c.enabled]
        self._targeted: dict[str, tuple[np.ndarray, StoreIndex | None]] = {}
        # for the ping: campaigns by geofence and trigger, each nearby campaign's reach
        self._by_fence: dict[str, _OnFence] = {}
        # the campaigns naming each geofence id, store id and tag (targets_fence, as maps)
        self._by_fence_id: dict[str, list[Campaign]] = {}
        self._by_store_id: dict[str, list[Campaign]] = {}
        self._by_tag: dict[str, list[Campaign]] = {}
        for c in self._active:
            if c.trigger != "nearby":
                for keys, into in ((c.geofence_ids, self._by_fence_id),
                                   (c.store_ids, self._by_store_id), (c.tags, self._by_tag)):
                    for key in keys:
                        into.setdefault(key, []).append(c)
        self._nearby_campaigns = [c for c in self._active if c.trigger == "nearby"]
        self._reach: dict[str, BoxGrid] = {}
        if self._serving:
            self._prepare_for_pings()
        self._has_dwell = any(c.trigger == "dwell" for c in self._active)
        self._nearby_reach = max((c.radius_m for c in self._active if c.trigger == "nearby"),
                                 default=-1.0)

    def refresh(self) -> None:
        """Follow changes made by another process on the same database (at most every
        ``reload_check_s``): stores and geofences rebuild the indexes, campaigns the list."""
        now = time.monotonic()
        if now - self._checked < self.settings.reload_check_s:
            return
        self._checked = now
        seen = self.db.generations()
        if seen["places"] != self._seen["places"]:
            self.reload()
        elif seen["campaigns"] != self._seen["campaigns"]:
            self.reload_campaigns()

    def stores_targeted_by(self, campaign: Campaign) -> tuple[np.ndarray, StoreIndex | None]:
        """Positions of the stores a campaign targets (for ``nearby``) and an index over them.

        Found once per campaign and kept until the campaigns or stores change.
        """
        found = self._targeted.get(campaign.id)
        if found is None:
            pos = np.flatnonzero([campaign.targets_store(self.store(s)) for s in self.stores.ids])
            index = StoreIndex(self.stores.lats[pos], self.stores.lons[pos]) if len(pos) else None
            found = self._targeted[campaign.id] = (pos, index)
        return found

    # --- files -------------------------------------------------------------------------------

    def validate(self, paths: Sequence[str | Path]) -> Dataset:
        """Return what the files hold, or raise ValidationFailed listing every problem.

        Stores already in the database count as known to the files' geofences.
        """
        return load_files(paths, known_store_ids=self.db.store_ids())

    def import_files(self, paths: Sequence[str | Path]) -> tuple[dict[str, int], Dataset]:
        """Validate the files, then load them in one transaction (all or nothing); reindex."""
        data = self.validate(paths)
        _derive_timezones(data)
        counts = self.db.import_dataset(data)
        self.reload()
        return counts, data

    def import_geojson(self, text: str, source: str = "request") -> dict[str, int]:
        """Validate a FeatureCollection and load it, all or nothing (the HTTP import)."""
        data, problems = parse_geojson(text, source)
        problems += check_references(data, self.db.store_ids())
        if problems:
            raise ValidationFailed(problems)
        _derive_timezones(data)
        counts = self.db.import_dataset(data)
        self.reload()
        return counts

    def geofence_feature(self, geofence_id: str) -> dict:
        """One geofence as a GeoJSON Feature (properties as they would be imported)."""
        self.refresh()
        fence = self.geofence(geofence_id)
        if fence is None:
            raise NotFound(f"no geofence {geofence_id!r}")
        return _feature(fence)

    def geofence_collection(self) -> dict:
        self.refresh()
        return {"type": "FeatureCollection", "features": [_feature(f) for f in self.fence_index.fences]}

    def nearby_geofences(self, lat: float, lon: float, limit: int = 20) -> list[dict]:
        """The ``limit`` geofences nearest by distance to their boundary (0 inside), as circles.

        Each is the geofence's enclosing circle (``lat``, ``lon``, ``radius_m``): what a phone
        hands to iOS or Android region monitoring. Nearest first, ties by id.
        """
        self.refresh()
        lat, lon = check_lat_lon(lat, lon)
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be from 1 to 1000, got {limit}")
        ranked = self.fence_index.nearest(lat, lon, limit)
        out = []
        for i, d in ranked:
            f = self.fence_index.fences[i]
            c_lat, c_lon, r = self.fence_index.enclosing_circle(i)
            out.append({"geofence_id": f.id, "store_id": f.store_id, "lat": c_lat, "lon": c_lon,
                        "radius_m": round(r, 2), "distance_m": round(d, 3)})
        return out

    # --- queries -----------------------------------------------------------------------------

    def _hit(self, i: int, distance: float) -> StoreHit:
        s = self.stores
        return StoreHit(s.ids[i], s.names[i], float(s.lats[i]), float(s.lons[i]), float(distance))

    def nearest(self, lat: float, lon: float, k: int | None = None,
                radius_m: float | None = None) -> list[StoreHit]:
        """Return the ``k`` nearest stores, or with ``radius_m`` every store within it.

        Nearest first, ties by store id; distances are WGS84 geodesic metres.
        """
        self.refresh()
        lat, lon = check_lat_lon(lat, lon)
        if radius_m is not None:
            if not radius_m >= 0:
                raise InvalidInput(f"radius_m must be a number of metres >= 0, got {radius_m}")
            idx, dist = self.store_index.within(lat, lon, radius_m)
        else:
            k = self.settings.default_k if k is None else k
            if k < 1:
                raise InvalidInput(f"k must be at least 1, got {k}")
            idx, dist = self.store_index.nearest(lat, lon, k)
        return [self._hit(i, d) for i, d in zip(idx.tolist(), dist.tolist(), strict=True)]

    def locate(self, lat: float, lon: float, accuracy_m: float = 0.0,
               at: datetime | None = None) -> Location:
        """Return the geofences a fix is in or touches (with confidence) and the nearest store.

        Touches no device state. Geofences are ordered by confidence, highest first, then id.
        """
        self.refresh()
        lat, lon = check_lat_lon(lat, lon)
        if not accuracy_m >= 0:
            raise InvalidInput(f"accuracy_m must be a number of metres >= 0, got {accuracy_m}")
        fences = self.fence_index.fences
        hits = [FenceHit(fences[i].id, fences[i].store_id, conf)
                for i, conf in self.fence_index.containing(lat, lon, accuracy_m, at)]
        hits.sort(key=lambda h: -h.confidence.rank)
        near = self.store_index.nearest_one(lat, lon)
        return Location(hits, None if near is None else self._hit(*near))

    # --- campaigns, geofences, devices -------------------------------------------------------

    def put_campaign(self, campaign_id: str, body: dict) -> Campaign:
        """Validate and store a campaign (create or replace); it applies from the next ping."""
        campaign = parse_campaign(body, campaign_id)
        self.db.put_campaign(campaign.id, campaign.body)
        self.reload_campaigns()
        return campaign

    def campaign(self, campaign_id: str) -> Campaign:
        self.refresh()
        for c in self.campaigns:
            if c.id == campaign_id:
                return c
        raise NotFound(f"no campaign {campaign_id!r}")

    def delete_campaign(self, campaign_id: str) -> None:
        if not self.db.delete_campaign(campaign_id):
            raise NotFound(f"no campaign {campaign_id!r}")
        self.reload_campaigns()

    def delete_geofence(self, geofence_id: str) -> None:
        if not self.db.delete_geofence(geofence_id):
            raise NotFound(f"no geofence {geofence_id!r}")
        self.reload()

    def set_consent(self, device_id: str, location_offers: bool) -> None:
        Ping(device_id, 0.0, 0.0)  # the same device id rules as a ping
        self.db.set_consent(device_id, location_offers)
        self._devices.pop(device_id, None)

    def forget_device(self, device_id: str) -> None:
        self._devices.pop(device_id, None)
        if not self.db.forget_device(device_id):
            raise NotFound(f"no device {device_id!r}")

    def store(self, store_id: str) -> Store:
        s = self._store_cache.get(store_id)
        if s is None:
            found = self.db.stores([store_id])
            if not found:
                raise NotFound(f"no store {store_id!r}")
            s = self._store_cache[store_id] = found[0]
        return s

    # --- the ping ----------------------------------------------------------------------------

    def handle_ping(self, ping: Ping) -> bytes:
        """Return the JSON answer to a ping, after recording its events and any push.

        parse -> index lookup -> device state -> rules -> durable record -> response. Reads and
        writes of one ping are one transaction (BEGIN IMMEDIATE), so two pings of a device never
        both take a cap's last slot, in one process or several; the push is committed before
        the answer leaves. A repeated ``ping_id`` gets the first answer, byte for byte.

        The device's state comes from this process's cache when it has it; the write back is
        conditional on the row's version, so a stale copy (another worker, a consent change)
        is caught inside the transaction, re-read, and the ping decided again.
        """
        self.refresh()
        clock = time.perf_counter
        t0 = clock()
        if ping.ping_id is not None:
            cached = self.db.reply(ping.device_id, ping.ping_id)
            if cached is not None:
                return cached
        at = ping.timestamp or datetime.now(UTC)
        ts = at.timestamp()
        acc = self.settings.default_accuracy_m if ping.accuracy_m is None else ping.accuracy_m
        fences = self.fence_index.fences
        hits = {fences[i].id: (fences[i].store_id, conf)
                for i, conf in self.fence_index.containing(ping.lat, ping.lon, acc, at)}
        near = self.store_index.nearest_one(ping.lat, ping.lon)
        nearest_m = math.inf if near is None else near[1]
        t1 = clock()
        with self.db.atomic() as conn:
            if ping.ping_id is not None:  # a twin of this ping may have committed meanwhile
                cached = self.db.reply(ping.device_id, ping.ping_id)
                if cached is not None:
                    return cached
            row = self._devices.get(ping.device_id)
            state = device_from_row(row) if row is not None else \
                self.db.load_device(conn, ping.device_id)
            t2 = clock()
            out = self._outcome(conn, state, ping, at, ts, acc, hits, nearest_m)
            t3 = clock()
            row = self.db.save_device(conn, out.state, state.version)
            if row is None:
                # the cached copy was stale: read the row (we hold the write lock) and redo
                state = self.db.load_device(conn, ping.device_id)
                out = self._outcome(conn, state, ping, at, ts, acc, hits, nearest_m)
                row = self.db.save_device(conn, out.state, state.version)
                if row is None:
                    raise StorageError(f"device {ping.device_id!r} changed under a write lock")
            self.db.record_events(conn, ping.device_id, ts, out.events, ping.ping_id)
            decision = out.decision
            if decision.chosen is not None:
                c = decision.chosen
                self.db.record_push(conn, ping.device_id, c.campaign.id, c.store.id,
                                    c.geofence_id, ts, _local_day(at, c.store), c.distance_m,
                                    ping.ping_id)
            body = orjson.dumps({
                "events": [e.as_dict() for e in out.events],
                "offer": decision.offer_dict(),
                "decision": decision.as_dict(),
                "nearest_store": None if near is None else {
                    "store_id": self.stores.ids[near[0]], "distance_m": round(nearest_m, 3)},
                "flags": out.flags,
            })
            if ping.ping_id is not None:
                self.db.save_reply(conn, ping.device_id, ping.ping_id, body)
            # cached before the commit: should the commit fail, the version check catches it
            self._remember(row)
        if self.stage_times is not None:  # benchmarks/bench_ping.py: where a ping's time goes
            t4 = clock()
            self.stage_times.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        return body

    def _outcome(self, conn, state: DeviceState, ping: Ping, at: datetime, ts: float, acc: float,
                 hits: dict, nearest_m: float) -> _Outcome:
        """The ping's events, decision and flags, and the device's state after it."""
        flags = []
        out_of_order = state.last_ts is not None and ts < state.last_ts
        if out_of_order:
            flags.append("out_of_order")
        if acc > POOR_ACCURACY_M:
            flags.append("low_accuracy")
        suspicious = not out_of_order and self._impossible_move(state, ping, ts, acc)
        if suspicious:
            flags.append("suspicious_movement")
        after = DeviceState(state.device_id, state.last_ts, state.last_lat, state.last_lon,
                            state.last_accuracy_m, state.last_offer_ts, state.opted_out,
                            state.visits, new_version(), state.history)
        if out_of_order:  # changes nothing (the write only proves the state was current)
            return _Outcome(after, [], Decision(0, [], None), flags)
        events, visits = transition(
            state.visits, hits, ts, acc, lambda fid: self._distance_to(fid, ping, at),
            self._dwell_thresholds(hits, state.visits))
        candidates = self._candidates(events, hits, ping, acc, nearest_m)
        decision = decide(
            candidates, device_id=ping.device_id, segments=frozenset(ping.segments),
            at=at, ts=ts, opted_out=state.opted_out, suspicious=suspicious,
            interval_blocked=state.last_offer_ts is not None and
            ts - state.last_offer_ts < self.settings.min_offer_interval_s,
            counts=lambda c: self._counts(conn, state, c, at))
        if suspicious:  # a glitch or a spoof: remember nothing of it
            events = []
        else:
            after.visits = visits
            after.last_ts, after.last_lat, after.last_lon = ts, ping.lat, ping.lon
            after.last_accuracy_m = acc
        if decision.chosen is not None:
            c = decision.chosen
            after.history = _add_push(state.history, c.campaign.id, ts, _local_day(at, c.store))
            after.last_offer_ts = ts
        return _Outcome(after, events, decision, flags)

    def _remember(self, row: tuple) -> None:
        cache = self._devices
        cache.pop(row[0], None)  # re-inserted last: the oldest entries go first
        cache[row[0]] = row
        if len(cache) > _DEVICE_CACHE:
            for device_id in list(itertools.islice(cache, _DEVICE_CACHE // 10)):
                del cache[device_id]

    def _impossible_move(self, state, ping: Ping, ts: float, acc: float) -> bool:
        if state.last_ts is None or state.last_lat is None:
            return False
        moved = distance_m(state.last_lat, state.last_lon, ping.lat, ping.lon)
        slack = acc + (state.last_accuracy_m or 0.0)
        dt = ts - state.last_ts
        return max(0.0, moved - slack) > self.settings.max_speed_mps * max(dt, 1e-3)

    def _distance_to(self, fence_id: str, ping: Ping, at: datetime) -> float:
        i = self._fence_pos.get(fence_id)  # the position: distance_m takes it
        if i is None or not self.fence_index.fences[i].active(at):
            return math.inf
        return self.fence_index.distance_m(i, ping.lat, ping.lon)

    def _dwell_thresholds(self, hits: dict, visits: dict) -> dict[str, float]:
        """Geofence id -> the shortest ``dwell_s`` asked of it, for those the fix is in or
        has a visit open in."""
        out: dict[str, float] = {}
        if self._has_dwell:
            for fid in itertools.chain(hits, visits):
                need = self._campaigns_on(fid).dwell_s
                if need is not None:
                    out[fid] = need
        return out

    @property
    def active_campaigns(self) -> list[Campaign]:
        """The enabled campaigns, as the decision sees them."""
        return self._active

    def geofence(self, geofence_id: str):
        """The indexed geofence with this id, or None."""
        i = self._fence_pos.get(geofence_id)
        return None if i is None else self.fence_index.fences[i]

    def find_store(self, store_id: str) -> Store | None:
        """The store with this id, or None (read once, then kept)."""
        try:
            return self.store(store_id)
        except NotFound:
            return None

    def _campaigns_on(self, fence_id: str) -> _OnFence:
        """The active campaigns targeting a geofence, by trigger (found once, then kept)."""
        found = self._by_fence.get(fence_id)
        if found is None:
            found = self._by_fence[fence_id] = self._find_campaigns_on(fence_id)
        return found

    def _find_campaigns_on(self, fence_id: str) -> _OnFence:
        fence = self.geofence(fence_id)
        if fence is None:
            return _NO_CAMPAIGNS
        store = self.find_store(fence.store_id)
        found: dict[str, Campaign] = {}  # what Campaign.targets_fence says, from the maps
        for c in itertools.chain(self._by_fence_id.get(fence.id, ()),
                                 self._by_store_id.get(fence.store_id, ())):
            found[c.id] = c
        by_tag = self._by_tag
        if by_tag:
            for tag in itertools.chain(fence.tags, store.tags if store else ()):
                for c in by_tag.get(tag, ()):
                    found[c.id] = c
        if not found:
            return _NO_CAMPAIGNS
        by_trigger: dict[str, list[Campaign]] = {}
        for cid in sorted(found):
            by_trigger.setdefault(found[cid].trigger, []).append(found[cid])
        dwell = by_trigger.get("dwell")
        return _OnFence(by_trigger, min(c.dwell_s for c in dwell) if dwell else None)

    def _nearby(self, campaign: Campaign, lat: float, lon: float) -> list[tuple[float, int]]:
        """(metres, store position) of the stores within a nearby campaign's radius, nearest
        first, ties by id. The campaign's reach is held as boxes around its stores."""
        radius = campaign.radius_m
        near = self._reach_of(campaign).query([(lon, lat, lon, lat)])
        if near is None:  # near a pole, or reaches too wide for the grid: the k-d tree
            pos, index = self.stores_targeted_by(campaign)
            if index is None:
                return []
            idx, dist = index.within(lat, lon, radius)
            return sorted(zip(dist.tolist(), pos[idx].tolist(), strict=True))
        la, lo, inv = self.stores.lats, self.stores.lons, GEOD.inv
        found = [(inv(lon, lat, float(lo[p]), float(la[p]))[2], p) for p in near]
        return sorted(f for f in found if f[0] <= radius)

    def _reach_of(self, campaign: Campaign) -> BoxGrid:
        """A nearby campaign's reach: boxes around its stores covering its radius (made once)."""
        grid = self._reach.get(campaign.id)
        if grid is None:
            pos, _ = self.stores_targeted_by(campaign)
            lats, lons = self.stores.lats[pos].tolist(), self.stores.lons[pos].tolist()
            boxes, owners = [], []
            for p, la, lo in zip(pos.tolist(), lats, lons, strict=True):
                for b in lonlat_boxes(la, lo, campaign.radius_m):
                    boxes.append(b)
                    owners.append(p)
            grid = self._reach[campaign.id] = BoxGrid(np.array(boxes, dtype=float).reshape(-1, 4),
                                                     np.array(owners, dtype=np.int64))
        return grid

    def _candidates(self, events: list[Event], hits, ping: Ping, acc: float,
                    nearest_m: float) -> list[Candidate]:
        out: list[Candidate] = []
        for e in events:
            campaigns = self._campaigns_on(e.geofence_id).by_trigger.get(e.type)
            if not campaigns:
                continue
            store = self.find_store(e.store_id)
            if store is None:
                continue
            conf = e.confidence or (hits[e.geofence_id][1] if e.geofence_id in hits else Confidence.HIGH)
            dist = distance_m(ping.lat, ping.lon, store.lat, store.lon)
            for c in campaigns:
                if e.type is EventType.DWELL and (e.duration_s or 0) < (c.dwell_s or 0):
                    continue
                out.append(Candidate(c, store, e.geofence_id, dist, conf))
        if nearest_m <= self._nearby_reach:  # else no store is within any nearby radius
            for c in self._nearby_campaigns:
                for d, p in self._nearby(c, ping.lat, ping.lon):
                    conf = Confidence.HIGH if d + acc <= c.radius_m else Confidence.MEDIUM
                    out.append(Candidate(c, self.store(self.stores.ids[p]), None, d, conf))
        return out

    def _counts(self, conn, state: DeviceState, c: Candidate, at: datetime) -> Counts:
        camp = c.campaign
        spend = 0 if camp.budget_total is None else self.db.campaign_pushes(conn, camp.id)
        h = state.history.get(camp.id)
        if h is None:
            return Counts(0, 0, None, spend)
        return Counts(h[2].get(_local_day(at, c.store), 0), h[0], h[1], spend)


@dataclass(frozen=True)
class _OnFence:
    """The active campaigns on one geofence, by trigger, and the shortest dwell they ask."""

    by_trigger: dict[str, list[Campaign]]
    dwell_s: float | None


_NO_CAMPAIGNS = _OnFence({}, None)


@dataclass
class _Outcome:
    state: DeviceState
    events: list[Event]
    decision: Decision
    flags: list[str]


def _add_push(history: dict[str, list], campaign_id: str, ts: float, day: str) -> dict[str, list]:
    """``history`` with one more push of a campaign; days older than any cap can ask dropped."""
    oldest = (datetime.fromtimestamp(ts, UTC) - timedelta(days=2)).date().isoformat()
    total, _, days = history.get(campaign_id, (0, None, {}))
    days = {d: n for d, n in days.items() if d >= oldest}
    days[day] = days.get(day, 0) + 1
    return {**history, campaign_id: [total + 1, ts, days]}


def _feature(f) -> dict:
    props = {"id": f.id, "store_id": f.store_id, "name": f.name, "tags": list(f.tags),
             "enabled": f.enabled, "metadata": f.metadata}
    if f.is_circle:
        props["radius_m"] = f.radius_m
    if f.expires_at is not None:
        props["expires_at"] = f.expires_at.isoformat()
    return {"type": "Feature", "id": f.id, "properties": props, "geometry": f.geojson_geometry()}


def _local_day(at: datetime, store: Store) -> str:
    return local_time(at, store.timezone).date().isoformat()


_tz_finder = None
_PRELOAD_STORES = 250_000
_DEVICE_CACHE = 500_000  # device rows kept in memory (each a few hundred bytes)


def _derive_timezones(data: Dataset) -> None:
    """Give stores without a ``timezone`` the IANA zone of their location, offline."""
    global _tz_finder
    missing = [k for k, s in enumerate(data.stores) if s.timezone is None]
    if not missing:
        return
    if _tz_finder is None:
        from timezonefinder import TimezoneFinder

        _tz_finder = TimezoneFinder()
    for k in missing:
        s = data.stores[k]
        zone = _tz_finder.timezone_at(lng=s.lon, lat=s.lat) or "UTC"
        data.stores[k] = dataclasses.replace(s, timezone=zone)
