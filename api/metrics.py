"""Prometheus metrics and the access log: requests and their latency by route, what pings did.

:class:`Observe` is a plain ASGI middleware (no per-request task or thread, as Starlette's
``BaseHTTPMiddleware`` needs): it times each request, counts it by method, route and status,
and writes one JSON line to the ``geo_engine.access`` log.

Ping figures are counted from the engine's answer values (events, the offer, rejections), never
by re-reading the JSON sent. A replayed ``ping_id`` counts as a ping and nothing more: it pushed
nothing new.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from geo_engine.model import PingAnswer

from .asgi import send_json

__all__ = ["Metrics", "Observe"]

log = logging.getLogger("geo_engine.access")
errors = logging.getLogger("geo_engine.errors")


class Metrics:
    """The registry served at ``/metrics`` and its counters."""

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

    def watch_webhooks(self, figures: Callable[[], dict]) -> None:
        """Serve the webhook figures (read from the database at each scrape, so every process
        shows the same): events delivered and dead-lettered, events waiting, and the lag."""
        self.registry.register(_WebhookFigures(figures))

    def count_ping(self, answer: PingAnswer) -> None:
        self.pings.inc()
        for e in answer.events:
            self.events.labels(str(e.type)).inc()
        if answer.decision.chosen is not None:
            self.offers.labels(answer.decision.chosen.campaign.id).inc()
        for r in answer.decision.rejected:
            self.rejections.labels(str(r.reason)).inc()

    def count_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class _WebhookFigures:
    """A collector of the database's webhook figures (SPEC 12: delivered, failed, lag)."""

    def __init__(self, figures: Callable[[], dict]):
        self._figures = figures

    def describe(self):
        return []  # (read only at a scrape, not when registered)

    def collect(self):
        try:
            f = self._figures()
        except Exception:  # noqa: BLE001 - a scrape never fails for it: the figures are left out
            errors.exception("webhook figures could not be read")
            return
        yield CounterMetricFamily("geo_engine_webhook_events_delivered",
                                  "webhook events acknowledged by their receivers", f["delivered"])
        yield CounterMetricFamily("geo_engine_webhook_events_failed",
                                  "webhook events dead-lettered after every retry", f["failed"])
        yield GaugeMetricFamily("geo_engine_webhook_events_waiting",
                                "webhook events not yet acknowledged", f["waiting"])
        yield GaugeMetricFamily("geo_engine_webhook_lag_seconds",
                                "seconds since the oldest event not yet acknowledged happened",
                                f["lag_s"])


class Observe:
    """ASGI middleware: each HTTP request timed, counted in :class:`Metrics` and logged, errors
    included; an exception no handler answered (a bug) becomes a 500 in the one error shape,
    with its traceback in the ``geo_engine.errors`` log."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting a response
        started = False

        async def sending(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)
        try:
            await self.app(scope, receive, sending)
        except Exception:  # a bug: answered here, in the one error shape, logged and counted
            errors.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:  # too late for an answer: the server closes the connection
                raise
            body = orjson.dumps({"detail": "internal error: this is a bug in geo-engine (the "
                                           "server's log has the details); please report it"})
            await send_json(send, 500, body)
        finally:
            took = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")  # set by the router
            method = scope["method"]
            self.metrics.count_request(method, route, status, took)
            log.info(json.dumps({"method": method, "path": scope["path"], "route": route,
                                 "status": status, "ms": round(took * 1000, 3)}))
