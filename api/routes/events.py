"""``/v1/events/stream``: the event log as it grows, as Server-Sent Events (admin).

The console's live feed. Each server process reads the shared event log (every instance's
events, on SQLite or PostgreSQL) once a second for what came after the last event it sent, and
for events that committed after a higher id was sent (:class:`~geo_engine.db.logs.EventFollower`);
a client that reconnects with ``Last-Event-ID`` (or ``?after=``) goes on from there. It holds no
SQL: the engine's logs do.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse

from geo_engine import Engine
from geo_engine.db.logs import EventFollower

from ..auth import Auth
from ..schemas import ALWAYS, errors

__all__ = ["router"]

POLL_S = 1.0
BACKLOG = 20  # events sent first on a new connection, for context


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["events"], dependencies=[auth.admin], responses=errors(*ALWAYS, 401, 403, 422))

    @r.get("/v1/events/stream", response_class=EventSourceResponse, responses={200: {
        "description": "text/event-stream: an `event: geo` message for each enter, exit, dwell, "
                       "held_out and trip.* event, its `id` the event's, its data the event as JSON",
        "content": {"text/event-stream": {"example": 'id: 42\nevent: geo\ndata: {"id": 42, '
                    '"device_id": "d-123", "type": "enter", "geofence_id": "g1", "store_id": "s1", '
                    '"at": "2026-11-22T09:15:00Z"}\n\n'}}}})
    async def stream(after: Annotated[int | None, Query(ge=0, description="send the events after "
                                                         "this id (default: the last 20)")] = None,
                     last_event_id: Annotated[str | None, Header(
                         max_length=40, description="the id of the last event received (a "
                         "reconnecting EventSource sends it); anything but a number is ignored")] = None):
        """The events as they are recorded (Server-Sent Events); ``Last-Event-ID`` resumes."""
        resume = int(last_event_id) if last_event_id and last_event_id.strip().isdigit() else None
        start = resume if resume is not None else after
        if start is None:
            start = max(0, await asyncio.to_thread(engine.db.logs.latest_event_id) - BACKLOG)

        async def events():
            follower = EventFollower(engine.db.logs, start)
            announced = start  # the SSE id: the highest event id sent (a late event's too)
            while True:
                rows = await asyncio.to_thread(follower.read, time.time())
                for row in rows:
                    announced = max(announced, row[0])
                    yield {"id": str(announced), "event": "geo", "data": orjson.dumps(_event(row)).decode()}
                if not follower.full:
                    await asyncio.sleep(POLL_S)
        return EventSourceResponse(events(), ping=15)

    return r


def _event(row: tuple) -> dict:
    event_id, device_id, ts, kind, geofence_id, store_id, campaign_id, duration_s, trip_id = row
    out = {"id": event_id, "device_id": device_id, "type": kind, "geofence_id": geofence_id or None,
           "store_id": store_id,
           "at": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")}
    if campaign_id is not None:
        out["campaign_id"] = campaign_id
    if duration_s is not None:
        out["duration_s"] = duration_s
    if trip_id is not None:
        out["trip_id"] = trip_id
    return out
