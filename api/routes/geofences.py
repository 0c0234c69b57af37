"""``/v1/geofences``: import a FeatureCollection, list, get, delete, and the ones nearby.

It holds no SQL, geometry or rules: the engine validates and stores.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Body, Query

from geo_engine import Engine

from ..auth import Auth
from ..schemas import Lat, Lon

__all__ = ["router"]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["geofences"])

    @r.post("/v1/geofences/import", dependencies=[auth.admin])
    def import_geofences(collection: Annotated[dict, Body(examples=[{
            "type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
                "id": "g1", "store_id": "fc-ferry", "radius_m": 80},
                "geometry": {"type": "Point", "coordinates": [-122.3937, 37.7955]}}]}])]) -> dict:
        return engine.import_geojson(json.dumps(collection))

    @r.get("/v1/geofences", dependencies=[auth.admin])
    def list_geofences() -> dict:
        return engine.geofence_collection()

    @r.get("/v1/geofences/nearby", dependencies=[auth.either])
    def nearby(lat: Lat, lon: Lon, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict:
        return {"geofences": [f.as_dict() for f in engine.nearby_geofences(lat, lon, limit)]}

    @r.get("/v1/geofences/{geofence_id}", dependencies=[auth.admin])
    def get_geofence(geofence_id: str) -> dict:
        return engine.geofence_feature(geofence_id)

    @r.delete("/v1/geofences/{geofence_id}", dependencies=[auth.admin])
    def delete_geofence(geofence_id: str) -> dict:
        engine.delete_geofence(geofence_id)
        return {"deleted": geofence_id}

    return r
