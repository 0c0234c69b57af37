"""``/v1/stores/nearest``, ``/v1/stores/within`` and ``/v1/locate``: what is near a point.

It holds no SQL, geometry or rules: the engine answers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from geo_engine import Engine

from ..auth import Auth
from ..schemas import Lat, Lon

__all__ = ["router"]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["stores"], dependencies=[auth.either])

    @r.get("/v1/stores/nearest")
    def nearest(lat: Lat, lon: Lon, k: Annotated[int, Query(ge=1, le=1000)] = 1) -> dict:
        return {"stores": [h.as_dict() for h in engine.nearest(lat, lon, k=k)]}

    @r.get("/v1/stores/within")
    def within(lat: Lat, lon: Lon,
               radius_m: Annotated[float, Query(ge=0, le=20_100_000, allow_inf_nan=False)]) -> dict:
        return {"stores": [h.as_dict() for h in engine.nearest(lat, lon, radius_m=radius_m)]}

    @r.get("/v1/locate")
    def locate(lat: Lat, lon: Lon,
               accuracy_m: Annotated[float, Query(ge=0, le=100_000, allow_inf_nan=False)] = 0.0) -> dict:
        return engine.locate(lat, lon, accuracy_m).as_dict()

    return r
