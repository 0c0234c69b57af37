"""``/v1/geofences``: import a FeatureCollection, list, get, delete, and the ones nearby.

It holds no SQL, geometry or rules: the engine validates and stores.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query

from geo_engine import Engine

from ..auth import Auth
from ..schemas import ALWAYS, FeatureCollectionIn, Lat, Lon, errors, example

__all__ = ["router"]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["geofences"], responses=errors(*ALWAYS, 401, 422))
    fence = {"type": "Feature", "id": "fc-ferry-hall", "properties": {
        "id": "fc-ferry-hall", "store_id": "fc-ferry", "name": "Ferry Building", "tags": [],
        "enabled": True, "metadata": {}, "radius_m": 80.0},
        "geometry": {"type": "Point", "coordinates": [-122.3937, 37.7955]}}

    @r.post("/v1/geofences/import", dependencies=[auth.admin],
            responses={**errors(403), **example({"stores": 1, "geofences": 1})})
    def import_geofences(collection: FeatureCollectionIn) -> dict:
        """Import stores and geofences, all or nothing; a 422 names every problem by feature."""
        return engine.import_geojson(json.dumps(collection.model_dump(mode="json", exclude_unset=True)))

    @r.get("/v1/geofences", dependencies=[auth.admin],
           responses={**errors(403), **example({"type": "FeatureCollection", "features": [fence]})})
    def list_geofences() -> dict:
        return engine.geofence_collection()

    @r.get("/v1/geofences/nearby", dependencies=[auth.either], responses=example({"geofences": [{
        "geofence_id": "fc-ferry-hall", "store_id": "fc-ferry", "lat": 37.7955, "lon": -122.3937,
        "radius_m": 80.0, "distance_m": 0.0}]}))
    def nearby(lat: Lat, lon: Lon,
               limit: Annotated[int, Query(ge=1, le=1000, examples=[20])] = 20) -> dict:
        return {"geofences": [f.as_dict() for f in engine.nearby_geofences(lat, lon, limit)]}

    @r.get("/v1/geofences/{geofence_id}", dependencies=[auth.admin],
           responses={**errors(403, 404), **example(fence)})
    def get_geofence(geofence_id: Annotated[str, Path(examples=["fc-ferry-hall"])]) -> dict:
        return engine.geofence_feature(geofence_id)

    @r.delete("/v1/geofences/{geofence_id}", dependencies=[auth.admin],
              responses={**errors(403, 404), **example({"deleted": "fc-ferry-hall"})})
    def delete_geofence(geofence_id: Annotated[str, Path(examples=["fc-ferry-hall"])]) -> dict:
        engine.delete_geofence(geofence_id)
        return {"deleted": geofence_id}

    return r
