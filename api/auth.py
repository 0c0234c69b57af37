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

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from geo_engine.apikeys import KeyCache
from geo_engine.tokens import TokenCache

from .limits import RateLimits, TooMany, client_address

__all__ = ["DEVICE_TOKEN_NEEDED", "Auth"]

_BEARER = HTTPBearer(auto_error=False, description="an admin key, or the publishable key (pings, "
                     "devices, nearest, within, nearby, locate)")

DEVICE_TOKEN_NEEDED = ("this device's token is needed: X-Device-Token (POST /v1/devices registers a "
                       "device and gives it one; the admin key speaks for any device)")


class Auth:
    """The dependencies that admit a request by its key (:attr:`admin` and :attr:`either`), and
    the device check (:meth:`speaks_for`)."""

    def __init__(self, keys: KeyCache, tokens: TokenCache | None = None,
                 tokens_required: Callable[[], bool] = lambda: False,
                 rates: RateLimits | None = None):
        self._keys, self._tokens, self._tokens_required = keys, tokens, tokens_required
        self.rates = rates
        self.admin = self._need("admin")
        self.either = self._need("either")

    def ping(self, kind: str, device_id: str) -> None:
        """Count a ping against its device's and its key's rate limits (a 429 past them)."""
        if self.rates is not None:
            try:
                self.rates.ping(kind, kind, device_id)
            except TooMany as exc:
                raise exc.http() from None

    def registering(self, request: Request) -> None:
        """Count a device registration against its address's rate limit (a 429 past it)."""
        if self.rates is not None:
            try:
                self.rates.register(client_address(request.scope))
            except TooMany as exc:
                raise exc.http() from None

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
        async def check(request: Request, credentials: Annotated[
                HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None) -> str:
            found = keys.kind(credentials.credentials.strip()) if credentials else None
            if found is None:
                if self.rates is not None and self.rates.failed(client_address(request.scope)):
                    blocked = self.rates.blocked(client_address(request.scope))
                    if blocked is not None:
                        raise blocked.http()
                raise HTTPException(401, "a valid API key is needed: Authorization: Bearer KEY",
                                    headers={"WWW-Authenticate": "Bearer"})
            if kind == "admin" and found != "admin":
                raise HTTPException(403, "this needs the admin key; a publishable key may only "
                                         "post pings and read nearest, within, nearby and locate")
            return found
        return Depends(check)
