"""One table from library errors to HTTP statuses, and the one error body shape.

Library errors become statuses through :data:`ERROR_STATUS` (as TiTiler's ``errors.py``): the
first class that matches wins. Every error answer is ``{"detail": "...", "problems": [...]}``
(``problems`` when there is more than one thing to say). A 5xx is always a bug.

It knows exception classes and statuses, never why a library error was raised.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from geo_engine.errors import (
    Conflict,
    GeoEngineError,
    InvalidInput,
    NotFound,
    StorageError,
    ValidationFailed,
)

__all__ = ["ERROR_STATUS", "add_error_handlers", "error_answer"]

#: Library exception -> HTTP status; the first matching class (in order) wins.
ERROR_STATUS: list[tuple[type[GeoEngineError], int]] = [
    (ValidationFailed, 422),
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (StorageError, 503),
    (GeoEngineError, 500),
]


def error_answer(exc: GeoEngineError) -> tuple[int, dict]:
    """A library error's status and body."""
    status = next(code for cls, code in ERROR_STATUS if isinstance(exc, cls))
    body: dict = {"detail": str(exc)}
    if isinstance(exc, ValidationFailed):
        body["problems"] = [p.as_dict() for p in exc.problems]
    if getattr(exc, "problems", None) and not isinstance(exc, ValidationFailed):
        body["problems"] = exc.problems
    return status, body


def add_error_handlers(app: FastAPI) -> None:
    """Answer library errors and request validation errors with the one error shape."""

    @app.exception_handler(GeoEngineError)
    async def library_error(request: Request, exc: GeoEngineError):
        status, body = error_answer(exc)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        problems = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
                    for e in exc.errors()]
        for p in problems:
            if not p["field"]:  # the body as a whole: usually JSON sent without its content type
                p["field"] = "body"
                p["message"] = ("the body must be a JSON object, sent with Content-Type: "
                                "application/json (curl: --json)")
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSONResponse({"detail": detail, "problems": problems}, status_code=422)
