"""Every value geo-engine passes around: places, pings, device state, events, decisions, answers.

Plain data with no behaviour beyond describing itself (``as_dict`` for the JSON the API and the
CLI print): no database, no index, no rule. Rules live in :mod:`geo_engine.devices` and
:mod:`geo_engine.decide`; a campaign, with its parser, in :mod:`geo_engine.campaigns`.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from shapely.geometry import Polygon

from .errors import InvalidInput
from .geodesy import check_lat_lon
from .text import NOT_TEXT, is_text

if TYPE_CHECKING:
    from .campaigns import Campaign

__all__ = [
    "DEVICE_ID_PATTERN",
    "EARLIEST",
    "LATEST",
    "Candidate",
    "Confidence",
    "Counts",
    "Decision",
    "DeviceState",
    "Event",
    "EventType",
    "FenceHit",
    "Geofence",
    "Location",
    "NearbyFence",
    "Ping",
    "PingAnswer",
    "Reason",
    "Rejection",
    "Store",
    "StoreArrays",
    "StoreHit",
    "Visit",
    "ping_digest",
]


#: a device id: 1 to 128 printable characters, i.e. none of the control characters (C0, DEL,
#: C1) and no line or paragraph separator (the same rule the OpenAPI document states)
DEVICE_ID_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]{1,128}$"
DEVICE_ID = re.compile(DEVICE_ID_PATTERN)

#: the times a ping may carry: the calendar less a day at each end, so that a store's local
#: time (up to 14 hours off UTC) still exists
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


class Confidence(enum.StrEnum):
    """How surely a GPS fix is in a geofence (SPEC section 6), from weakest to strongest."""

    LOW = "low"  # only the accuracy circle touches the geofence
    MEDIUM = "medium"  # the reported point is inside
    HIGH = "high"  # the whole accuracy circle is inside

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Confidence.LOW: 0, Confidence.MEDIUM: 1, Confidence.HIGH: 2}


@dataclass(frozen=True)
class Store:
    """A store: a point where offers lead, with its local time zone and weekly hours."""

    id: str
    lat: float
    lon: float
    name: str = ""
    tags: tuple[str, ...] = ()
    timezone: str | None = None
    opening_hours: dict[str, list[list[str]]] | None = None
    address: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def weekly_hours(self) -> dict[str, list[tuple[int, int]]]:
        """``opening_hours`` as minutes after local midnight, by day (made once)."""
        return {day: [(_minutes(a), _minutes(b)) for a, b in spans]
                for day, spans in (self.opening_hours or {}).items()}


def _minutes(hhmm: str) -> int:
    hh, mm = hhmm.split(":")
    return int(hh) * 60 + int(mm)


@dataclass(frozen=True)
class Geofence:
    """A store's geofence: a geodesic circle (``radius_m`` around lat/lon) or a polygon.

    For a polygon, ``geometry`` is its GeoJSON geometry in WGS84 lon/lat as loaded; ``parts``
    are its planar pieces in [-180, 180] (split at the antimeridian) and ``edges`` its boundary
    segments ``lon0, lat0, lon1, lat1`` (see :func:`geo_engine.polygons.polygon_parts`).
    """

    id: str
    store_id: str
    name: str = ""
    lat: float | None = None
    lon: float | None = None
    radius_m: float | None = None
    geometry: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    expires_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    parts: tuple[Polygon, ...] = field(default=(), repr=False, compare=False)
    edges: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def is_circle(self) -> bool:
        return self.radius_m is not None

    def active(self, at: datetime | None = None) -> bool:
        """Return whether the geofence can match now: enabled and not expired at ``at``."""
        if not self.enabled:
            return False
        return self.expires_at is None or at is None or at <= self.expires_at

    def geojson_geometry(self) -> dict[str, Any]:
        """Return the geometry as GeoJSON: the polygon as loaded, or the circle's centre Point."""
        if self.is_circle:
            return {"type": "Point", "coordinates": [self.lon, self.lat]}
        return self.geometry or {}


class StoreArrays:
    """Stores as parallel arrays (what the store index is built from), sorted by id."""

    def __init__(self, ids: np.ndarray, lats: np.ndarray, lons: np.ndarray, names: np.ndarray):
        self.ids, self.lats, self.lons, self.names = ids, lats, lons, names

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> StoreArrays:
        return cls(np.array([], dtype=object), np.array([]), np.array([]), np.array([], dtype=object))

    def hit(self, i: int, distance_m: float) -> StoreHit:
        """The store at position ``i`` as found ``distance_m`` metres from a point."""
        return StoreHit(self.ids[i], self.names[i], float(self.lats[i]), float(self.lons[i]),
                        float(distance_m))


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

    def as_ref(self) -> dict:
        """The short form an answer names its nearest store by: id and metres."""
        return {"store_id": self.store_id, "distance_m": round(self.distance_m, 3)}


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
                "nearest_store": None if near is None else near.as_ref()}


@dataclass(frozen=True)
class NearbyFence:
    """A geofence near a point, as the circle a phone's region monitoring takes."""

    geofence_id: str
    store_id: str
    lat: float
    lon: float
    radius_m: float
    distance_m: float  # to its boundary, 0 inside

    def as_dict(self) -> dict:
        return {"geofence_id": self.geofence_id, "store_id": self.store_id, "lat": self.lat,
                "lon": self.lon, "radius_m": round(self.radius_m, 2),
                "distance_m": round(self.distance_m, 3)}


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
    eta_s: float | None = None  # the phone's own estimate of its trip's arrival (SPEC 11)

    def __post_init__(self) -> None:
        d = self.device_id
        if not isinstance(d, str) or not DEVICE_ID.fullmatch(d) or not is_text(d):
            raise InvalidInput("device_id must be 1 to 128 printable characters")
        lat, lon = check_lat_lon(self.lat, self.lon)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        if self.ping_id is not None and not is_text(self.ping_id):
            raise InvalidInput(f"ping_id {NOT_TEXT}")
        if not all(is_text(s) for s in self.segments):
            raise InvalidInput(f"segments {NOT_TEXT}")
        if self.eta_s is not None and not (math.isfinite(self.eta_s) and self.eta_s >= 0):
            raise InvalidInput(f"eta_s must be a number of seconds >= 0, got {self.eta_s}")
        if self.accuracy_m is not None and not (math.isfinite(self.accuracy_m) and self.accuracy_m >= 0):
            raise InvalidInput(f"accuracy_m must be a number of metres >= 0, got {self.accuracy_m}")
        if self.timestamp is not None:
            if self.timestamp.tzinfo is None:
                raise InvalidInput("timestamp must carry a time zone (RFC 3339, like "
                                   "2026-11-22T09:15:00Z)")
            try:
                utc = self.timestamp.astimezone(UTC)
            except (OverflowError, ValueError):
                utc = None
            if utc is None or not EARLIEST <= utc <= LATEST:
                raise InvalidInput(f"timestamp must be between {EARLIEST.date().isoformat()} and "
                                   f"{LATEST:%Y-%m-%d} (UTC), got {self.timestamp.isoformat()}")


def ping_digest(ping: Ping) -> str:
    """A digest of what a ping says (its ``ping_id`` aside): a ``ping_id`` sent again must come
    with the same, or it is another ping under a reused key."""
    at = None if ping.timestamp is None else ping.timestamp.astimezone(UTC).isoformat()
    said = [ping.device_id, ping.lat, ping.lon, ping.accuracy_m, at, list(ping.segments)]
    if ping.eta_s is not None:  # (absent: the digest pings had before there were trips)
        said.append(ping.eta_s)
    said = orjson.dumps(said)
    return hashlib.sha256(said).hexdigest()[:32]


class EventType(enum.StrEnum):
    ENTER = "enter"
    EXIT = "exit"
    DWELL = "dwell"


@dataclass
class Visit:
    """An open visit: the device entered ``geofence_id`` at ``entered_ts`` (epoch seconds)."""

    geofence_id: str
    store_id: str
    entered_ts: float
    dwell_done: bool = False


@dataclass(frozen=True)
class Trip:
    """A device's open trip to a store (SPEC 11) as its device row keeps it: what a ping needs
    to move it. The whole record (metadata, times, the last distance) is the ``trips`` row."""

    trip_id: str
    store_id: str
    mode: str  # car, bike or foot
    approaching_s: float
    status: str  # started, approaching or arrived (an ended trip is no longer a device's)
    created_ts: float
    arrived_ts: float | None = None
    elsewhere: str | None = None  # the other store of the chain it arrived at, if any

    def to_json(self) -> list:
        return [self.trip_id, self.store_id, self.mode, self.approaching_s, self.status,
                self.created_ts, self.arrived_ts, self.elsewhere]

    @classmethod
    def from_json(cls, values: list) -> Trip:
        return cls(*values)


@dataclass
class DeviceState:
    """What the engine remembers of a device (read from and written to the database)."""

    device_id: str
    last_ts: float | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    last_accuracy_m: float | None = None
    last_offer_ts: float | None = None
    opted_out: bool = False
    visits: dict[str, Visit] = field(default_factory=dict)
    #: the row's version as read (None: no row yet); see :meth:`geo_engine.db.devices.Devices.save`
    version: int | None = None
    #: campaign id -> [pushes, last push ts, {store's local day: pushes}], for the caps
    history: dict[str, list] = field(default_factory=dict)
    #: the device's open trip (SPEC 11), or None
    trip: Trip | None = None


@dataclass(frozen=True)
class Event:
    """A geofence event of one ping."""

    type: EventType
    geofence_id: str
    store_id: str
    confidence: Confidence | None = None
    duration_s: float | None = None

    def as_dict(self) -> dict:
        out = {"type": str(self.type), "geofence_id": self.geofence_id, "store_id": self.store_id}
        if self.confidence is not None:
            out["confidence"] = str(self.confidence)
        if self.duration_s is not None:
            out["duration_s"] = round(self.duration_s, 3)
        return out


class Reason(enum.StrEnum):
    OUTSIDE_SCHEDULE = "outside_schedule"
    STORE_CLOSED = "store_closed"
    FREQUENCY_CAP = "frequency_cap"
    COOLDOWN = "cooldown"
    BUDGET_EXHAUSTED = "budget_exhausted"
    LOW_CONFIDENCE = "low_confidence"
    NOT_IN_AUDIENCE = "not_in_audience"
    HOLDOUT = "holdout"
    OPTED_OUT = "opted_out"
    SUSPICIOUS_MOVEMENT = "suspicious_movement"
    DEVICE_INTERVAL = "device_interval"
    LOWER_PRIORITY = "lower_priority"


@dataclass(frozen=True)
class Candidate:
    """A campaign a ping triggered, at a store (and geofence, unless ``nearby``)."""

    campaign: Campaign
    store: Store
    geofence_id: str | None
    distance_m: float
    confidence: Confidence


@dataclass(frozen=True)
class Rejection:
    campaign_id: str
    reason: Reason

    def as_dict(self) -> dict:
        return {"campaign_id": self.campaign_id, "reason": str(self.reason)}


@dataclass(frozen=True)
class Decision:
    """What was considered, what was turned down and why, and the offer (or None)."""

    considered: int
    rejected: list[Rejection]
    chosen: Candidate | None
    #: the campaigns that would have been pushed but for the device's place in their holdout
    #: groups (recorded as ``held_out`` events: the campaigns' control groups)
    held_out: tuple[Candidate, ...] = ()

    def as_dict(self) -> dict:
        return {"considered": self.considered, "rejected": [r.as_dict() for r in self.rejected]}

    def offer_dict(self) -> dict | None:
        if self.chosen is None:
            return None
        c = self.chosen
        return {"campaign_id": c.campaign.id, **{k: c.campaign.offer.get(k) for k in
                                                 ("title", "body", "url", "coupon_code")},
                "store_id": c.store.id, "geofence_id": c.geofence_id,
                "distance_m": round(c.distance_m, 3)}


@dataclass(frozen=True)
class Counts:
    """A device's history with one campaign, and the campaign's spend."""

    today: int  # pushes of this campaign to this device on the store's local day
    total: int  # pushes of this campaign to this device ever
    last_ts: float | None  # the last push of this campaign to this device
    budget_used: int  # pushes of this campaign to anyone


NO_DECISION = Decision(0, [], None)


@dataclass(frozen=True)
class PingAnswer:
    """The answer to a ping (SPEC 6), as values and as the JSON ``body`` sent (made once).

    A replayed ``ping_id`` answers with the first answer's bytes: then ``replayed`` is true and
    the values are empty (nothing happened this time).
    """

    events: tuple[Event, ...]
    decision: Decision
    nearest_store: StoreHit | None
    flags: tuple[str, ...]
    body: bytes
    replayed: bool = False

    @classmethod
    def of(cls, events: list[Event], decision: Decision, nearest_store: StoreHit | None,
           flags: list[str], trip: dict | None = None) -> PingAnswer:
        near = nearest_store
        body = orjson.dumps({
            "events": [e.as_dict() for e in events],
            "offer": decision.offer_dict(),
            "decision": decision.as_dict(),
            "nearest_store": None if near is None else near.as_ref(),
            "flags": flags,
            "trip": trip,
        })
        return cls(tuple(events), decision, near, tuple(flags), body)

    @classmethod
    def replay(cls, body: bytes) -> PingAnswer:
        return cls((), NO_DECISION, None, (), body, replayed=True)
