"""The HTTP API (SPEC section 5): the app factory, wiring routes, errors, auth and metrics.

Routes (``api/routes/``, one module per resource) parse the request, call the Engine and
serialize the values it returns; they hold no SQL, geometry or rules. Library errors become
HTTP statuses through one table (:mod:`api.errors`); a 5xx is always a bug. This package may
import the library; nothing in the library imports it.
"""

from __future__ import annotations

from fastapi import FastAPI

from geo_engine import Engine
from geo_engine.apikeys import KeyCache

from .auth import Auth
from .errors import ERROR_STATUS, add_error_handlers
from .metrics import Metrics, Observe
from .routes import campaigns, devices, geofences, operations, pings, stores

__all__ = ["ERROR_STATUS", "create_app"]

def create_app(engine: Engine) -> FastAPI:
    """Return the FastAPI app serving ``engine``."""
    app = FastAPI(title="geo-engine", version="0.1.0",
                  description="Location-triggered store offers: exact WGS84 geofences, nearest "
                              "stores and the offer decision. Keys: `Authorization: Bearer KEY`.")
    metrics = Metrics()
    auth = Auth(KeyCache(engine.db.apikeys, check_s=engine.settings.reload_check_s))
    app.state.engine = engine
    app.state.metrics = metrics

    app.add_middleware(Observe, metrics=metrics)  # plain ASGI: no task or thread per request
    add_error_handlers(app)
    app.include_router(operations.router(engine, metrics))
    app.include_router(geofences.router(engine, auth))
    app.include_router(stores.router(engine, auth))
    app.include_router(campaigns.router(engine, auth))
    app.include_router(pings.router(engine, auth, metrics))
    app.include_router(devices.router(engine, auth))
    return app
