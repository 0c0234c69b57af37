"""Stores and geofences: the values every other module passes around."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from shapely.geometry import Polygon

__all__ = ["Confidence", "Geofence", "Store"]


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
