"""``/v1/devices``: registering a device (its token), its consent to offers, forgetting it.

It holds no SQL, geometry or rules: the engine validates and stores.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request

from geo_engine import Engine
from geo_engine.model import DEVICE_ID_PATTERN

from ..auth import Auth
from ..schemas import ALWAYS, ConsentIn, DeviceIn, DeviceOut, errors, example

__all__ = ["router"]

DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["d-123"])]


def router(engine: Engine, auth: Auth) -> APIRouter:
    r = APIRouter(tags=["devices"], responses=errors(*ALWAYS, 401, 422))

    @r.post("/v1/devices", status_code=201, response_model=DeviceOut, responses={
        **errors(409), **example(DeviceOut.model_config["json_schema_extra"]["examples"][0], 201)})
    def register(request: Request, body: DeviceIn, kind: str = auth.either) -> dict:
        """Register a device: its token is in the answer, once (only its hash is kept). A
        device registered already is a 409, unless the admin key asks, which replaces its
        token. Registrations with the publishable key are rate-limited per client address."""
        if kind != "admin":
            auth.registering(request)
        token = engine.register_device(body.device_id, replace=kind == "admin")
        return {"device_id": body.device_id, "device_token": token}

    @r.put("/v1/devices/{device_id}/consent", responses=example(
        {"device_id": "d-123", "location_offers": False}))
    def consent(device_id: DeviceId, body: ConsentIn, kind: str = auth.either,
                x_device_token: Annotated[str | None, Header()] = None) -> dict:
        """Opting out needs only a key and the device id; opting back in, with the publishable
        key, needs the device's token when tokens are required."""
        if body.location_offers:
            auth.speaks_for(kind, device_id, x_device_token)
        engine.set_consent(device_id, body.location_offers)
        return {"device_id": device_id, "location_offers": body.location_offers}

    @r.delete("/v1/devices/{device_id}", dependencies=[auth.admin],
              responses={**errors(403, 404), **example({"deleted": "d-123"})})
    def forget(device_id: DeviceId) -> dict:
        engine.forget_device(device_id)
        return {"deleted": device_id}

    return r
