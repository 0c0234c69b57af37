"""``/v1/campaigns``: put (create or replace), list, get, delete (admin).

It holds no SQL, geometry or rules: the engine validates and stores.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from geo_engine import Engine

from ..auth import Auth
from ..schemas import ALWAYS, CampaignIn, errors, example

__all__ = ["router"]

CampaignId = Annotated[str, Path(examples=["coffee-any"])]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["campaigns"], dependencies=[auth.admin],
                  responses=errors(*ALWAYS, 401, 403, 422))
    one = CampaignIn.model_config["json_schema_extra"]["examples"][0]

    @r.get("/v1/campaigns", responses=example({"campaigns": [one]}))
    def list_campaigns() -> dict:
        return {"campaigns": [c.body for c in engine.campaigns()]}

    @r.put("/v1/campaigns/{campaign_id}", responses=example(one))
    def put_campaign(campaign_id: CampaignId, body: CampaignIn) -> dict:
        """Create or replace a campaign; a 422 names every wrong field."""
        return engine.put_campaign(campaign_id, body.model_dump(mode="json", exclude_unset=True)).body

    @r.get("/v1/campaigns/{campaign_id}", responses={**errors(404), **example(one)})
    def get_campaign(campaign_id: CampaignId) -> dict:
        return engine.campaign(campaign_id).body

    @r.delete("/v1/campaigns/{campaign_id}",
              responses={**errors(404), **example({"deleted": one["id"]})})
    def delete_campaign(campaign_id: CampaignId) -> dict:
        engine.delete_campaign(campaign_id)
        return {"deleted": campaign_id}

    return r
