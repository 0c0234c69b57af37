"""``/v1/campaigns``: put (create or replace), list, get, delete, and results (admin).

It holds no SQL, geometry or rules: the engine validates and stores.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from geo_engine import Engine

from ..auth import Auth
from ..schemas import ALWAYS, CampaignIn, errors, example

__all__ = ["router"]

CampaignId = Annotated[str, Path(examples=["coffee-any"])]

_GROUP = {"devices": 412, "converted": 103, "rate": 0.25, "interval": [0.2103, 0.2944],
          "any_store": {"devices": 412, "converted": 124, "rate": 0.301, "interval": [0.2581, 0.3477]}}
RESULTS = {
    "campaign_id": "coffee-any", "from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z",
    "window_days": 7, "visit_min_dwell_s": 120.0, "days": "UTC", "confidence": 0.95,
    "pushes": 530, "unique_devices": 412, "in_both_groups": 0, "windows_open": 37,
    "exposed": _GROUP,
    "control": {"devices": 98, "converted": 14, "rate": 0.1429, "interval": [0.0871, 0.2255],
                "any_store": {"devices": 98, "converted": 20, "rate": 0.2041, "interval": [0.1362, 0.2944]}},
    "lift": {"verdict": "lift", "absolute": 0.1071, "interval": [0.0208, 0.1764], "relative": 0.75},
    "lift_any_store": {"verdict": "no_detectable_lift", "absolute": 0.0969,
                       "interval": [-0.0004, 0.1788], "relative": 0.4748},
    "visits": 120, "median_push_to_visit_s": 4810.0,
    "rejections_by_day": [{"day": "2026-11-02", "reasons": {"holdout": 4, "frequency_cap": 11}}],
}


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

    @r.get("/v1/campaigns/{campaign_id}/results", responses={**errors(404), **example(RESULTS)})
    def campaign_results(
            campaign_id: CampaignId,
            start: Annotated[datetime | None, Query(
                alias="from", description="the first moment (RFC 3339; UTC when it has no "
                "offset) of the pushes and holdouts counted; default 30 days before `to`")] = None,
            end: Annotated[datetime | None, Query(
                alias="to", description="the end (excluded) of that period; default now")] = None,
            window_days: Annotated[int | None, Query(
                ge=1, le=30, description="days after a push or holdout in which a visit counts "
                "(default the setting results_window_days, 7)")] = None,
            by: Annotated[Literal["store", "day"] | None, Query(
                description="also the figures of each store (the offer's) or each UTC day")] = None,
    ) -> dict:
        """Did the offer bring them in: visit rates of the pushed devices against the held-out
        ones (Wilson intervals), the lift (Newcombe interval) or `insufficient_data`, pushes,
        visits, the median time to a visit, and why the campaign was not sent, by day."""
        return engine.results(campaign_id, _utc(start), _utc(end), window_days, by)

    @r.delete("/v1/campaigns/{campaign_id}",
              responses={**errors(404), **example({"deleted": one["id"]})})
    def delete_campaign(campaign_id: CampaignId) -> dict:
        engine.delete_campaign(campaign_id)
        return {"deleted": campaign_id}

    return r


def _utc(at: datetime | None) -> datetime | None:
    """A time given without an offset is UTC."""
    return at if at is None or at.tzinfo is not None else at.replace(tzinfo=UTC)
