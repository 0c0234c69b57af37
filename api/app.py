"""The HTTP API (SPEC section 5): the app factory, wiring routes, errors, auth and metrics.

Routes (``api/routes/``, one module per resource) parse the request, call the Engine and
serialize the values it returns; they hold no SQL, geometry or rules. Library errors become
HTTP statuses through one table (:mod:`api.errors`); a 5xx is always a bug. This package may
import the library; nothing in the library imports it.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import FastAPI, Request

from geo_engine import Engine

from .auth import Auth
from .errors import ERROR_STATUS, add_error_handlers
from .metrics import Metrics
from .routes import campaigns, devices, geofences, operations, pings, stores

__all__ = ["ERROR_STATUS", "create_app"]

log = logging.getLogger("geo_engine.access")


def create_app(engine: Engine) -> FastAPI:
    """Return the FastAPI app serving ``engine``."""
    app = FastAPI(title="geo-engine", version="0.1.0",
                  description="Location-triggered store offers: exact WGS84 geofences, nearest "
                              "stores and the offer decision. Keys: `Authorization: Bearer KEY`.")
    metrics = Metrics()
    auth = Auth(engine.db.apikeys)
    app.state.engine = engine
    app.state.metrics = metrics

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        took = time.perf_counter() - start
        metrics.count_request(request.method, path, response.status_code, took)
        log.info(json.dumps({"method": request.method, "path": request.url.path, "route": path,
                             "status": response.status_code, "ms": round(took * 1000, 3)}))
        return response

    add_error_handlers(app)
    app.include_router(operations.router(engine, metrics))
    app.include_router(geofences.router(engine, auth))
    app.include_router(stores.router(engine, auth))
    app.include_router(campaigns.router(engine, auth))
    app.include_router(pings.router(engine, auth, metrics))
    app.include_router(devices.router(engine, auth))
    return app
