"""``/v1/trips`` and a store's board (SPEC 11): a trip started by the phone (or its backend),
ended by the store, read by id, and listed by store with the wait times.

It holds no SQL and no rule: the engine's trip desk answers (:mod:`geo_engine.trip_desk`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from geo_engine import Engine

from ..auth import Auth
from ..schemas import ALWAYS, DEVICE_ID_PATTERN, NO_NUL, errors, example

__all__ = ["router"]

TRIP = {"trip_id": "order-1042", "device_id": "d-123", "store_id": "fc-ferry", "mode": "car",
        "status": "arrived", "approaching_s": 300.0, "metadata": {"order": "1042"},
        "distance_m": 12.5, "eta_s": None, "arrived_elsewhere": None,
        "created_at": "2026-11-22T17:01:00.000Z", "updated_at": "2026-11-22T17:12:40.000Z",
        "approaching_at": "2026-11-22T17:08:10.000Z", "arrived_at": "2026-11-22T17:12:40.000Z",
        "ended_at": None, "wait_time_s": 95.0}


class TripIn(BaseModel):
    """A trip to start (SPEC 11)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "trip_id": "order-1042", "device_id": "d-123", "store_id": "fc-ferry", "mode": "car",
        "approaching_s": 300, "metadata": {"order": "1042", "name": "Ada"}}]})

    trip_id: str = Field(min_length=1, max_length=128, pattern=NO_NUL)
    device_id: str = Field(min_length=1, max_length=128, json_schema_extra={"pattern": DEVICE_ID_PATTERN})
    store_id: str = Field(min_length=1, max_length=512, pattern=NO_NUL)
    mode: Literal["car", "bike", "foot"] = "car"
    approaching_s: float = Field(default=300, gt=0, le=86_400, allow_inf_nan=False,
                                 description="the trip is approaching once its estimated "
                                             "arrival is within this many seconds")
    metadata: dict = Field(default_factory=dict, description="anything the store's board shows "
                                                              "(order number, name, car)")


class TripPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"status": "completed"}]})

    status: Literal["completed", "canceled"]

TripId = Annotated[str, Path(examples=["order-1042"])]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["trips"], responses=errors(*ALWAYS, 401, 422))

    @r.post("/v1/trips", status_code=201, responses={**errors(404, 409), **example(TRIP)})
    def start_trip(body: TripIn, kind: str = auth.either,
                   x_device_token: Annotated[str | None, Header(
                       description="the device's token, when the publishable key is used and "
                                   "tokens are required")] = None) -> dict:
        """Start a trip to a store: its device's pings move it (started, approaching, arrived);
        one open trip a device at a time (a 409), to a store that exists (a 404)."""
        auth.speaks_for(kind, body.device_id, x_device_token)
        auth.ping(kind, body.device_id)
        return engine.trips.start(body.trip_id, body.device_id, body.store_id, body.mode,
                                  body.approaching_s, body.metadata)

    @r.get("/v1/trips/{trip_id}", dependencies=[auth.admin],
           responses={**errors(403, 404), **example(TRIP)})
    def get_trip(trip_id: TripId) -> dict:
        return engine.trips.get(trip_id)

    @r.patch("/v1/trips/{trip_id}", dependencies=[auth.admin],
             responses={**errors(403, 404, 409), **example({**TRIP, "status": "completed"})})
    def end_trip(trip_id: TripId, body: TripPatch) -> dict:
        """The store completes (handed over) or cancels a trip; `wait_time_s` is arrived to
        completed."""
        return engine.trips.end(trip_id, body.status)

    @r.get("/v1/stores/{store_id}/trips", dependencies=[auth.admin], tags=["stores"],
           responses={**errors(403, 404), **example({"store_id": "fc-ferry", "trips": [TRIP],
                                                     "wait_time_s": [{
                                                         "day": "2026-11-22", "completed": 14,
                                                         "mean_s": 131.2, "median_s": 95.0,
                                                         "p90_s": 240.0, "max_s": 410.0}]})})
    def store_trips(store_id: Annotated[str, Path(examples=["fc-ferry"])],
                    hours: Annotated[float, Query(gt=0, le=168, description="also the trips "
                                                  "ended in the last hours")] = 12,
                    days: Annotated[int, Query(ge=1, le=366, description="wait_time_s for the "
                                               "last days (UTC)")] = 7) -> dict:
        """A store's board: open trips (coming, with the estimate; arrived, with the wait so
        far), those ended lately, and `wait_time_s` (arrived to completed) by day."""
        return {"store_id": store_id, "trips": engine.trips.of_store(store_id, hours),
                "wait_time_s": engine.trips.wait_times(store_id, days)}

    return r
