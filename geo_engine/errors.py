"""Exceptions raised by geo-engine.

Every error the library raises on purpose is a :class:`GeoEngineError`; the edges (the CLI and
the HTTP API) catch that one class and turn it into one sentence or one JSON body. Anything
else escaping the library is a bug.

::

    GeoEngineError
    ├── InvalidInput                 bad data from a user: fix the input and retry
    │   ├── InvalidCoordinate        a lat/lon that is not a WGS84 position
    │   ├── InvalidGeometry          a geometry that cannot be a store or geofence
    │   ├── InvalidCampaign          a campaign object that breaks the rules (SPEC 3.2)
    │   └── ValidationFailed         a whole file checked: carries every Problem found
    ├── NotFound                     an id that does not exist
    ├── Conflict                     a request that contradicts what is stored
    └── StorageError                 the database cannot be opened, read or written
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Conflict",
    "GeoEngineError",
    "InvalidCampaign",
    "InvalidCoordinate",
    "InvalidGeometry",
    "InvalidInput",
    "NotFound",
    "Problem",
    "StorageError",
    "ValidationFailed",
    "WriteContention",
]


class GeoEngineError(Exception):
    """Base class of every error geo-engine raises on purpose."""


class InvalidInput(GeoEngineError):
    """The input is wrong; the message says what, where and how to fix it."""


class InvalidCoordinate(InvalidInput):
    """A latitude/longitude that is not a finite WGS84 position."""


class InvalidGeometry(InvalidInput):
    """A geometry that cannot serve as a store or a geofence."""


class InvalidCampaign(InvalidInput):
    """A campaign object that breaks the rules of SPEC section 3.2."""


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file.

    ``index`` is the feature's position in the FeatureCollection (0-based, ``unit`` "feature"),
    or for a CSV the 1-based line number of the row (``unit`` "line"); ``id`` is the feature's
    id when it has one.
    """

    source: str
    index: int | None
    id: str | None
    message: str
    unit: str = "feature"

    def __str__(self) -> str:
        where = [self.source] if self.source else []
        if self.index is not None:
            where.append(f"{self.unit} {self.index}")
        if self.id is not None:
            where.append(f"id {self.id!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def as_dict(self) -> dict:
        return {"index": self.index, "id": self.id, "message": self.message}


class ValidationFailed(InvalidInput):
    """An input was checked in full and has problems; ``problems`` lists every one."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        n = len(self.problems)
        first = str(self.problems[0]) if self.problems else "no details"
        more = f" (and {n - 1} more problem{'s' if n > 2 else ''})" if n > 1 else ""
        super().__init__(f"{first}{more}")


class NotFound(GeoEngineError):
    """The named store, geofence, campaign or device does not exist."""


class Conflict(GeoEngineError):
    """The request contradicts what is stored (for example a geofence whose store is gone)."""


class StorageError(GeoEngineError):
    """The database could not be opened, read or written."""


class WriteContention(StorageError):
    """The database could not take a write now (another instance held a row it needed, or the
    two waited on each other); nothing of it was kept, and the same work run again can
    succeed. The engine runs it again a few times before saying so (503)."""
