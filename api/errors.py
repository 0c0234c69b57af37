"""One table from library errors to HTTP statuses, and the one error body shape.

Library errors become statuses through :data:`ERROR_STATUS` (as TiTiler's ``errors.py``): the
first class that matches wins. Every error answer is ``{"detail": "...", "problems": [...]}``
(``problems`` when there is more than one thing to say). A 5xx is always a bug.

It knows exception classes and statuses, never why a library error was raised.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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

    allowed: list[tuple[re.Pattern, set[str]]] = []

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """Starlette's HTTP errors in the one shape; a 405's ``Allow`` lists every method the
        path has (Starlette names only the first route's)."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            if not allowed:
                for path, ops in request.app.openapi()["paths"].items():
                    pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")
                    allowed.append((pattern, {m.upper() for m in ops}))
            found = [(p, m) for p, m in allowed if p.match(request.url.path)]
            exact = [m for p, m in found if "[^/]+" not in p.pattern]  # a path with no {param}
            methods = set().union(*(exact or [m for _, m in found]))
            if methods:
                headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

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
