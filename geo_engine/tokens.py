"""Device tokens (SPEC 6.1): who may speak for a phone when all it takes is the publishable key.

The publishable key ships inside the app, so anyone can read it. A device is registered once
and gets a token, a random secret only its app holds; its pings and consent changes then carry
it, and without the right one a publishable key cannot mute the phone, read its offers by
replaying its ``ping_id``, or opt it back in. Opting out never needs a token; the admin key, used
server to server, speaks for any device.

Tokens are stored hashed (SHA-256: 192 random bits, so a slow hash adds nothing). A server keeps
the hashes it has looked up in memory (:class:`TokenCache`), so a ping's check reads the database
once per device; a token replaced or a device forgotten through any process is noticed within
``check_s``.

It makes and checks tokens; storing them is :mod:`geo_engine.db.tokens`, asking for them
:mod:`api.auth`. It never sees a request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from .db.tokens import DeviceTokens

__all__ = ["CACHE_TOKENS", "TokenCache", "new_token", "token_hash"]

CACHE_TOKENS = 500_000  # devices' token hashes kept in memory


def new_token() -> str:
    """A new device token."""
    return f"dt_{secrets.token_urlsafe(24)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """Checks a device's token against the stored hash, kept in memory once read.

    A positive lookup is kept; a device with no token is asked for again each time (it may be
    registering through another process right now). The tokens' change counter is looked at
    every ``check_s`` seconds, and the cache emptied when it moved.
    """

    def __init__(self, tokens: DeviceTokens, check_s: float = 1.0):
        self._tokens, self._check_s = tokens, check_s
        self._lock = threading.Lock()
        self._hashes: dict[str, str] = {}
        self._generation = tokens.generation()
        self._checked = time.monotonic()

    def _hash_of(self, device_id: str) -> str | None:
        now = time.monotonic()
        if now - self._checked >= self._check_s:
            with self._lock:
                self._checked = now
                generation = self._tokens.generation()
                if generation != self._generation:
                    self._hashes, self._generation = {}, generation
        found = self._hashes.get(device_id)
        if found is None:
            found = self._tokens.hash_of(device_id)
            if found is not None:
                if len(self._hashes) >= CACHE_TOKENS:
                    self._hashes = {}
                self._hashes[device_id] = found
        return found

    def warm(self, limit: int = CACHE_TOKENS) -> int:
        """Keep the hashes of the ``limit`` devices registered last (a server's start), so their
        first pings skip the read; return how many are kept."""
        with self._lock:
            self._generation = self._tokens.generation()  # read first: a change meanwhile shows
            for device_id, hashed in self._tokens.latest(limit):
                self._hashes.setdefault(device_id, hashed)
            return len(self._hashes)

    def registered(self, device_id: str) -> bool:
        """Whether the device has a token."""
        return self._hash_of(device_id) is not None

    def matches(self, device_id: str, presented: str | None) -> bool:
        """Whether ``presented`` is the device's token (False when it has none)."""
        if not presented:
            return False
        stored = self._hash_of(device_id)
        return stored is not None and hmac.compare_digest(stored, token_hash(presented))

    def forget(self, device_id: str) -> None:
        """Drop this process's copy (the device was registered again, or forgotten, here)."""
        self._hashes.pop(device_id, None)
