"""Request bodies and query parameters, as the OpenAPI document shows them.

Each check here names the JSON field in its message (SPEC 5); the library checks the same rules
again only for callers that did not come through this layer.

It knows shapes of JSON only, never the engine.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator

from geo_engine.model import Ping
from geo_engine.text import NOT_TEXT, bad_text

__all__ = ["ConsentIn", "DeviceIn", "DeviceOut", "Lat", "Lon", "PingIn"]

Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="latitude, degrees")]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False, description="longitude, degrees")]


def _checked_text(value):
    """A string (or list of strings) that UTF-8 can carry, else the field's error."""
    if value is not None and bad_text(value) is not None:
        raise ValueError(NOT_TEXT)
    return value


class PingIn(BaseModel):
    """A location update (SPEC section 6)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "device_id": "d-123", "lat": 37.7955, "lon": -122.3937, "accuracy_m": 15,
        "timestamp": "2026-11-22T17:15:00Z", "ping_id": "p-1", "segments": ["loyalty"]}]})

    device_id: str = Field(min_length=1, max_length=128, description="1 to 128 printable characters")
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    accuracy_m: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                     description="GPS accuracy radius, metres (50 when absent)")
    timestamp: AwareDatetime | None = Field(default=None, description="RFC 3339; server time when absent")
    ping_id: str | None = Field(default=None, min_length=1, max_length=128,
                                description="idempotency key: a replay gets the first answer")
    segments: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("lat", "lon", "accuracy_m", mode="before")
    @classmethod
    def _a_number(cls, value):
        # a string or a boolean is a wrong type, not a number to coerce (SPEC 5: a 4xx)
        if isinstance(value, (str, bool)):
            raise ValueError("must be a JSON number")
        return value

    @field_validator("device_id", "ping_id", "segments")
    @classmethod
    def _text(cls, value):
        return _checked_text(value)

    def to_ping(self) -> Ping:
        """The library's Ping (which checks the same rules again, for callers outside HTTP)."""
        return Ping(self.device_id, self.lat, self.lon, self.accuracy_m, self.timestamp,
                    self.ping_id, tuple(self.segments))


class DeviceIn(BaseModel):
    """A device to register (SPEC 6.1)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"device_id": "d-123"}]})

    device_id: str = Field(min_length=1, max_length=128, description="1 to 128 printable characters")

    @field_validator("device_id")
    @classmethod
    def _text(cls, value):
        return _checked_text(value)


class DeviceOut(BaseModel):
    """A registered device and its token: shown this once, stored hashed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "device_id": "d-123", "device_token": "dt_3q2-7wEXAMPLEv8Rk0aTmZb1cQ"}]})

    device_id: str
    device_token: str = Field(description="send as X-Device-Token with this device's pings")


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location_offers: StrictBool
