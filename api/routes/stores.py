"""``/v1/stores``: what is near a point (nearest, within, locate), the stores by page, deleting
one, and ``/v1/export`` of every store and geofence.

It holds no SQL, geometry or rules: the engine answers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from geo_engine import Engine, Store
from geo_engine.io.places import store_feature

from ..auth import Auth
from ..schemas import ALWAYS, Lat, Lon, errors, example

__all__ = ["router"]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["stores"], responses=errors(*ALWAYS, 401, 422))
    hit = {"store_id": "fc-ferry", "name": "Ferry Plaza", "lat": 37.7955, "lon": -122.3937,
           "distance_m": 4.164}

    @r.get("/v1/stores/nearest", dependencies=[auth.either], responses=example({"stores": [hit]}))
    def nearest(lat: Lat, lon: Lon, k: Annotated[int, Query(ge=1, le=1000, examples=[1])] = 1) -> dict:
        return {"stores": [h.as_dict() for h in engine.nearest(lat, lon, k=k)]}

    @r.get("/v1/stores/within", dependencies=[auth.either], responses=example({"stores": [hit]}))
    def within(lat: Lat, lon: Lon,
               radius_m: Annotated[float, Query(ge=0, le=20_100_000, allow_inf_nan=False,
                                                examples=[500])]) -> dict:
        return {"stores": [h.as_dict() for h in engine.nearest(lat, lon, radius_m=radius_m)]}

    @r.get("/v1/locate", dependencies=[auth.either], responses=example({
        "geofences": [{"geofence_id": "fc-ferry-hall", "store_id": "fc-ferry", "confidence": "high"}],
        "nearest_store": {"store_id": "fc-ferry", "distance_m": 4.164}}))
    def locate(lat: Lat, lon: Lon,
               accuracy_m: Annotated[float, Query(ge=0, le=100_000, allow_inf_nan=False,
                                                  examples=[15])] = 0.0) -> dict:
        return engine.locate(lat, lon, accuracy_m).as_dict()

    store = store_feature(Store(id="fc-ferry", lat=37.7955, lon=-122.3937, name="Ferry Plaza",
                                tags=("coffee",), timezone="America/Los_Angeles"))

    @r.get("/v1/stores", dependencies=[auth.admin],
           responses={**errors(403), **example({"stores": [store], "next": "fc-ferry"})})
    def list_stores(limit: Annotated[int, Query(ge=1, le=10_000, examples=[100])] = 100,
                    after: Annotated[str | None, Query(
                        min_length=1, max_length=512, examples=["fc-embarcadero"],
                        description="the last id of the page before")] = None
                    ) -> dict:
        """Stores by id, a page at a time: pass the answer's ``next`` as ``after`` (null at the
        end)."""
        page = engine.store_page(limit, after)
        return {"stores": [store_feature(s) for s in page],
                "next": page[-1].id if len(page) == limit else None}

    @r.delete("/v1/stores/{store_id}", dependencies=[auth.admin], responses={**errors(403, 404), **example(
        {"deleted": "fc-ferry", "geofences": ["fc-ferry-hall"]})})
    def delete_store(store_id: Annotated[str, Path(examples=["fc-ferry"])]) -> dict:
        """Delete a store with its geofences (visits open in them close without an exit)."""
        return {"deleted": store_id, "geofences": engine.delete_store(store_id)}

    @r.get("/v1/export", dependencies=[auth.admin], tags=["geofences"], responses={**errors(403), **example(
        {"type": "FeatureCollection", "features": [{**store, "properties": {
            k: v for k, v in store["properties"].items() if k != "metadata"}}]})})
    def export() -> dict:
        """Every store and geofence in one FeatureCollection, style properties (``stroke``,
        ``fill``, ...) back at the top level: ``import`` takes it back unchanged."""
        return engine.export()

    return r
