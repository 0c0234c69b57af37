"""``POST /v1/pings`` answered in front of FastAPI's routing: the one hot route's short path.

A fleet's pings are nearly all of a server's requests, and under load most of a ping's time went
to the framework around it (routing, dependency resolution, the request and response objects),
not to the engine (``benchmarks/RESULTS.md``, bench_load). This plain ASGI layer answers a ping
that is plainly right (a key the cache knows, a JSON body that :class:`~api.schemas.PingIn`
accepts, the device's token when one is needed) itself: the body is validated from its bytes
by pydantic-core, the engine's answer goes out as the bytes it made.

Anything else (no key or a wrong one, another content type, a body the schema refuses, a missing
or wrong device token) goes on to
the FastAPI route with the body it sent, so the checks, the error bodies and the OpenAPI document
are the route's, defined once (:mod:`api.routes.pings`). Both paths give the same answers; the
API tests run through this one, and ``tests/test_api.py`` compares the two.
"""

from __future__ import annotations

import orjson
from pydantic import ValidationError

from geo_engine import Engine
from geo_engine.apikeys import KeyCache
from geo_engine.errors import GeoEngineError
from geo_engine.model import Ping

from .asgi import read_body, replaying, send_json
from .errors import error_answer
from .limits import RateLimits, TooMany
from .metrics import Metrics
from .schemas import PingIn

__all__ = ["PingPath"]

_JSON = b"application/json"


class PingPath:
    """ASGI middleware: a plainly right ``POST /v1/pings`` answered here, the rest passed on."""

    def __init__(self, app, engine: Engine, keys: KeyCache, metrics: Metrics, route=None,
                 rates: RateLimits | None = None):
        self.app, self.engine, self.keys, self.metrics = app, engine, keys, metrics
        self.rates = rates
        self.route = route  # the FastAPI route, named in the access log and metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/v1/pings" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        admitted = self._admit(scope["headers"], body)
        if admitted is None:  # the route answers it, with its own checks and error bodies
            await self.app(scope, replaying(body, receive), send)
            return
        kind, ping = admitted
        scope["route"] = self.route
        if self.rates is not None:
            try:
                self.rates.ping(kind, kind, ping.device_id)
            except TooMany as exc:
                await send_json(send, 429, orjson.dumps({"detail": exc.detail}),
                            [(b"retry-after", str(exc.retry_after).encode())])
                return
        try:
            answer = await self.engine.handle_ping_async(ping)
        except GeoEngineError as exc:
            status, error = error_answer(exc)
            await send_json(send, status, orjson.dumps(error))
            return
        self.metrics.count_ping(answer)
        await send_json(send, 200, answer.body)

    def _admit(self, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[str, Ping] | None:
        """The key's kind and the ping, when the request is plainly right; else None."""
        authorization = content_type = token = b""
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"x-device-token":
                token = value
        if not content_type.startswith(_JSON) or content_type[len(_JSON):len(_JSON) + 1] not in \
                (b"", b";", b" "):
            return None
        scheme, _, key = authorization.decode("latin-1").partition(" ")
        kind = self.keys.kind(key.strip()) if scheme.lower() == "bearer" else None
        if kind is None:
            return None
        try:
            ping = PingIn.model_validate_json(body).to_ping()
        except (ValidationError, ValueError, GeoEngineError):
            return None
        if kind != "admin" and self.engine.tokens_required and \
                not self.engine.tokens.matches(ping.device_id, token.decode("latin-1")):
            return None
        return kind, ping

