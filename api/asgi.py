"""The few plain-ASGI moves the layers in front of the routing share: read a request's body
(within a limit), hand it on to the next layer as if unread, send a JSON answer.

It knows ASGI messages only: no route, key or engine.
"""

from __future__ import annotations

__all__ = ["TooLarge", "read_body", "replaying", "send_json"]

_JSON = b"application/json"


class TooLarge(Exception):
    """The body went past the limit it was read with."""


async def read_body(receive, limit: int | None = None) -> bytes | None:
    """The whole body, or None when the client went away; :class:`TooLarge` as soon as it
    passes ``limit`` bytes (the rest is never read)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive):
    """A ``receive`` that gives the body already read, then whatever the client sends next."""
    given = False

    async def replay():
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replay


async def send_json(send, status: int, body: bytes, headers: list | None = None) -> None:
    """Answer with these JSON bytes (and any more headers)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
