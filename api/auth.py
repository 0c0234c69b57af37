"""The one auth dependency: ``Authorization: Bearer KEY``, admin or publishable (SPEC 5).

An *admin* key may do everything; a *publishable* key (safe inside a mobile app) may only post
pings and read nearest, within, nearby and locate.

The active keys' hashes are held in memory (:class:`geo_engine.apikeys.KeyCache`): checking a
request's key reads no database. It knows keys and kinds only: which route needs which is the
route's ``dependencies``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Header, HTTPException

from geo_engine.apikeys import KeyCache

__all__ = ["Auth"]


class Auth:
    """The dependencies that admit a request by its key: :attr:`admin` and :attr:`either`."""

    def __init__(self, keys: KeyCache):
        self._keys = keys
        self.admin = self._need("admin")
        self.either = self._need("either")

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
