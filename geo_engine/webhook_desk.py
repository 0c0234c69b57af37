"""Webhook subscriptions as an admin sees them (SPEC 12): made, changed, listed, deleted, their
deliveries listed, their events replayed, and the figures ``/metrics`` shows.

The signing secret is made here on creation and returned once; later reads never show it.
A change is in force in every process before its next ping (the ``webhooks`` change counter,
read in each ping's transaction, as campaigns are).
"""

from __future__ import annotations

import time
from datetime import datetime

from .errors import InvalidInput, NotFound
from .webhooks import Subscription, check_subscription, iso_time, new_secret

__all__ = ["WebhookDesk"]

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _view(sub: Subscription) -> dict:
    return {"id": sub.id, "url": sub.url, "events": list(sub.events), "enabled": sub.enabled}


class WebhookDesk:
    """The engine's webhook subscriptions (``engine.webhooks``)."""

    def __init__(self, engine):
        self._engine = engine
        self._db = engine.db

    def put(self, webhook_id: str, body: object) -> tuple[dict, bool]:
        """Create or change a subscription; return it (with ``secret`` when it was created,
        the one time it is shown) and whether it was created."""
        if not 1 <= len(webhook_id) <= 64 or not set(webhook_id) <= _ID_CHARS:
            raise InvalidInput("a webhook id is 1 to 64 letters, digits, '-', '_' or '.'")
        url, events, enabled = check_subscription(body)
        secret = new_secret()
        created = self._db.webhooks.put(webhook_id, url, events, enabled, secret, time.time())
        self._engine.reload_campaigns()  # in force here at once (elsewhere: its counter)
        out = _view(Subscription(webhook_id, url, events, enabled))
        if created:
            out["secret"] = secret
        return out, created

    def list(self) -> list[dict]:
        return [_view(s) for s in self._db.webhooks.all()]

    def get(self, webhook_id: str) -> dict:
        for s in self._db.webhooks.all():
            if s.id == webhook_id:
                return _view(s)
        raise NotFound(f"no webhook {webhook_id!r}")

    def delete(self, webhook_id: str) -> None:
        if not self._db.webhooks.delete(webhook_id):
            raise NotFound(f"no webhook {webhook_id!r}")
        self._engine.reload_campaigns()

    def deliveries(self, webhook_id: str, limit: int = 100, status: str | None = None) -> list[dict]:
        """The subscription's deliveries, newest first: status (pending, delivered, failed:
        dead-lettered), attempts, the last error, how many events, when."""
        self.get(webhook_id)
        if status not in (None, "pending", "delivered", "failed"):
            raise InvalidInput(f"status must be pending, delivered or failed, got {status!r}")
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be from 1 to 1000, got {limit}")
        return [{"id": d["id"], "webhook_message_id": d["msg_id"], "status": d["status"],
                 "attempts": d["attempts"], "last_error": d["last_error"], "events": d["n"],
                 "oldest_event_at": iso_time(d["oldest_ts"]), "created_at": iso_time(d["created_ts"]),
                 "next_attempt_at": iso_time(d["next_ts"]) if d["status"] == "pending" else None,
                 "done_at": iso_time(d["done_ts"])}
                for d in self._db.webhooks.deliveries(webhook_id, limit, status)]

    def replay(self, webhook_id: str, start: datetime, end: datetime) -> int:
        """Send again every event of the subscription with a time in ``[start, end)`` (under the
        same event ids); return how many were queued."""
        self.get(webhook_id)
        if start.tzinfo is None or end.tzinfo is None:
            raise InvalidInput("from and to must carry a time zone (RFC 3339)")
        if end <= start:
            raise InvalidInput("to must be after from")
        n = self._db.webhooks.replay(webhook_id, start.timestamp(), end.timestamp())
        self._engine.delivery.wake()
        return n

    def figures(self) -> dict:
        """Events delivered and dead-lettered so far, events waiting, and the lag: seconds since
        the oldest event not yet acknowledged happened (0 when none waits)."""
        f = self._db.webhooks.figures()
        oldest = f.pop("oldest_ts")
        f["lag_s"] = 0.0 if oldest is None else max(0.0, time.time() - oldest)
        return f
