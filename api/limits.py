"""Limits a phone or a guesser cannot talk its way past (SPEC 5): body sizes, rates, text.

* :class:`Guard`, a plain ASGI layer in front of everything but the access log: a request from
  an address that has failed too many key checks is a 429; a body over its route's limit is a
  413, from its ``Content-Length`` or while it streams, before it is parsed and before its key is
  checked; a JSON body that is not UTF-8 is a 422 naming the field that holds the bad bytes.
* :class:`RateLimits`: pings per device and per publishable key, failed key checks and device
  registrations per client address, counted by the ``limits`` library in this process's memory
  (each worker of ``serve --workers N`` counts its own). The admin key is never rate-limited.

A limit's answer says which limit and when to try again (``Retry-After``). Everything here reads
its numbers from :class:`~geo_engine.config.Settings`; 0 turns a rate limit off.
"""

from __future__ import annotations

import json
import math
import time

import orjson
from fastapi import HTTPException
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

from geo_engine import Settings
from geo_engine.text import bad_text

from .asgi import TooLarge, read_body, replaying, send_json

__all__ = ["Guard", "RateLimits", "TooMany"]

IMPORT_PATH = "/v1/geofences/import"


class TooMany(Exception):
    """A rate limit said no: ``detail`` for the answer, ``retry_after`` whole seconds."""

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after

    def http(self) -> HTTPException:
        return HTTPException(429, self.detail, headers={"Retry-After": str(self.retry_after)})


class RateLimits:
    """The rate limits of one server process."""

    def __init__(self, settings: Settings):
        storage = MemoryStorage()
        self._exact = MovingWindowRateLimiter(storage)  # small windows, counted hit by hit
        self._counted = SlidingWindowCounterRateLimiter(storage)  # per address, by counters
        self._per_second = FixedWindowRateLimiter(storage)  # the key's: one counter a second
        self._failing: set[str] = set()  # addresses with a failed key check (blocked() looks)
        rate, burst = settings.device_pings_per_s, max(1, settings.device_ping_burst)
        # a burst of `burst`, then `rate` a second: at most `burst` in any burst / rate seconds
        self._device = RateLimitItemPerSecond(burst, max(1, round(burst / rate))) if rate > 0 else None
        self._key = _per_second(settings.key_pings_per_s)
        self._failed = _per_minute(settings.failed_key_checks_per_min)
        self._registrations = _per_minute(settings.registrations_per_min)

    def ping(self, kind: str, key: str, device_id: str) -> None:
        """Count a ping: raise :class:`TooMany` past its device's or its publishable key's
        limit (the admin key has none)."""
        if kind == "admin":
            return
        if self._device is not None and not self._exact.hit(self._device, "device", device_id):
            raise TooMany(f"too many pings from device {device_id!r}: at most "
                          f"{self._device.amount} in {self._device.multiples} s",
                          self._retry(self._exact, self._device, "device", device_id))
        if self._key is not None and not self._per_second.hit(self._key, "key", key):
            raise TooMany(f"too many pings with this publishable key: at most {self._key.amount} "
                          "a second", self._retry(self._per_second, self._key, "key", key))

    def blocked(self, address: str) -> TooMany | None:
        """Whether an address has failed too many key checks of late (it gets 429s, whatever
        key it sends, until the window passes)."""
        if self._failed is None or address not in self._failing or \
                self._counted.test(self._failed, "failed", address):
            return None
        return TooMany(f"too many requests with a wrong or missing key from {address}: at most "
                       f"{self._failed.amount} a minute",
                       self._retry(self._counted, self._failed, "failed", address))

    def failed(self, address: str) -> bool:
        """Count a failed key check; return whether the address is over its limit now."""
        if self._failed is None:
            return False
        if len(self._failing) > 100_000:  # bounded: the counters expire, the set is only a hint
            self._failing.clear()
        self._failing.add(address)
        return not self._counted.hit(self._failed, "failed", address)

    def register(self, address: str) -> None:
        """Count a device registration from an address: raise :class:`TooMany` past its limit."""
        if self._registrations is not None and \
                not self._counted.hit(self._registrations, "register", address):
            raise TooMany(f"too many device registrations from {address}: at most "
                          f"{self._registrations.amount} a minute",
                          self._retry(self._counted, self._registrations, "register", address))

    @staticmethod
    def _retry(limiter, item: RateLimitItem, *ids: str) -> int:
        reset = limiter.get_window_stats(item, *ids).reset_time
        return max(1, math.ceil(reset - time.time()))


def _per_second(n: float) -> RateLimitItem | None:
    return RateLimitItemPerSecond(max(1, round(n))) if n > 0 else None


def _per_minute(n: float) -> RateLimitItem | None:
    return RateLimitItemPerMinute(max(1, round(n))) if n > 0 else None


def client_address(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class Guard:
    """ASGI middleware: address blocks (429), body limits (413) and UTF-8 (422), before any
    body is parsed or key checked."""

    def __init__(self, app, settings: Settings, rates: RateLimits):
        self.app, self.rates = app, rates
        self.body_limit, self.import_limit = settings.max_body_bytes, settings.max_import_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_many = self.rates.blocked(client_address(scope))
        if too_many is not None:
            await _answer(send, 429, {"detail": too_many.detail},
                          [(b"retry-after", str(too_many.retry_after).encode())])
            return
        limit = self.import_limit if scope["path"] == IMPORT_PATH else self.body_limit
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send, scope["path"], limit)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, limit)
        except TooLarge:
            await _too_large(send, scope["path"], limit)
            return
        if body is None:  # the client went away
            return
        where = _not_utf8(body) if b"json" in headers.get(b"content-type", b"") else None
        if where is not None:
            message = f"{where} is not valid UTF-8: send text as UTF-8"
            await _answer(send, 422, {"detail": message,
                                      "problems": [{"field": where, "message": message}]})
            return
        await self.app(scope, replaying(body, receive), send)


def _not_utf8(body: bytes) -> str | None:
    """Where a JSON body's bytes are not UTF-8: the field holding them, ``body`` when the JSON
    cannot say; None when they all are."""
    try:
        body.decode("utf-8")
        return None
    except UnicodeDecodeError:
        pass
    try:  # the bad bytes become lone surrogates, which the text check finds by field
        found = bad_text(json.loads(body.decode("utf-8", "surrogateescape")))
    except ValueError:
        return "body"
    return found or "body"


async def _too_large(send, path: str, limit: int) -> None:
    await _answer(send, 413, {"detail": f"the body is larger than {path} takes ({limit:,} bytes; "
                                        "a setting: GEO_ENGINE_MAX_BODY_BYTES, or "
                                        "GEO_ENGINE_MAX_IMPORT_BYTES for imports)"})



async def _answer(send, status: int, body: dict, headers: list | None = None) -> None:
    await send_json(send, status, orjson.dumps(body), headers)
