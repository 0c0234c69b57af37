"""``/v1/campaigns``: put (create or replace), list, get, delete (admin).

It holds no SQL, geometry or rules: the engine validates and stores.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from geo_engine import Engine

from ..auth import Auth

__all__ = ["router"]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["campaigns"], dependencies=[auth.admin])

    @r.get("/v1/campaigns")
    def list_campaigns() -> dict:
        return {"campaigns": [c.body for c in engine.campaigns()]}

    @r.put("/v1/campaigns/{campaign_id}")
    def put_campaign(campaign_id: str, body: Annotated[dict, Body(examples=[{
            "id": "coffee-any", "offer": {"title": "A free cookie with your coffee"},
            "targets": {"tags": ["coffee"]}, "trigger": {"type": "enter"}, "priority": 5}])]) -> dict:
        return engine.put_campaign(campaign_id, body).body

    @r.get("/v1/campaigns/{campaign_id}")
    def get_campaign(campaign_id: str) -> dict:
        return engine.campaign(campaign_id).body

    @r.delete("/v1/campaigns/{campaign_id}")
    def delete_campaign(campaign_id: str) -> dict:
        engine.delete_campaign(campaign_id)
        return {"deleted": campaign_id}

    return r
