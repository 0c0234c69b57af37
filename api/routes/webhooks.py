"""``/v1/webhooks`` (SPEC 12): subscriptions, their deliveries, replays. Admin only.

It holds no SQL and no rule: the engine's webhook desk answers (:mod:`geo_engine.webhook_desk`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from geo_engine import Engine

from ..auth import Auth
from ..schemas import ALWAYS, errors, example

__all__ = ["router"]

HOOK = {"id": "crm", "url": "https://crm.example.com/geo-engine", "events": ["geofence.entered", "trip.*"],
        "enabled": True}

class WebhookIn(BaseModel):
    """A subscription (SPEC 12): where to post, and which events."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {k: HOOK[k] for k in ("url", "events", "enabled")}]})

    url: str = Field(min_length=8, max_length=2048, pattern="^https?://[^\\x00]+$",
                     description="an http:// or https:// URL (private addresses allowed)")
    events: list[Annotated[str, Field(pattern="^[a-z.*_]+$")]] = Field(
        default=["*"], min_length=1, max_length=20,
        description="event types: geofence.entered, geofence.exited, geofence.dwelled, "
                    "offer.pushed, trip.started, ... trip.expired; or geofence.*, trip.*, *")
    enabled: bool = True


HookId = Annotated[str, Path(examples=["crm"])]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["webhooks"], dependencies=[auth.admin], responses=errors(*ALWAYS, 401, 403, 422))

    @r.get("/v1/webhooks", responses=example({"webhooks": [HOOK]}))
    def list_webhooks() -> dict:
        return {"webhooks": engine.webhooks.list()}

    created = {"description": "created: the signing secret, shown this once",
               "content": {"application/json": {"example": {**HOOK, "secret": "whsec_..."}}}}

    @r.put("/v1/webhooks/{webhook_id}", responses={**example(HOOK), 201: created})
    def put_webhook(webhook_id: HookId, response: Response, body: WebhookIn) -> dict:
        """Create (201, with the signing `secret`, shown this once) or change (200) a
        subscription. Any http(s) URL is called, private addresses included."""
        out, created = engine.webhooks.put(webhook_id, body.model_dump(exclude_unset=True))
        response.status_code = 201 if created else 200
        return out

    @r.get("/v1/webhooks/{webhook_id}", responses={**errors(404), **example(HOOK)})
    def get_webhook(webhook_id: HookId) -> dict:
        return engine.webhooks.get(webhook_id)

    @r.delete("/v1/webhooks/{webhook_id}", responses={**errors(404), **example({"deleted": "crm"})})
    def delete_webhook(webhook_id: HookId) -> dict:
        engine.webhooks.delete(webhook_id)
        return {"deleted": webhook_id}

    @r.get("/v1/webhooks/{webhook_id}/deliveries", responses={**errors(404), **example({"deliveries": [{
        "id": 7, "webhook_message_id": "msg_5f0c...", "status": "pending", "attempts": 3,
        "last_error": "HTTP 503", "events": 100, "oldest_event_at": "2026-11-22T17:01:00.000Z",
        "created_at": "2026-11-22T17:01:00.200Z", "next_attempt_at": "2026-11-22T17:01:07.900Z",
        "done_at": None}]})})
    def deliveries(webhook_id: HookId,
                   status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
        """Deliveries newest first: status (failed: dead-lettered after the retries), attempts,
        the last error."""
        return {"deliveries": engine.webhooks.deliveries(webhook_id, limit, status)}

    @r.post("/v1/webhooks/{webhook_id}/replay", responses={**errors(404), **example({"queued": 42})})
    def replay(webhook_id: HookId,
               start: Annotated[datetime, Query(alias="from", description="RFC 3339; UTC without an offset")],
               end: Annotated[datetime, Query(alias="to", description="the end, excluded")]) -> dict:
        """Send again every event of the subscription that happened in [from, to), under the
        same event ids (receivers drop what they had)."""
        return {"queued": engine.webhooks.replay(webhook_id, _utc(start), _utc(end))}

    return r


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
