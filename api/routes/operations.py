"""``/health`` and ``/metrics``: what an operator's probes and Prometheus read (no key).

It holds no SQL: the counts come from the engine, the figures from the metrics.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from geo_engine import Engine

from ..metrics import Metrics
from ..schemas import ALWAYS, errors, example

__all__ = ["router"]


def router(engine: Engine, metrics: Metrics) -> APIRouter:
    r = APIRouter(tags=["operations"], responses=errors(*ALWAYS))

    @r.get("/health", responses=example({"status": "ok", "stores": 32, "geofences": 33,
                                         "campaigns": 4}))
    def health() -> dict:
        return {"status": "ok", **engine.counts()}

    shown = ('geo_engine_pings_total 1042.0\n'
             'geo_engine_offers_pushed_total{campaign_id="coffee-am"} 57.0\n')

    @r.get("/metrics", response_class=Response,
           responses={200: {"content": {"text/plain": {"example": shown}}}})
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return r
