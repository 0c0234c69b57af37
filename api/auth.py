"""The one auth dependency: ``Authorization: Bearer KEY``, admin or publishable (SPEC 5).

An *admin* key may do everything; a *publishable* key (safe inside a mobile app) may only post
pings, register devices, change consent and read nearest, within, nearby and locate. When
device tokens are required, a publishable key speaks for a device only with its token
(``X-Device-Token``, SPEC 6.1).

The active keys' hashes are held in memory (:class:`geo_engine.apikeys.KeyCache`), and so are
the tokens' once read (:class:`geo_engine.tokens.TokenCache`). It knows keys, kinds and tokens
only: which route needs which is the route's ``dependencies``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, Header, HTTPException

from geo_engine.apikeys import KeyCache
from geo_engine.tokens import TokenCache

__all__ = ["DEVICE_TOKEN_NEEDED", "Auth"]

DEVICE_TOKEN_NEEDED = ("this device's token is needed: X-Device-Token (POST /v1/devices registers a "
                       "device and gives it one; the admin key speaks for any device)")


class Auth:
    """The dependencies that admit a request by its key (:attr:`admin` and :attr:`either`), and
    the device check (:meth:`speaks_for`)."""

    def __init__(self, keys: KeyCache, tokens: TokenCache | None = None,
                 tokens_required: Callable[[], bool] = lambda: False):
        self._keys, self._tokens, self._tokens_required = keys, tokens, tokens_required
        self.admin = self._need("admin")
        self.either = self._need("either")

    def speaks_for(self, kind: str, device_id: str, token: str | None) -> None:
        """Admit a request about one device (a ping, an opt-in): the admin key speaks for any;
        with the publishable key and tokens required, the device's own token must come with it
        (SPEC 6.1). Raises a 401 otherwise."""
        if kind == "admin" or not self._tokens_required():
            return
        if self._tokens is None or not self._tokens.matches(device_id, token):
            raise HTTPException(401, DEVICE_TOKEN_NEEDED)

    def _need(self, kind: Literal["admin", "either"]):
        keys = self._keys

        # async: it runs on the event loop, no thread hop; the keys are in memory (KeyCache)
        async def check(authorization: Annotated[str | None, Header()] = None) -> str:
            scheme, _, key = (authorization or "").partition(" ")
            found = keys.kind(key.strip()) if scheme.lower() == "bearer" else None
            if found is None:
                raise HTTPException(401, "a valid API key is needed: Authorization: Bearer KEY",
                                    headers={"WWW-Authenticate": "Bearer"})
            if kind == "admin" and found != "admin":
                raise HTTPException(403, "this needs the admin key; a publishable key may only "
                                         "post pings and read nearest, within, nearby and locate")
            return found
        return Depends(check)
