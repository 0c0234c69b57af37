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
import threading
import time

from .config import Settings
from .db.apikeys import ApiKeys

__all__ = ["KINDS", "KeyCache", "ensure_keys", "key_kind", "rotate_key"]

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


class KeyCache:
    """The active keys' hashes in memory, so checking a request's key reads no database.

    The keys' change counter is looked at every ``check_s`` seconds and whenever a key is not
    found (one small query: a wrong key costs what it did before the cache): a key created or
    rotated by another process works at once, and a rotated-out one stops working within
    ``check_s``.
    """

    def __init__(self, keys: ApiKeys, check_s: float = 1.0):
        self._keys, self._check_s = keys, check_s
        self._lock = threading.Lock()
        self._generation = -1
        self._kinds: dict[str, str] = {}
        self._checked = -float("inf")
        self._refresh(time.monotonic())

    def _refresh(self, now: float) -> None:
        with self._lock:
            self._checked = now
            generation = self._keys.generation()
            if generation != self._generation:
                self._kinds = self._keys.active_hashes()
                self._generation = generation

    def kind(self, presented: str) -> str | None:
        """The kind of an active key, or None."""
        if not presented:
            return None
        now = time.monotonic()
        if now - self._checked >= self._check_s:
            self._refresh(now)
        h = _hash(presented)
        found = self._kinds.get(h)
        if found is None:
            self._refresh(now)
            found = self._kinds.get(h)
        return found
