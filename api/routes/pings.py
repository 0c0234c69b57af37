"""``POST /v1/pings``: a location update in, the engine's answer out (SPEC 6).

It holds no SQL, geometry or rules: the answer's bytes come from the engine, sent as they are.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from geo_engine import Engine

from ..auth import Auth
from ..metrics import Metrics
from ..schemas import ALWAYS, PingIn, errors, example

__all__ = ["router"]


def router(engine: Engine, auth: Auth, metrics: Metrics) -> APIRouter:
    r = APIRouter(tags=["pings"], responses=errors(*ALWAYS, 401, 409, 422))
    answer = {"events": [{"type": "enter", "geofence_id": "fc-ferry-hall", "store_id": "fc-ferry",
                          "confidence": "high"}],
              "offer": {"campaign_id": "coffee-am", "title": "20% off your latte",
                        "body": "Show this at the till", "url": "app://offers/coffee-am",
                        "coupon_code": "LATTE20", "store_id": "fc-ferry",
                        "geofence_id": "fc-ferry-hall", "distance_m": 4.164},
              "decision": {"considered": 2, "rejected": [{"campaign_id": "coffee-welcome",
                                                          "reason": "lower_priority"}]},
              "nearest_store": {"store_id": "fc-ferry", "distance_m": 4.164}, "flags": [],
              "trip": None}

    # async: the ping runs on the event loop, with no hop to a thread and back; its records
    # go in the loop's group commit with the pings that arrived with it, and the answer waits
    # for that commit
    @r.post("/v1/pings", responses=example(answer))
    async def post_ping(p: PingIn, kind: str = auth.either,
                        x_device_token: Annotated[str | None, Header(
                            description="the device's token (POST /v1/devices), when the "
                                        "publishable key is used and tokens are required")] = None
                        ) -> Response:
        auth.speaks_for(kind, p.device_id, x_device_token)
        auth.ping(kind, p.device_id)
        answer = await engine.handle_ping_async(p.to_ping())
        metrics.count_ping(answer)
        return Response(answer.body, media_type="application/json")

    return r
