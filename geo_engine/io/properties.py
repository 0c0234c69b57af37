"""A store's or a geofence's properties checked, field by field (SPEC 3.1): each rule raises
:class:`Bad` with one sentence that says what is wrong and how to write it instead; the file
readers (:mod:`.places`) turn it into a problem with the feature's index and id.

Values in, values out: no file, no database.
"""

from __future__ import annotations

import json
import math
import zoneinfo
from datetime import datetime
from typing import Any

import numpy as np
import pyproj

__all__ = ["KNOWN_FENCE", "KNOWN_STORE", "MAX_RADIUS_M", "MIN_RADIUS_M", "Bad", "Reprojector",
           "fence_fields", "id_string", "store_fields"]

MIN_RADIUS_M, MAX_RADIUS_M = 1.0, 50_000.0
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KNOWN_STORE = {"kind", "id", "name", "tags", "metadata", "timezone", "opening_hours", "address"}
KNOWN_FENCE = {"kind", "id", "store_id", "name", "radius_m", "tags", "enabled", "expires_at",
               "metadata"}
_LONLAT_CRS = {"EPSG:4326", "OGC:CRS84", "EPSG:4979", "OGC:CRS84H"}


class Bad(Exception):
    """One problem with the feature being read; becomes a Problem with its index and id."""


# --- small checkers ----------------------------------------------------------------------------

def id_string(value: Any, what: str) -> str:
    if isinstance(value, bool) or value is None:
        raise Bad(f"{what} must be a string or a number, got {json.dumps(value)}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Bad(f"{what} must be a string or a number, got {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        if not value.strip():
            raise Bad(f"{what} is empty; give it a non-empty string")
        return value
    raise Bad(f"{what} must be a string or a number, got {type(value).__name__}")


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise Bad(f'tags must be a list of strings, like ["coffee", "downtown"]; got '
                  f"{json.dumps(value)[:60]}")
    return tuple(value)


def _hhmm(value: Any, day: str) -> int:
    try:
        hh, mm = value.split(":")
        minutes = int(hh) * 60 + int(mm)
        if len(hh) == 2 and len(mm) == 2 and 0 <= int(mm) < 60 and 0 <= minutes <= 24 * 60:
            return minutes
    except (AttributeError, ValueError):
        pass
    raise Bad(f'opening_hours.{day}: {json.dumps(value)} is not a time "HH:MM" (00:00 to 24:00)')


def _opening_hours(value: Any) -> dict[str, list[list[str]]] | None:
    if value is None:
        return None
    example = 'like {"mon": [["09:00", "21:00"]], "sun": []}'
    if not isinstance(value, dict):
        raise Bad(f"opening_hours must be an object of weekdays, {example}")
    for day, spans in value.items():
        if day not in _DAYS:
            raise Bad(f"opening_hours has an unknown day {day!r}; use {', '.join(_DAYS)}")
        if not isinstance(spans, list):
            raise Bad(f"opening_hours.{day} must be a list of [open, close] pairs, {example}")
        for span in spans:
            if not (isinstance(span, list) and len(span) == 2):
                raise Bad(f"opening_hours.{day} must be a list of [open, close] pairs, {example}")
            if _hhmm(span[0], day) >= _hhmm(span[1], day) and span[1] != "24:00":
                # a span past midnight is written as two: ["22:00","24:00"] and next day's
                raise Bad(f"opening_hours.{day}: {span[0]} to {span[1]} closes before it opens; "
                          f"split a span past midnight into [\"{span[0]}\", \"24:00\"] and the "
                           "next day's [\"00:00\", ...]")
    return {day: [list(s) for s in value[day]] for day in value}


def _timezone(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Bad(f"timezone must be an IANA name like \"America/Los_Angeles\", got "
                  f"{json.dumps(value)}")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Bad(f"timezone {value!r} is not an IANA time zone name; use one like "
                  "\"Europe/Paris\", or leave it out to have it derived from the location") from None
    return value


def _expires_at(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        at = None
    if at is None or at.tzinfo is None:
        raise Bad(f"expires_at must be an RFC 3339 time with a zone, like "
                  f"\"2026-12-24T18:00:00Z\"; got {json.dumps(value)}")
    return at


def _metadata(props: dict[str, Any], known: set[str]) -> dict[str, Any]:
    meta = {k: v for k, v in props.items() if k not in known}
    given = props.get("metadata")
    if given is not None:
        if not isinstance(given, dict):
            raise Bad("metadata must be a JSON object of names to values")
        meta.update(given)
    return meta


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Reprojector:
    """Carries a legacy GeoJSON 2008 ``crs`` member: lon/lat ones pass, others are reprojected."""

    def __init__(self, crs_member: Any):
        self.transformer = None
        self.name = None
        if crs_member is None:
            return
        try:
            name = crs_member["properties"]["name"]
            crs = pyproj.CRS.from_user_input(name)
        except (KeyError, TypeError, pyproj.exceptions.CRSError):
            raise Bad(f"the \"crs\" member {json.dumps(crs_member)[:80]} names no CRS pyproj "
                      "knows; remove it (GeoJSON is WGS84 lon/lat) or name one like "
                       "\"EPSG:3857\"") from None
        authority = crs.to_authority()
        code = ":".join(authority) if authority else crs.name
        if code in _LONLAT_CRS:
            return
        self.name = code
        self.transformer = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        lon, lat = self.transformer.transform(arr[:, 0], arr[:, 1])
        return np.column_stack([lon, lat])


# --- features ----------------------------------------------------------------------------------

def store_fields(props: dict, geom: dict) -> dict[str, Any]:
    if geom.get("type") != "Point":
        raise Bad(f"a store must be a Point (its location), got a {geom.get('type')}")
    name = props.get("name") or ""
    address = props.get("address") or ""
    if not isinstance(name, str) or not isinstance(address, str):
        raise Bad("name and address must be strings")
    return dict(name=name, tags=_tags(props.get("tags")), timezone=_timezone(props.get("timezone")),
                opening_hours=_opening_hours(props.get("opening_hours")), address=address,
                metadata=_metadata(props, KNOWN_STORE))


def fence_fields(props: dict, geom: dict) -> dict[str, Any]:
    if "store_id" not in props or props["store_id"] is None:
        raise Bad("a geofence needs the store_id of the store it belongs to")
    enabled = props.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Bad(f"enabled must be true or false, got {json.dumps(enabled)}")
    name = props.get("name") or ""
    if not isinstance(name, str):
        raise Bad("name must be a string")
    fields = dict(store_id=id_string(props["store_id"], "store_id"), name=name,
                  tags=_tags(props.get("tags")), enabled=enabled,
                  expires_at=_expires_at(props.get("expires_at")),
                  metadata=_metadata(props, KNOWN_FENCE))
    kind = geom.get("type")
    radius = props.get("radius_m")
    if kind == "Point":
        if radius is None:
            raise Bad("a Point geofence needs radius_m, the circle's radius in metres "
                      f"({MIN_RADIUS_M:g} to {MAX_RADIUS_M:,.0f})")
        if not _number(radius) or not math.isfinite(radius) or \
                not MIN_RADIUS_M <= radius <= MAX_RADIUS_M:
            raise Bad(f"radius_m must be a number of metres from {MIN_RADIUS_M:g} to "
                      f"{MAX_RADIUS_M:,.0f}, got {json.dumps(radius)}")
        fields["radius_m"] = float(radius)
    elif kind in ("Polygon", "MultiPolygon"):
        if radius is not None:
            raise Bad("radius_m applies only to a Point geofence; remove it from this polygon")
    else:
        raise Bad(f"a geofence must be a Polygon, a MultiPolygon or a Point with radius_m; got a "
                  f"{kind} (lines and points without radius_m enclose no area)")
    return fields
