"""The Engine: a database, the indexes built from it, and the queries the CLI and API share.

``geo-engine nearest --json`` and ``GET /v1/stores/nearest`` both call :meth:`Engine.nearest`,
and ``locate`` both call :meth:`Engine.locate`, so the two surfaces cannot drift.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from .campaigns import Campaign, parse_campaign
from .config import Settings
from .decide import Candidate, Counts, Decision, decide
from .devices import POOR_ACCURACY_M, Event, EventType, transition
from .errors import InvalidInput, NotFound, ValidationFailed
from .fences import Dataset, check_references, load_files, parse_geojson
from .geometry import check_lat_lon, distance_m
from .index import FenceIndex, StoreIndex
from .model import Confidence, Store
from .store import Database

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
        self.reload()

    def reload(self) -> None:
        """Rebuild the indexes (and the campaign list) from the database."""
        self.stores = self.db.store_arrays()
        self.store_index = StoreIndex(self.stores.lats, self.stores.lons)
        self.fence_index = FenceIndex(self.db.geofences())
        self._fence_pos = {f.id: i for i, f in enumerate(self.fence_index.fences)}
        # store details (tags, time zone, hours) for the decision: all of them in one query
        # when they fit easily in memory, else read on first use and kept
        self._store_cache: dict[str, Store] = {}
        if len(self.stores) <= _PRELOAD_STORES:
            self._store_cache = {s.id: s for s in self.db.stores()}
        self.reload_campaigns()

    def reload_campaigns(self) -> None:
        self.campaigns = [parse_campaign(body) for body in self.db.campaign_bodies()]
        self._active = [c for c in self.campaigns if c.enabled]
        self._targeted: dict[str, tuple[np.ndarray, StoreIndex | None]] = {}

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
        fence = self.geofence(geofence_id)
        if fence is None:
            raise NotFound(f"no geofence {geofence_id!r}")
        return _feature(fence)

    def geofence_collection(self) -> dict:
        return {"type": "FeatureCollection", "features": [_feature(f) for f in self.fence_index.fences]}

    def nearby_geofences(self, lat: float, lon: float, limit: int = 20) -> list[dict]:
        """The ``limit`` geofences nearest by distance to their boundary (0 inside), as circles.

        Each is the geofence's enclosing circle (``lat``, ``lon``, ``radius_m``): what a phone
        hands to iOS or Android region monitoring. Nearest first, ties by id.
        """
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
        lat, lon = check_lat_lon(lat, lon)
        if not accuracy_m >= 0:
            raise InvalidInput(f"accuracy_m must be a number of metres >= 0, got {accuracy_m}")
        fences = self.fence_index.fences
        hits = [FenceHit(fences[i].id, fences[i].store_id, conf)
                for i, conf in self.fence_index.containing(lat, lon, accuracy_m, at)]
        hits.sort(key=lambda h: -h.confidence.rank)
        idx, dist = self.store_index.nearest(lat, lon, 1)
        nearest = self._hit(int(idx[0]), float(dist[0])) if len(idx) else None
        return Location(hits, nearest)


    # --- campaigns, geofences, devices -------------------------------------------------------

    def put_campaign(self, campaign_id: str, body: dict) -> Campaign:
        """Validate and store a campaign (create or replace); it applies from the next ping."""
        campaign = parse_campaign(body, campaign_id)
        self.db.put_campaign(campaign.id, campaign.body)
        self.reload_campaigns()
        return campaign

    def campaign(self, campaign_id: str) -> Campaign:
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

    def forget_device(self, device_id: str) -> None:
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
        """
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
        near_i, near_d = self.store_index.nearest(ping.lat, ping.lon, 1)
        t1 = clock()
        with self.db.atomic() as conn:
            if ping.ping_id is not None:  # a twin of this ping may have committed meanwhile
                cached = self.db.reply(ping.device_id, ping.ping_id)
                if cached is not None:
                    return cached
            state = self.db.device_state(conn, ping.device_id)
            t2 = clock()
            before = dict(state.visits)
            flags = []
            out_of_order = state.last_ts is not None and ts < state.last_ts
            if out_of_order:
                flags.append("out_of_order")
            if acc > POOR_ACCURACY_M:
                flags.append("low_accuracy")
            suspicious = not out_of_order and self._impossible_move(state, ping, ts, acc)
            if suspicious:
                flags.append("suspicious_movement")
            events: list[Event] = []
            decision = Decision(0, [], None)
            t3 = t2
            if not out_of_order:
                events, visits = transition(
                    state.visits, hits, ts, acc, lambda fid: self._distance_to(fid, ping, at),
                    self._dwell_thresholds(set(hits) | set(state.visits)))
                nearest_m = float(near_d[0]) if len(near_d) else math.inf
                candidates = self._candidates(events, hits, ping, acc, nearest_m)
                decision = decide(
                    candidates, device_id=ping.device_id, segments=frozenset(ping.segments),
                    at=at, ts=ts, opted_out=state.opted_out, suspicious=suspicious,
                    interval_blocked=state.last_offer_ts is not None and
                    ts - state.last_offer_ts < self.settings.min_offer_interval_s,
                    counts=lambda c: self._counts(conn, ping.device_id, c, at))
                t3 = clock()
                if suspicious:  # a glitch or a spoof: remember nothing of it
                    events = []
                else:
                    state.visits = visits
                    state.last_ts, state.last_lat, state.last_lon = ts, ping.lat, ping.lon
                    state.last_accuracy_m = acc
                    self.db.record_events(conn, ping.device_id, ts, events, ping.ping_id)
                if decision.chosen is not None:
                    c = decision.chosen
                    self.db.record_push(conn, ping.device_id, c.campaign.id, c.store.id,
                                        c.geofence_id, ts, _local_day(at, c.store), c.distance_m,
                                        ping.ping_id)
                    state.last_offer_ts = ts
                self.db.save_device(conn, state, before)
            body = orjson.dumps({
                "events": [e.as_dict() for e in events],
                "offer": decision.offer_dict(),
                "decision": decision.as_dict(),
                "nearest_store": None if not len(near_i) else {
                    "store_id": self.stores.ids[int(near_i[0])],
                    "distance_m": round(float(near_d[0]), 3)},
                "flags": flags,
            })
            if ping.ping_id is not None:
                self.db.save_reply(conn, ping.device_id, ping.ping_id, body)
        if self.stage_times is not None:  # benchmarks/bench_ping.py: where a ping's time goes
            t4 = clock()
            self.stage_times.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        return body

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

    def _dwell_thresholds(self, fence_ids: set[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        dwellers = [c for c in self._active if c.trigger == "dwell"]
        for fid in fence_ids if dwellers else ():
            fence = self.geofence(fid)
            if fence is None:
                continue
            store = self.find_store(fence.store_id)
            needs = [c.dwell_s for c in dwellers if c.targets_fence(fence, store)]
            if needs:
                out[fid] = min(needs)
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

    def _candidates(self, events: list[Event], hits, ping: Ping, acc: float,
                    nearest_m: float) -> list[Candidate]:
        out: list[Candidate] = []
        for e in events:
            store = self.find_store(e.store_id)
            if store is None:
                continue
            fence = self.geofence(e.geofence_id)
            conf = e.confidence or (hits[e.geofence_id][1] if e.geofence_id in hits else Confidence.HIGH)
            dist = distance_m(ping.lat, ping.lon, store.lat, store.lon)
            for c in self._active:
                if c.trigger != str(e.type) or fence is None or not c.targets_fence(fence, store):
                    continue
                if e.type is EventType.DWELL and (e.duration_s or 0) < (c.dwell_s or 0):
                    continue
                out.append(Candidate(c, store, e.geofence_id, dist, conf))
        nearby = [c for c in self._active if c.trigger == "nearby"]
        reach = max((c.radius_m for c in nearby), default=0.0)
        if nearby and nearest_m <= reach:  # no store within reach: no query needed
            idx, dist = self.store_index.within(ping.lat, ping.lon, reach)
            for i, d in zip(idx.tolist(), dist.tolist(), strict=True):
                store = self.store(self.stores.ids[i])
                for c in nearby:
                    if d <= c.radius_m and c.targets_store(store):
                        conf = Confidence.HIGH if d + acc <= c.radius_m else Confidence.MEDIUM
                        out.append(Candidate(c, store, None, d, conf))
        return out

    def _counts(self, conn, device_id: str, c: Candidate, at: datetime) -> Counts:
        today, total, last, spend = self.db.push_counts(conn, device_id, c.campaign.id,
                                                        _local_day(at, c.store))
        return Counts(today, total, last, spend)


def _feature(f) -> dict:
    props = {"id": f.id, "store_id": f.store_id, "name": f.name, "tags": list(f.tags),
             "enabled": f.enabled, "metadata": f.metadata}
    if f.is_circle:
        props["radius_m"] = f.radius_m
    if f.expires_at is not None:
        props["expires_at"] = f.expires_at.isoformat()
    return {"type": "Feature", "id": f.id, "properties": props, "geometry": f.geojson_geometry()}


def _local_day(at: datetime, store: Store) -> str:
    return at.astimezone(ZoneInfo(store.timezone or "UTC")).date().isoformat()


_tz_finder = None
_PRELOAD_STORES = 250_000


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
