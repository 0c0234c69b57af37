"""WGS84 geodesy: coordinate checks, geodesic distances, and the sphere/ellipsoid bounds.

Every distance here is an ellipsoidal geodesic in metres, as ``pyproj.Geod(ellps="WGS84").inv``
returns it. Two facts let the indexes stay exact while working on a unit sphere:

* A position (lat, lon) is mapped to the unit sphere with its *geodetic* latitude. Chord
  length on that sphere orders points exactly as the sphere's central angle ``theta`` does.
* Along any curve, the ellipsoid's line element lies between ``R_LO`` and ``R_HI`` times the
  sphere's (the radii of curvature range from ``a(1 - e^2)`` at the equator to ``a^2 / b`` at
  the poles), so ``R_LO * theta <= geodesic <= R_HI * theta`` for every pair of points. An
  index can therefore prune with ``theta <= d / R_LO`` and never miss a point within ``d``.
* A far tighter pair of bounds holds for the straight line through the earth between two points
  of the ellipsoid (their *ECEF chord* ``C``, in metres; :func:`ecef`). No path is shorter than a
  straight line, so ``C <= s``. And the plane through both points and the first one's normal cuts
  the ellipsoid in a curve joining them whose curvature is at most ``kappa`` (the largest
  curvature of the ellipsoid, ``1 / R_LO``, over the cosine of the small angle the plane makes
  with the surface there); by Schur's comparison theorem that curve, and so the geodesic, is no
  longer than the arc of radius ``1 / kappa`` on the same chord:
  ``s <= (2 / kappa) asin(C kappa / 2)``, which is ``C + C^3 kappa^2 / 24``: 0.13 mm over ``C``
  at 5 km, 13 cm at 50 km. Counting within ``d`` then needs a geodesic only for the points whose
  chord lies in that hair-thin shell (:func:`chord_inside`, :func:`chord_reach`), and a ranking by
  chord is overturned only by near-ties.

This module knows points and distances only: no polygons (:mod:`geo_engine.polygons`), no
stores or geofences.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pyproj import Geod

from .errors import InvalidCoordinate

__all__ = [
    "GEOD",
    "R_HI",
    "R_LO",
    "check_lat_lon",
    "distance_m",
    "distances_m",
    "chord_inside",
    "chord_reach",
    "ecef",
    "ecef_one",
    "radii_of_curvature",
    "lonlat_boxes",
    "unit_vector",
    "unit_vectors",
]

GEOD = Geod(ellps="WGS84")
_A = GEOD.a
_E2 = GEOD.es
#: Smallest radius of curvature of the WGS84 ellipsoid (meridional, at the equator), metres.
R_LO = _A * (1.0 - _E2)
#: Largest radius of curvature of the WGS84 ellipsoid (at the poles), metres.
R_HI = _A / math.sqrt(1.0 - _E2)
# Relative slack for float rounding when a bound decides what an index may skip.
_SLACK = 1e-9
# ECEF chord bounds hold up to this chord (metres). Along the plane curve of a chord this long
# the surface normal turns by at most psi <= 1.02e6 / R_LO = 0.161 rad, so the curve's curvature
# is at most 1 / (R_LO * sqrt(1 - psi^2)) (Meusnier): _KAPPA below, with room to spare.
ECEF_CHORD_MAX = 1_000_000.0
_KAPPA = 1.014 / R_LO


def check_lat_lon(lat: float, lon: float, where: str = "") -> tuple[float, float]:
    """Return ``(lat, lon)`` as floats, or raise :class:`InvalidCoordinate` naming the problem.

    Latitude must lie in [-90, 90] and longitude in [-180, 180]; NaN, infinities and
    non-numbers are refused.
    """
    prefix = f"{where}: " if where else ""
    try:
        lat_f, lon_f = float(lat), float(lon)
    except (TypeError, ValueError):
        raise InvalidCoordinate(f"{prefix}lat and lon must be numbers, got {lat!r}, {lon!r}") from None
    if not (math.isfinite(lat_f) and math.isfinite(lon_f)):
        raise InvalidCoordinate(f"{prefix}lat and lon must be finite numbers, got {lat!r}, {lon!r}")
    if not -90.0 <= lat_f <= 90.0:
        raise InvalidCoordinate(f"{prefix}lat {lat_f} is outside [-90, 90]")
    if not -180.0 <= lon_f <= 180.0:
        raise InvalidCoordinate(f"{prefix}lon {lon_f} is outside [-180, 180]")
    return lat_f, lon_f


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the WGS84 geodesic distance in metres between two points (scalar fast path)."""
    return GEOD.inv(lon1, lat1, lon2, lat2)[2]


_PARALLEL_FROM = 65_536  # below this, one call: threads would cost more than they save
_pool: ThreadPoolExecutor | None = None


def _inv_chunk(lo1, la1, lo2, la2) -> np.ndarray:
    return np.asarray(GEOD.inv(lo1, la1, lo2, la2)[2], dtype=float)


def distances_m(lats1, lons1, lats2, lons2) -> np.ndarray:
    """Return WGS84 geodesic distances in metres, broadcasting the four arrays.

    One C pass over the arrays; a large one is split across the machine's cores (pyproj
    releases the GIL while it computes; ``benchmarks/RESULTS.md`` has the gain).
    """
    global _pool
    b = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (lons1, lats1, lons2, lats2)))
    shape = b[0].shape
    lo1, la1, lo2, la2 = (np.ascontiguousarray(v).ravel() for v in b)
    n = lo1.size
    if n == 0:
        return np.zeros(shape)
    workers = os.cpu_count() or 1
    if n < _PARALLEL_FROM or workers == 1:
        return _inv_chunk(lo1, la1, lo2, la2).reshape(shape)
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geodesic")
    cuts = np.linspace(0, n, workers + 1).astype(int)
    parts = _pool.map(lambda ab: _inv_chunk(lo1[ab[0]:ab[1]], la1[ab[0]:ab[1]], lo2[ab[0]:ab[1]],
                                            la2[ab[0]:ab[1]]), zip(cuts[:-1], cuts[1:], strict=True))
    return np.concatenate(list(parts)).reshape(shape)


def radii_of_curvature(phi) -> tuple[np.ndarray, np.ndarray]:
    """The meridional and prime-vertical radii of curvature ``(M, N)`` in metres at geodetic
    latitude ``phi`` (radians); both grow from the equator to the poles, and ``M <= N``."""
    s = np.sin(np.asarray(phi, dtype=float))
    w2 = 1.0 - _E2 * s * s
    return _A * (1.0 - _E2) / (w2 * np.sqrt(w2)), _A / np.sqrt(w2)


def ecef(lats, lons) -> np.ndarray:
    """Return an ``(n, 3)`` array of Earth-centred, Earth-fixed metres for WGS84 points on the
    ellipsoid (height 0); lats and lons in degrees."""
    la = np.radians(np.asarray(lats, dtype=float))
    lo = np.radians(np.asarray(lons, dtype=float))
    sin_la = np.sin(la)
    n = _A / np.sqrt(1.0 - _E2 * sin_la * sin_la)
    p = n * np.cos(la)
    return np.column_stack([p * np.cos(lo), p * np.sin(lo), n * (1.0 - _E2) * sin_la])


def ecef_one(lat: float, lon: float) -> tuple[float, float, float]:
    """:func:`ecef` of one point, in plain math (numpy on one point costs more than the work)."""
    la, lo = math.radians(lat), math.radians(lon)
    sin_la = math.sin(la)
    n = _A / math.sqrt(1.0 - _E2 * sin_la * sin_la)
    p = n * math.cos(la)
    return (p * math.cos(lo), p * math.sin(lo), n * (1.0 - _E2) * sin_la)


def chord_reach(distance_m: float) -> float:
    """Every point within ``distance_m`` geodesic metres lies within this ECEF chord (metres):
    ``C <= s``, widened by a hair for rounding."""
    return float(distance_m) * (1 + 1e-12) + 1e-6


def chord_inside(distance_m):
    """Every point within this ECEF chord (metres) lies within ``distance_m`` geodesic metres
    (the arc bound of the module docstring, narrowed by a hair for rounding); 0 beyond
    :data:`ECEF_CHORD_MAX`, where the bound is not claimed. A number or an array."""
    d = np.asarray(distance_m, dtype=float)
    with np.errstate(invalid="ignore"):
        c = 2.0 / _KAPPA * np.sin(d * _KAPPA / 2.0) * (1 - 1e-12) - 1e-6
    c = np.where((d >= 0.0) & (d <= ECEF_CHORD_MAX), np.maximum(c, 0.0), 0.0)
    return float(c) if c.ndim == 0 else c


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    """Return the point on the unit sphere for a geodetic (lat, lon) in degrees."""
    la, lo = math.radians(lat), math.radians(lon)
    c = math.cos(la)
    return (c * math.cos(lo), c * math.sin(lo), math.sin(la))


def unit_vectors(lats, lons) -> np.ndarray:
    """Return an ``(n, 3)`` array of unit-sphere points for geodetic lats/lons in degrees."""
    la = np.radians(np.asarray(lats, dtype=float))
    lo = np.radians(np.asarray(lons, dtype=float))
    c = np.cos(la)
    return np.column_stack([c * np.cos(lo), c * np.sin(lo), np.sin(la)])


def lonlat_boxes(lat: float, lon: float, radius_m: float) -> list[tuple[float, float, float, float]]:
    """Return lon/lat boxes ``(min_lon, min_lat, max_lon, max_lat)`` covering a geodesic disk.

    The cover is conservative: every point within ``radius_m`` of (lat, lon) lies in one of the
    boxes. A disk crossing the antimeridian gives two boxes; one reaching a pole covers every
    longitude.
    """
    dlat = math.degrees(radius_m / R_LO) * (1 + _SLACK) + 1e-9
    lat_lo, lat_hi = lat - dlat, lat + dlat
    if lat_lo <= -90.0 or lat_hi >= 90.0:
        return [(-180.0, max(lat_lo, -90.0), 180.0, min(lat_hi, 90.0))]
    far = math.radians(max(abs(lat_lo), abs(lat_hi)))
    # A parallel's radius is N cos(lat) >= a cos(lat); the farthest latitude in the band is the
    # worst case.
    dlon = math.degrees(radius_m / (_A * math.cos(far))) * (1 + _SLACK) + 1e-9
    if dlon >= 180.0:
        return [(-180.0, lat_lo, 180.0, lat_hi)]
    lon_lo, lon_hi = lon - dlon, lon + dlon
    if lon_lo < -180.0:
        return [(-180.0, lat_lo, lon_hi, lat_hi), (lon_lo + 360.0, lat_lo, 180.0, lat_hi)]
    if lon_hi > 180.0:
        return [(lon_lo, lat_lo, 180.0, lat_hi), (-180.0, lat_lo, lon_hi - 360.0, lat_hi)]
    return [(lon_lo, lat_lo, lon_hi, lat_hi)]
