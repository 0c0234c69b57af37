"""The HTTP API (SPEC section 5): the app factory, wiring routes, errors, auth and metrics.

Routes (``api/routes/``, one module per resource) parse the request, call the Engine and
serialize the values it returns; they hold no SQL, geometry or rules. Library errors become
HTTP statuses through one table (:mod:`api.errors`); a 5xx is always a bug. This package may
import the library; nothing in the library imports it.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from geo_engine import Engine, Settings
from geo_engine.apikeys import KeyCache

from . import console
from .auth import Auth
from .errors import ERROR_STATUS, add_error_handlers
from .limits import Guard, RateLimits
from .metrics import Metrics, Observe
from .ping_path import PingPath
from .routes import campaigns, devices, events, geofences, operations, pings, stores, trips, webhooks
from .schemas import known_query_only

__all__ = ["ERROR_STATUS", "create_app", "create_app_from_env"]

def create_app(engine: Engine) -> FastAPI:
    """Return the FastAPI app serving ``engine``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        engine.trips.stop()
        engine.delivery.stop()  # a post under way ends (or times out); the lease is let go
        engine.db.devices.flush()  # quiet pings' last positions, before the process ends

    # FastAPIOffline: /docs and /redoc with their scripts served from the package, no CDN
    app = FastAPIOffline(title="geo-engine", version="0.1.0", lifespan=lifespan,
                         dependencies=[Depends(known_query_only)],
                  description="Location-triggered store offers: exact WGS84 geofences, nearest "
                              "stores and the offer decision. Keys: `Authorization: Bearer KEY`.")
    metrics = Metrics()
    metrics.watch_webhooks(engine.webhooks.figures)
    keys = KeyCache(engine.db.apikeys, check_s=engine.settings.reload_check_s)
    rates = RateLimits(engine.settings)
    auth = Auth(keys, engine.tokens, lambda: engine.tokens_required, rates)
    app.state.engine = engine
    app.state.metrics = metrics

    add_error_handlers(app)
    app.include_router(operations.router(engine, metrics))
    app.include_router(geofences.router(engine, auth))
    app.include_router(stores.router(engine, auth))
    app.include_router(campaigns.router(engine, auth))
    ping_router = pings.router(engine, auth, metrics)
    app.include_router(ping_router)
    app.include_router(devices.router(engine, auth))
    app.include_router(events.router(engine, auth))
    app.include_router(trips.router(engine, auth))
    app.include_router(webhooks.router(engine, auth))
    app.include_router(console.router(engine))
    # plain ASGI layers, no task or thread per request; the last added runs first: every
    # request is logged and counted (Observe), then held to its limits before anything is
    # parsed (Guard), then a plainly right ping is answered in front of the routing
    # (PingPath); everything else goes on to the routes
    app.add_middleware(PingPath, engine=engine, keys=keys, metrics=metrics,
                       route=ping_router.routes[0], rates=rates)
    app.add_middleware(Guard, settings=engine.settings, rates=rates)
    app.add_middleware(Observe, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """The app of one of ``serve --workers N``'s processes: an engine of its own on the
    database the settings name (``GEO_ENGINE_DB``, set by ``serve``), readied as ``serve``
    readies one. The workers share the database and nothing else; each follows what the others
    change through the change counters, read in every ping's transaction."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = Engine(Settings.from_env())
    engine.start_serving()
    return create_app(engine)
