"""Webhooks (SPEC 12), the pure part: subscriptions checked, events matched and shaped, the
retry schedule.

A subscription names a URL and the event types it wants (``geofence.entered``, ``trip.*``, ...).
A ping's events become webhook events here (:func:`outgoing`): each with a stable id the
receiver drops duplicates by, its type, its time and its data. What a delivery's body is and
when a failed one is tried again (:func:`backoff_s`: exponential, with jitter, the first retry
after about a second) is decided here too. No database and no network:
:mod:`geo_engine.db.webhooks` keeps the outbox, :mod:`geo_engine.delivery` posts it.
"""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson

from .errors import InvalidInput
from .model import Candidate, Event
from .trips import TripEvent

__all__ = ["EVENT_TYPES", "MAX_BATCH", "Outgoing", "Subscription", "backoff_s", "batch_body",
           "check_subscription", "iso_time", "matches", "new_event_id", "new_secret", "outgoing"]

#: the event types a subscription may ask for (``trip.*``: every trip event)
EVENT_TYPES = ("geofence.entered", "geofence.exited", "geofence.dwelled", "offer.pushed",
               "trip.started", "trip.approaching", "trip.arrived", "trip.arrived_elsewhere",
               "trip.completed", "trip.canceled", "trip.expired")
_PATTERNS = (*EVENT_TYPES, "geofence.*", "offer.*", "trip.*", "*")
_GEOFENCE = {"enter": "geofence.entered", "exit": "geofence.exited", "dwell": "geofence.dwelled"}
MAX_BATCH = 100  # events a delivery at most


@dataclass(frozen=True)
class Subscription:
    """A webhook: where to post and which event types (patterns) it wants."""

    id: str
    url: str
    events: tuple[str, ...]
    enabled: bool = True

    def wants(self, event_type: str) -> bool:
        return self.enabled and matches(self.events, event_type)


@dataclass(frozen=True)
class Outgoing:
    """One event for the outbox: its id, type, device, time (epoch seconds) and JSON payload."""

    event_id: str
    type: str
    device_id: str
    ts: float
    payload: str


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a subscription's patterns take an event type (``trip.*`` takes every trip event,
    ``*`` everything)."""
    for p in patterns:
        if p == event_type or p == "*" or (p.endswith(".*") and event_type.startswith(p[:-1])):
            return True
    return False


def check_subscription(body: object) -> tuple[str, tuple[str, ...], bool]:
    """``(url, events, enabled)`` of a subscription's body, or :class:`InvalidInput` naming
    the field that is wrong. Any http(s) URL is taken, private addresses included (webhooks
    often go to systems on the retailer's own network)."""
    if not isinstance(body, dict):
        raise InvalidInput("a webhook is a JSON object: {\"url\", \"events\", \"enabled\"}")
    unknown = sorted(set(body) - {"url", "events", "enabled"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}: a webhook has url, events and enabled")
    url = body.get("url")
    if not isinstance(url, str) or len(url) > 2048:
        raise InvalidInput("url must be an http:// or https:// URL of at most 2048 characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"url must be an http:// or https:// URL with a host, got {url!r}")
    events = body.get("events", ["*"])
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidInput("events must be a non-empty list of event types, such as "
                           "[\"geofence.entered\", \"trip.*\"]")
    for e in events:
        if e not in _PATTERNS:
            raise InvalidInput(f"events: unknown event type {e!r}; known: {', '.join(_PATTERNS)}")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false")
    return url, tuple(dict.fromkeys(events)), enabled


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form (``whsec_`` and 24 random bytes, base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_event_id() -> str:
    """An event's id: the same in every delivery and replay of it (duplicates are dropped by it)."""
    return "evt_" + secrets.token_hex(12)


def iso_time(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC text to the millisecond (None stays None)."""
    return None if ts is None else \
        datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event(event_type: str, device_id: str, ts: float, data: dict) -> Outgoing:
    event_id = new_event_id()
    payload = orjson.dumps({"id": event_id, "type": event_type, "timestamp": iso_time(ts),
                            "device_id": device_id, "data": data}).decode()
    return Outgoing(event_id, event_type, device_id, ts, payload)


def outgoing(device_id: str, ts: float, events: Iterable[Event] = (),
             trip_events: Iterable[tuple[TripEvent, dict]] = (), pushed: Candidate | None = None,
             ) -> list[Outgoing]:
    """A ping's (or a trip change's) events as webhook events, in the order they happened:
    geofence events, the trip's, then the offer pushed. ``trip_events`` pairs each trip event
    with the trip as the receiver sees it."""
    out = [_event(_GEOFENCE[str(e.type)], device_id, ts, e.as_dict()) for e in events]
    for te, trip in trip_events:
        data = {**trip, "store_id": trip.get("store_id", te.store_id)}
        if te.geofence_id:
            data["geofence_id"], data["at_store_id"] = te.geofence_id, te.store_id
        out.append(_event(te.type, device_id, ts, data))
    if pushed is not None:
        c = pushed
        out.append(_event("offer.pushed", device_id, ts, {
            "campaign_id": c.campaign.id, "store_id": c.store.id, "geofence_id": c.geofence_id,
            "distance_m": round(c.distance_m, 3), "offer": c.campaign.offer}))
    return out


def batch_body(payloads: Iterable[str], ts: float) -> str:
    """A delivery's body: up to :data:`MAX_BATCH` events, oldest first, as
    ``{"type": "events", "timestamp", "data": {"events": [...]}}`` (the Standard Webhooks
    shape: a type, a time, the data)."""
    return '{"type":"events","timestamp":"' + iso_time(ts) + '","data":{"events":[' + \
        ",".join(payloads) + "]}}"


def backoff_s(attempts: int, base_s: float = 1.0, cap_s: float = 3600.0,
              rng: random.Random | None = None) -> float:
    """Seconds before the next try after ``attempts`` failed ones: ``base_s`` doubled each time,
    at most ``cap_s``, times a jitter between 0.5 and 1.5 (so receivers coming back are not
    hit by every sender at once)."""
    r = (rng or random).uniform(0.5, 1.5)
    return min(cap_s, base_s * 2 ** max(0, attempts - 1)) * r
