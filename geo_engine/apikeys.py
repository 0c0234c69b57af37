"""API keys: an *admin* key may do everything; a *publishable* key (safe inside a mobile app)
may only post pings and read nearest/within/locate/nearby (SPEC section 5).

Keys are stored hashed (SHA-256: they are 192 random bits, so a slow hash adds nothing). On first
start both are created and returned once to be printed; ``GEO_ENGINE_ADMIN_KEY`` and
``GEO_ENGINE_PUBLISHABLE_KEY`` set them instead.

It makes and checks keys; storing them is :mod:`geo_engine.db.apikeys`, asking for them
:mod:`api.auth`. It never sees a request.
"""

from __future__ import annotations

import hashlib
import secrets

from .config import Settings
from .db.apikeys import ApiKeys

__all__ = ["KINDS", "ensure_keys", "key_kind", "rotate_key"]

KINDS = ("admin", "publishable")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new(kind: str) -> str:
    return f"ge_{'adm' if kind == 'admin' else 'pub'}_{secrets.token_urlsafe(24)}"


def ensure_keys(keys: ApiKeys, settings: Settings) -> dict[str, str]:
    """Make sure both keys exist; return the ones created now (kind -> key), to show once."""
    created = {}
    active = {kind for kind, _, _ in keys.active()}
    for kind, given in (("admin", settings.admin_key), ("publishable", settings.publishable_key)):
        if given:
            keys.replace(kind, _hash(given), given[:8])
        elif kind not in active:
            created[kind] = key = _new(kind)
            keys.replace(kind, _hash(key), key[:8])
    return created


def rotate_key(keys: ApiKeys, kind: str) -> str:
    """Replace the key of a kind with a new one; return it (the old one stops working)."""
    key = _new(kind)
    keys.replace(kind, _hash(key), key[:8])
    return key


def key_kind(keys: ApiKeys, presented: str) -> str | None:
    """The kind of an active key, or None."""
    return keys.kind_of(_hash(presented)) if presented else None
