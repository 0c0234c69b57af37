"""The HTTP API (SPEC section 5): parse the request, call the Engine, serialize the answer.

Routes hold no SQL, geometry or rules. Library errors become HTTP statuses through one table
(:data:`ERROR_STATUS`, as TiTiler's ``errors.py``); a 5xx is always a bug.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Literal

import orjson
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator

from geo_engine import Engine
from geo_engine.apikeys import key_kind
from geo_engine.engine import Ping
from geo_engine.errors import (
    Conflict,
    GeoEngineError,
    InvalidInput,
    NotFound,
    StorageError,
    ValidationFailed,
)

__all__ = ["ERROR_STATUS", "create_app"]

log = logging.getLogger("geo_engine.access")

#: Library exception -> HTTP status; the first matching class (in order) wins.
ERROR_STATUS: list[tuple[type[GeoEngineError], int]] = [
    (ValidationFailed, 422),
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (StorageError, 503),
    (GeoEngineError, 500),
]

Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="latitude, degrees")]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False, description="longitude, degrees")]


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


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location_offers: StrictBool


class _Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("geo_engine_requests", "HTTP requests", ["method", "route", "status"],
                                registry=r)
        self.latency = Histogram("geo_engine_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=r, buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1))
        self.pings = Counter("geo_engine_pings", "pings handled", registry=r)
        self.events = Counter("geo_engine_events", "geofence events", ["type"], registry=r)
        self.offers = Counter("geo_engine_offers_pushed", "offers pushed", ["campaign_id"], registry=r)
        self.rejections = Counter("geo_engine_rejections", "campaigns turned down", ["reason"], registry=r)


def create_app(engine: Engine) -> FastAPI:
    """Return the FastAPI app serving ``engine``."""
    app = FastAPI(title="geo-engine", version="0.1.0",
                  description="Location-triggered store offers: exact WGS84 geofences, nearest "
                              "stores and the offer decision. Keys: `Authorization: Bearer KEY`.")
    metrics = _Metrics()
    app.state.engine = engine
    app.state.metrics = metrics

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        took = time.perf_counter() - start
        metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        metrics.latency.labels(request.method, path).observe(took)
        log.info(json.dumps({"method": request.method, "path": request.url.path, "route": path,
                             "status": response.status_code, "ms": round(took * 1000, 3)}))
        return response

    @app.exception_handler(GeoEngineError)
    async def library_error(request: Request, exc: GeoEngineError):
        status = next(code for cls, code in ERROR_STATUS if isinstance(exc, cls))
        body: dict = {"detail": str(exc)}
        if isinstance(exc, ValidationFailed):
            body["problems"] = [p.as_dict() for p in exc.problems]
        if getattr(exc, "problems", None) and not isinstance(exc, ValidationFailed):
            body["problems"] = exc.problems
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        problems = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
                    for e in exc.errors()]
        for p in problems:
            if not p["field"]:  # the body as a whole: usually JSON sent without its content type
                p["field"] = "body"
                p["message"] = ("the body must be a JSON object, sent with Content-Type: "
                                "application/json (curl: --json)")
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSONResponse({"detail": detail, "problems": problems}, status_code=422)

    def need(kind: Literal["admin", "either"]):
        def check(authorization: Annotated[str | None, Header()] = None) -> str:
            scheme, _, key = (authorization or "").partition(" ")
            found = key_kind(engine.db, key.strip()) if scheme.lower() == "bearer" else None
            if found is None:
                raise HTTPException(401, "a valid API key is needed: Authorization: Bearer KEY",
                                    headers={"WWW-Authenticate": "Bearer"})
            if kind == "admin" and found != "admin":
                raise HTTPException(403, "this needs the admin key; a publishable key may only "
                                         "post pings and read nearest, within, nearby and locate")
            return found
        return Depends(check)

    admin, either = need("admin"), need("either")

    @app.get("/health", tags=["operations"])
    def health() -> dict:
        counts = engine.db.counts()
        return {"status": "ok", "stores": counts["stores"], "geofences": counts["geofences"],
                "campaigns": len(engine.campaigns)}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/geofences/import", tags=["geofences"], dependencies=[admin])
    def import_geofences(collection: Annotated[dict, Body(examples=[{
            "type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
                "id": "g1", "store_id": "fc-ferry", "radius_m": 80},
                "geometry": {"type": "Point", "coordinates": [-122.3937, 37.7955]}}]}])]) -> dict:
        return engine.import_geojson(json.dumps(collection))

    @app.get("/v1/geofences", tags=["geofences"], dependencies=[admin])
    def list_geofences() -> dict:
        return engine.geofence_collection()

    @app.get("/v1/geofences/nearby", tags=["geofences"], dependencies=[either])
    def nearby(lat: Lat, lon: Lon, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict:
        return {"geofences": engine.nearby_geofences(lat, lon, limit)}

    @app.get("/v1/geofences/{geofence_id}", tags=["geofences"], dependencies=[admin])
    def get_geofence(geofence_id: str) -> dict:
        return engine.geofence_feature(geofence_id)

    @app.delete("/v1/geofences/{geofence_id}", tags=["geofences"], dependencies=[admin])
    def delete_geofence(geofence_id: str) -> dict:
        engine.delete_geofence(geofence_id)
        return {"deleted": geofence_id}

    @app.get("/v1/stores/nearest", tags=["stores"], dependencies=[either])
    def nearest(lat: Lat, lon: Lon, k: Annotated[int, Query(ge=1, le=1000)] = 1) -> dict:
        return {"stores": [h.as_dict() for h in engine.nearest(lat, lon, k=k)]}

    @app.get("/v1/stores/within", tags=["stores"], dependencies=[either])
    def within(lat: Lat, lon: Lon,
               radius_m: Annotated[float, Query(ge=0, le=20_100_000, allow_inf_nan=False)]) -> dict:
        return {"stores": [h.as_dict() for h in engine.nearest(lat, lon, radius_m=radius_m)]}

    @app.get("/v1/locate", tags=["stores"], dependencies=[either])
    def locate(lat: Lat, lon: Lon,
               accuracy_m: Annotated[float, Query(ge=0, le=100_000, allow_inf_nan=False)] = 0.0) -> dict:
        return engine.locate(lat, lon, accuracy_m).as_dict()

    @app.get("/v1/campaigns", tags=["campaigns"], dependencies=[admin])
    def list_campaigns() -> dict:
        engine.refresh()
        return {"campaigns": [c.body for c in engine.campaigns]}

    @app.put("/v1/campaigns/{campaign_id}", tags=["campaigns"], dependencies=[admin])
    def put_campaign(campaign_id: str, body: Annotated[dict, Body(examples=[{
            "id": "coffee-any", "offer": {"title": "A free cookie with your coffee"},
            "targets": {"tags": ["coffee"]}, "trigger": {"type": "enter"}, "priority": 5}])]) -> dict:
        return engine.put_campaign(campaign_id, body).body

    @app.get("/v1/campaigns/{campaign_id}", tags=["campaigns"], dependencies=[admin])
    def get_campaign(campaign_id: str) -> dict:
        return engine.campaign(campaign_id).body

    @app.delete("/v1/campaigns/{campaign_id}", tags=["campaigns"], dependencies=[admin])
    def delete_campaign(campaign_id: str) -> dict:
        engine.delete_campaign(campaign_id)
        return {"deleted": campaign_id}

    @app.post("/v1/pings", tags=["pings"], dependencies=[either])
    def post_ping(p: PingIn) -> Response:
        body = engine.handle_ping(Ping(p.device_id, p.lat, p.lon, p.accuracy_m, p.timestamp,
                                       p.ping_id, tuple(p.segments)))
        _count(metrics, body)
        return Response(body, media_type="application/json")

    @app.put("/v1/devices/{device_id}/consent", tags=["devices"], dependencies=[either])
    def consent(device_id: str, body: ConsentIn) -> dict:
        engine.set_consent(device_id, body.location_offers)
        return {"device_id": device_id, "location_offers": body.location_offers}

    @app.delete("/v1/devices/{device_id}", tags=["devices"], dependencies=[admin])
    def forget(device_id: str) -> dict:
        engine.forget_device(device_id)
        return {"deleted": device_id}

    return app


def _count(metrics: _Metrics, body: bytes) -> None:
    answer = orjson.loads(body)
    metrics.pings.inc()
    for e in answer["events"]:
        metrics.events.labels(e["type"]).inc()
    if answer["offer"]:
        metrics.offers.labels(answer["offer"]["campaign_id"]).inc()
    for r in answer["decision"]["rejected"]:
        metrics.rejections.labels(r["reason"]).inc()

