"""The Engine: a database, the indexes built from it, and the queries the CLI and API share.

``geo-engine nearest --json`` and ``GET /v1/stores/nearest`` both call :meth:`Engine.nearest`,
and ``locate`` both call :meth:`Engine.locate`, so the two surfaces cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .config import Settings
from .errors import InvalidInput
from .fences import Dataset, load_files
from .geometry import check_lat_lon
from .index import FenceIndex, StoreIndex
from .model import Confidence
from .store import Database

__all__ = ["Engine", "FenceHit", "Location", "StoreHit"]


@dataclass(frozen=True)
class StoreHit:
    """A store found near a point, with its geodesic distance in metres."""

    store_id: str
    name: str
    lat: float
    lon: float
    distance_m: float

    def as_dict(self) -> dict:
        return {"store_id": self.store_id, "name": self.name, "lat": self.lat, "lon": self.lon,
                "distance_m": round(self.distance_m, 3)}


@dataclass(frozen=True)
class FenceHit:
    """A geofence that a fix is in or touches, and how surely."""

    geofence_id: str
    store_id: str
    confidence: Confidence

    def as_dict(self) -> dict:
        return {"geofence_id": self.geofence_id, "store_id": self.store_id,
                "confidence": str(self.confidence)}


@dataclass(frozen=True)
class Location:
    """What a ping at a point would see: the geofences it is in and the nearest store."""

    geofences: list[FenceHit]
    nearest_store: StoreHit | None

    def as_dict(self) -> dict:
        near = self.nearest_store
        return {"geofences": [g.as_dict() for g in self.geofences],
                "nearest_store": None if near is None else
                {"store_id": near.store_id, "distance_m": round(near.distance_m, 3)}}


class Engine:
    """Stores and geofences in a database, with indexes that follow every import.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    database : Database, optional
        Defaults to the file ``settings.db``.
    """

    def __init__(self, settings: Settings | None = None, database: Database | None = None):
        self.settings = settings or Settings.from_env()
        self.db = database or Database(self.settings.db)
        self.reload()

    def reload(self) -> None:
        """Rebuild the indexes from the database."""
        self.stores = self.db.store_arrays()
        self.store_index = StoreIndex(self.stores.lats, self.stores.lons)
        self.fence_index = FenceIndex(self.db.geofences())

    # --- files -------------------------------------------------------------------------------

    def validate(self, paths: Sequence[str | Path]) -> Dataset:
        """Return what the files hold, or raise ValidationFailed listing every problem.

        Stores already in the database count as known to the files' geofences.
        """
        return load_files(paths, known_store_ids=self.db.store_ids())

    def import_files(self, paths: Sequence[str | Path]) -> tuple[dict[str, int], Dataset]:
        """Validate the files, then load them in one transaction (all or nothing); reindex."""
        data = self.validate(paths)
        counts = self.db.import_dataset(data)
        self.reload()
        return counts, data

    # --- queries -----------------------------------------------------------------------------

    def _hit(self, i: int, distance: float) -> StoreHit:
        s = self.stores
        return StoreHit(s.ids[i], s.names[i], float(s.lats[i]), float(s.lons[i]), float(distance))

    def nearest(self, lat: float, lon: float, k: int | None = None,
                radius_m: float | None = None) -> list[StoreHit]:
        """Return the ``k`` nearest stores, or with ``radius_m`` every store within it.

        Nearest first, ties by store id; distances are WGS84 geodesic metres.
        """
        lat, lon = check_lat_lon(lat, lon)
        if radius_m is not None:
            if not radius_m >= 0:
                raise InvalidInput(f"radius_m must be a number of metres >= 0, got {radius_m}")
            idx, dist = self.store_index.within(lat, lon, radius_m)
        else:
            k = self.settings.default_k if k is None else k
            if k < 1:
                raise InvalidInput(f"k must be at least 1, got {k}")
            idx, dist = self.store_index.nearest(lat, lon, k)
        return [self._hit(i, d) for i, d in zip(idx.tolist(), dist.tolist(), strict=True)]

    def locate(self, lat: float, lon: float, accuracy_m: float = 0.0,
               at: datetime | None = None) -> Location:
        """Return the geofences a fix is in or touches (with confidence) and the nearest store.

        Touches no device state. Geofences are ordered by confidence, highest first, then id.
        """
        lat, lon = check_lat_lon(lat, lon)
        if not accuracy_m >= 0:
            raise InvalidInput(f"accuracy_m must be a number of metres >= 0, got {accuracy_m}")
        fences = self.fence_index.fences
        hits = [FenceHit(fences[i].id, fences[i].store_id, conf)
                for i, conf in self.fence_index.containing(lat, lon, accuracy_m, at)]
        hits.sort(key=lambda h: -h.confidence.rank)
        idx, dist = self.store_index.nearest(lat, lon, 1)
        nearest = self._hit(int(idx[0]), float(dist[0])) if len(idx) else None
        return Location(hits, nearest)
