"""``/health`` and ``/metrics``: what an operator's probes and Prometheus read (no key).

It holds no SQL: the counts come from the engine, the figures from the metrics.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from geo_engine import Engine

from ..metrics import Metrics

__all__ = ["router"]


def router(engine: Engine, metrics: Metrics) -> APIRouter:
    r = APIRouter(tags=["operations"])

    @r.get("/health")
    def health() -> dict:
        return {"status": "ok", **engine.counts()}

    @r.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return r
