"""Request bodies and query parameters, as the OpenAPI document shows them.

Each check here names the JSON field in its message (SPEC 5); the library checks the same rules
again only for callers that did not come through this layer.

It knows shapes of JSON only, never the engine.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)

from geo_engine.model import DEVICE_ID, DEVICE_ID_PATTERN, Ping
from geo_engine.text import NOT_TEXT, bad_text

__all__ = ["ALWAYS", "CampaignIn", "ConsentIn", "DeviceIn", "DeviceOut", "ErrorOut",
           "FeatureCollectionIn", "Lat", "Lon", "PingIn", "errors", "example",
           "known_query_only"]

Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="latitude, degrees",
                             examples=[37.7955])]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False, description="longitude, degrees",
                             examples=[-122.3937])]


def known_query_only(request: Request) -> None:
    """A dependency of every route: a query parameter the route does not take is a 422 naming
    it (``radius=500`` on a route that takes ``radius_m`` is a typo, not a default)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {p.alias for p in _query_params(dependant)}
    unknown = sorted(k for k in request.query_params if k not in known)
    if unknown:
        raise RequestValidationError([{
            "loc": ("query", k), "msg": "is not a parameter of this route"
            + (f"; it takes {', '.join(sorted(known))}" if known else "; it takes none"),
            "type": "unknown_query"} for k in unknown])


def _query_params(dependant) -> list:
    out = list(dependant.query_params)
    for sub in dependant.dependencies:
        out += _query_params(sub)
    return out


#: text a database can hold: no NUL character (the JSON Schema says so; lone surrogates, which
#: JSON text can carry and no pattern can name, are refused by _checked_text as well)
NO_NUL = "^[^\\x00]*$"


def _checked_text(value):
    """A string (or list of strings) that UTF-8 can carry, else the field's error."""
    if value is not None and bad_text(value) is not None:
        raise ValueError(NOT_TEXT)
    return value


def _checked_device_id(value: str) -> str:
    if not DEVICE_ID.fullmatch(value):
        raise ValueError("must be 1 to 128 printable characters (no control characters, no line "
                         "breaks)")
    return _checked_text(value)


class PingIn(BaseModel):
    """A location update (SPEC section 6)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "device_id": "d-123", "lat": 37.7955, "lon": -122.3937, "accuracy_m": 15,
        "timestamp": "2026-11-22T17:15:00Z", "ping_id": "p-1", "segments": ["loyalty"]}]})

    device_id: str = Field(min_length=1, max_length=128, description="1 to 128 printable characters",
                           json_schema_extra={"pattern": DEVICE_ID_PATTERN})
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    accuracy_m: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                     description="GPS accuracy radius, metres (50 when absent)")
    timestamp: AwareDatetime | None = Field(
        default=None,
        description="RFC 3339, 0001-01-02 to 9999-12-29; server time when absent",
        json_schema_extra={"pattern": "^(?!0001-01-01|9999-12-3[01])"})
    ping_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=NO_NUL,
                                description="idempotency key: a replay gets the first answer")
    segments: list[Annotated[str, Field(pattern=NO_NUL)]] = Field(default_factory=list, max_length=100)
    eta_s: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                description="the app's own estimate of seconds to its trip's store "
                                            "(else the distance over the trip's mode's speed)")

    @field_validator("lat", "lon", "accuracy_m", "eta_s", mode="before")
    @classmethod
    def _a_number(cls, value):
        # a string or a boolean is a wrong type, not a number to coerce (SPEC 5: a 4xx)
        if isinstance(value, (str, bool)):
            raise ValueError("must be a JSON number")
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _a_time_as_text(cls, value):
        """RFC 3339 text only: a number is not taken as seconds since 1970."""
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an RFC 3339 time as text, such as 2026-11-22T17:15:00Z")
        return value

    @field_validator("ping_id", "segments")
    @classmethod
    def _text(cls, value):
        return _checked_text(value)

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value):
        return _checked_device_id(value)

    def to_ping(self) -> Ping:
        """The library's Ping (which checks the same rules again, for callers outside HTTP)."""
        return Ping(self.device_id, self.lat, self.lon, self.accuracy_m, self.timestamp,
                    self.ping_id, tuple(self.segments), self.eta_s)


class DeviceIn(BaseModel):
    """A device to register (SPEC 6.1)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"device_id": "d-123"}]})

    device_id: str = Field(min_length=1, max_length=128, description="1 to 128 printable characters",
                           json_schema_extra={"pattern": DEVICE_ID_PATTERN})

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value):
        return _checked_device_id(value)


class DeviceOut(BaseModel):
    """A registered device and its token: shown this once, stored hashed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "device_id": "d-123", "device_token": "dt_3q2-7wEXAMPLEv8Rk0aTmZb1cQ"}]})

    device_id: str
    device_token: str = Field(description="send as X-Device-Token with this device's pings")


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location_offers: StrictBool


# --- the one error shape ---------------------------------------------------------------------

class ProblemOut(BaseModel):
    """One thing wrong: a request field, or a feature of an imported file (by index and id)."""

    model_config = ConfigDict(extra="allow")

    message: str
    field: str | None = None
    index: int | None = None
    id: str | None = None


class ErrorOut(BaseModel):
    """Every error answer: what is wrong in one sentence, and each problem when there are
    several."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": "lat: Input should be less than or equal to 90",
        "problems": [{"field": "lat", "message": "Input should be less than or equal to 90"}]}]})

    detail: str
    problems: list[ProblemOut] | None = None


_WHY = {
    401: "no key, a wrong key, or (with the publishable key) not the device's token",
    403: "this needs the admin key",
    404: "no such thing",
    409: "a conflict: a ping_id reused with another body, a device registered already",
    413: "the body is larger than this route takes (before it is read or its key checked)",
    422: "a field is wrong: the message names it",
    429: "a rate limit: wait Retry-After seconds",
    503: "the database cannot be written (full, read-only): the message says which",
}


def example(answer: Any, status: int = 200) -> dict:
    """A route's ``responses`` entry showing an example answer."""
    return {status: {"content": {"application/json": {"example": answer}}}}


def errors(*statuses: int) -> dict:
    """The ``responses`` of a route that may answer these error statuses."""
    out: dict = {}
    for s in statuses:
        out[s] = {"model": ErrorOut, "description": _WHY[s]}
        if s == 429:
            out[s]["headers"] = {"Retry-After": {"description": "seconds to wait",
                                                 "schema": {"type": "integer"}}}
    return out


#: every route can be refused these before it is read: too large, too many, storage
ALWAYS = (413, 429, 503)


# --- typed request bodies --------------------------------------------------------------------

class GeometryIn(BaseModel):
    """A GeoJSON geometry; its coordinates are checked in full by the import (each problem named
    with the feature's index and id)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Point", "Polygon", "MultiPolygon", "LineString", "MultiPoint",
                  "MultiLineString", "GeometryCollection"]
    coordinates: list[Any] | None = None


class FeatureIn(BaseModel):
    """A GeoJSON Feature: a store (``kind: store``, a Point) or a geofence (a Polygon, a
    MultiPolygon, or a Point with ``radius_m``); properties as SPEC 3.1 (``id``, ``store_id``,
    ``name``, ``radius_m``, ``tags``, ``enabled``, ``expires_at``, ``metadata``, ``timezone``,
    ``opening_hours``, ``address``; any other is kept as metadata)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Feature"]
    id: str | int | None = None
    properties: dict[str, Any] | None = None
    geometry: GeometryIn | None = None


class FeatureCollectionIn(BaseModel):
    """A GeoJSON FeatureCollection of stores and geofences (SPEC 3.1): imported all or nothing."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"kind": "store", "id": "s-1", "name": "Ferry Plaza"},
             "geometry": {"type": "Point", "coordinates": [-122.3937, 37.7955]}},
            {"type": "Feature", "properties": {"id": "g-1", "store_id": "s-1", "radius_m": 80},
             "geometry": {"type": "Point", "coordinates": [-122.3937, 37.7955]}}]}]})

    type: Literal["FeatureCollection"]
    features: list[FeatureIn]
    crs: dict[str, Any] | None = None


class OfferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, description="the text the phone shows")
    body: str | None = None
    url: str | None = None
    coupon_code: str | None = None


class TargetsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geofence_ids: list[str] | None = None
    store_ids: list[str] | None = None
    tags: list[str] | None = None


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["enter", "exit", "dwell", "nearby"]
    dwell_s: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                  description="dwell: seconds inside, continuously")
    radius_m: float | None = Field(default=None, ge=1, le=50_000, allow_inf_nan=False,
                                   description="nearby: metres from a targeted store")


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts_at: str | None = Field(default=None, description="RFC 3339")
    ends_at: str | None = Field(default=None, description="RFC 3339")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    hours: list[tuple[str, str]] | None = Field(default=None, description='[["HH:MM", "HH:MM"], ...]')


class CapsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_device_per_day: int | None = Field(default=None, ge=0)
    per_device_total: int | None = Field(default=None, ge=0)
    cooldown_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    budget_total: int | None = Field(default=None, ge=0)


class AudienceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segments: list[str] | None = None


class CampaignIn(BaseModel):
    """A campaign (SPEC 3.2). Checked here for shape; the rules that tie fields together (a
    dwell trigger's ``dwell_s``, a schedule's order) are checked by the engine, by field."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "coffee-any", "name": "A cookie with any coffee", "offer": {
            "title": "A free cookie with your coffee", "coupon_code": "COOKIE"},
        "targets": {"tags": ["coffee"]}, "trigger": {"type": "enter"}, "priority": 5,
        "caps": {"per_device_per_day": 1}}]})

    id: str | None = Field(default=None, description="the id in the URL, when given")
    name: str | None = None
    enabled: StrictBool | None = None
    offer: OfferIn
    targets: TargetsIn | None = None
    trigger: TriggerIn
    schedule: ScheduleIn | None = None
    only_when_open: StrictBool | None = None
    priority: int | None = Field(default=None, description="higher wins")
    min_confidence: Literal["low", "medium", "high"] | None = None
    caps: CapsIn | None = None
    audience: AudienceIn | None = None
    holdout_pct: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
