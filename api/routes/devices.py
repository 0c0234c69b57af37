"""``/v1/devices/{id}``: a device's consent to offers, and forgetting a device.

It holds no SQL, geometry or rules: the engine validates and stores.
"""

from __future__ import annotations

from fastapi import APIRouter

from geo_engine import Engine

from ..auth import Auth
from ..schemas import ConsentIn

__all__ = ["router"]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["devices"])

    @r.put("/v1/devices/{device_id}/consent", dependencies=[auth.either])
    def consent(device_id: str, body: ConsentIn) -> dict:
        engine.set_consent(device_id, body.location_offers)
        return {"device_id": device_id, "location_offers": body.location_offers}

    @r.delete("/v1/devices/{device_id}", dependencies=[auth.admin])
    def forget(device_id: str) -> dict:
        engine.forget_device(device_id)
        return {"deleted": device_id}

    return r
