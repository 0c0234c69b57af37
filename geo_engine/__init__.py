"""geo-engine: a geolocation and proximity engine for location-triggered store offers.

Exact WGS84 geodesics, a k-d tree over stores and a grid of boxes over geofences, campaigns
decided per ping and per customer file, on a SQLite database. ``docs/architecture.md`` shows
how the modules fit.

It only re-exports the public names (``__all__``); it defines nothing.
"""

from .config import SETTINGS, Setting, Settings
from .db import Database
from .engine import Engine
from .errors import (
    Conflict,
    GeoEngineError,
    InvalidCampaign,
    InvalidCoordinate,
    InvalidGeometry,
    InvalidInput,
    NotFound,
    Problem,
    StorageError,
    ValidationFailed,
)
from .geodesy import check_lat_lon, distance_m, distances_m
from .io.places import Dataset, load_files, parse_csv, parse_geojson
from .model import Confidence, FenceHit, Geofence, Location, Ping, PingAnswer, Store, StoreHit
from .polygons import boundary_distance_m
from .scoring import score_frame
from .spatial.fences import FenceIndex
from .spatial.stores import StoreIndex

__version__ = "0.1.0"

__all__ = [
    "SETTINGS",
    "Confidence",
    "Conflict",
    "Database",
    "Dataset",
    "Engine",
    "FenceHit",
    "FenceIndex",
    "GeoEngineError",
    "Geofence",
    "InvalidCampaign",
    "InvalidCoordinate",
    "InvalidGeometry",
    "InvalidInput",
    "Location",
    "NotFound",
    "Ping",
    "PingAnswer",
    "Problem",
    "Setting",
    "Settings",
    "StorageError",
    "Store",
    "StoreHit",
    "StoreIndex",
    "ValidationFailed",
    "__version__",
    "boundary_distance_m",
    "check_lat_lon",
    "distance_m",
    "distances_m",
    "load_files",
    "parse_csv",
    "parse_geojson",
    "score_frame",
]
