"""Prometheus metrics: requests and their latency by route, and what pings did.

Ping figures are counted from the engine's answer values (events, the offer, rejections), never
by re-reading the JSON sent. A replayed ``ping_id`` counts as a ping and nothing more: it pushed
nothing new.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from geo_engine.model import PingAnswer

__all__ = ["Metrics"]


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
