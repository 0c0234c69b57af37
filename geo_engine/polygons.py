"""Polygons in lon/lat: the antimeridian split, validity in words, and distance to a boundary.

Polygon edges are straight lines in lon/lat (RFC 7946 section 3.1.1), so containment is the
planar test shapely does on lon/lat; the distance to a boundary is the geodesic distance to the
nearest point of those lon/lat segments, found by a branch and bound that is exact to a stated
tolerance (see :func:`boundary_distance_m`). This module knows one polygon at a time: reading
files of them is :mod:`geo_engine.io.shapes`, indexing them :mod:`geo_engine.spatial.fences`.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from .errors import InvalidGeometry
from .geodesy import R_HI, distances_m

__all__ = ["boundary_distance_m", "explain_invalid", "polygon_parts"]


def _unwrap_lons(lons: np.ndarray) -> np.ndarray:
    """Return longitudes made continuous: an edge jumping more than 180 degrees crosses ±180."""
    d = np.diff(lons)
    shift = np.concatenate([[0.0], np.cumsum(np.where(d > 180.0, -360.0, 0.0)
                                             + np.where(d < -180.0, 360.0, 0.0))])
    return lons + shift


def _unwrap_ring(ring: np.ndarray) -> np.ndarray:
    out = np.array(ring[:, :2], dtype=float)
    out[:, 0] = _unwrap_lons(out[:, 0])
    if abs(out[-1, 0] - out[0, 0]) > 1e-9:
        raise InvalidGeometry(
            "ring winds around a pole (its longitudes do not come back to the start); "
            "a polygon may span at most 180 degrees of longitude: use a circle geofence "
            "(a Point with radius_m) around a pole")
    return out


_WORLD = shapely.box(-180.0, -90.0, 180.0, 90.0)
_EAST = shapely.box(180.0, -90.0, 540.0, 90.0)
_WEST = shapely.box(-540.0, -90.0, -180.0, 90.0)


def _polygonal_parts(geom) -> list[Polygon]:
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    # a GeometryCollection from an intersection: keep its areas, drop slivers of lines/points
    return [p for g in getattr(geom, "geoms", []) for p in _polygonal_parts(g)]


def polygon_parts(rings: list[np.ndarray]) -> tuple[list[Polygon], np.ndarray]:
    """Return one polygon's planar parts in [-180, 180] and its boundary edges.

    ``rings`` is the exterior then the holes, each an ``(n, 2+)`` array of closed lon/lat
    positions. A ring with an edge that jumps more than 180 degrees of longitude is taken as
    crossing the antimeridian: the polygon is unwrapped, then split at ±180 into parts that
    each lie in [-180, 180] (RFC 7946 section 3.1.9). The edges, an ``(m, 4)`` array of
    ``lon0, lat0, lon1, lat1``, are those of the unwrapped rings, so the cut along ±180 is not
    mistaken for a boundary.

    Raises :class:`InvalidGeometry` when the polygon spans more than 180 degrees of longitude,
    winds around a pole, or is not valid (self-intersection, hole outside its shell, ...), with
    the place where it goes wrong.
    """
    ext = _unwrap_ring(rings[0])
    lo, hi = float(ext[:, 0].min()), float(ext[:, 0].max())
    if hi - lo > 180.0:
        raise InvalidGeometry(
            f"polygon spans {hi - lo:.1f} degrees of longitude (from {lo:.4f} to {hi:.4f}); "
            "at most 180 is allowed: split it into smaller polygons")
    centre = (lo + hi) / 2.0
    holes = []
    for hole in rings[1:]:
        h = _unwrap_ring(hole)
        h[:, 0] += 360.0 * round((centre - (h[:, 0].min() + h[:, 0].max()) / 2.0) / 360.0)
        holes.append(h)
    poly = Polygon(ext, holes)
    reason = shapely.is_valid_reason(poly)
    if reason != "Valid Geometry":
        raise InvalidGeometry(explain_invalid(reason))
    if lo >= -180.0 and hi <= 180.0:
        parts = [poly]
    else:
        parts = _polygonal_parts(shapely.intersection(poly, _WORLD))
        for box, dx in ((_EAST, -360.0), (_WEST, 360.0)):
            piece = shapely.intersection(poly, box)
            parts += [shapely.transform(p, lambda c, dx=dx: c + [dx, 0.0])
                      for p in _polygonal_parts(piece)]
    edges = np.concatenate([np.hstack([r[:-1], r[1:]]) for r in [ext, *holes]])
    return parts, edges


def explain_invalid(reason: str) -> str:
    """Turn GEOS's validity reason into a sentence that says where and how to fix it."""
    what, _, rest = reason.partition("[")
    place = ""
    if rest:
        try:
            x, y = (float(v) for v in rest.rstrip("]").split()[:2])
            place = f" near lon {x:.6f}, lat {y:.6f}"
        except ValueError:
            place = ""
    what = what.strip()
    fixes = {
        "Self-intersection": "ring crosses itself{p}; redraw it so its edges do not cross",
        "Ring Self-intersection": "ring touches itself{p}; redraw it so it does not",
        "Hole lies outside shell": "a hole lies outside its polygon{p}; move the hole inside",
        "Interior is disconnected": "holes cut the polygon in two{p}; redraw the holes",
        "Nested shells": "one polygon lies inside another{p}; make it a hole or remove it",
        "Nested holes": "one hole lies inside another{p}; remove the inner hole",
        "Duplicate Rings": "two rings are identical{p}; remove one",
        "Too few points": "a ring has too few distinct positions{p}; a ring needs at least 3",
        "Invalid Coordinate": "a coordinate is not a number{p}",
    }
    template = fixes.get(what, what.lower() + "{p}; redraw the geometry")
    return template.format(p=place)


# --- distance to a boundary --------------------------------------------------------------------

def _curve_length_bound_m(lon0, lat0, lon1, lat1) -> np.ndarray:
    """Upper bound, metres, on the length of straight lon/lat segments on the ellipsoid.

    Both radii of curvature are at most ``R_HI``, and a parallel's radius is largest at the
    latitude nearest the equator along the segment.
    """
    dphi = np.radians(np.abs(lat1 - lat0))
    dlam = np.radians(np.abs(lon1 - lon0))
    near_eq = np.where(lat0 * lat1 <= 0.0, 0.0, np.minimum(np.abs(lat0), np.abs(lat1)))
    return R_HI * np.hypot(dphi, np.cos(np.radians(near_eq)) * dlam) * (1 + 1e-6) + 1e-6


def boundary_distance_m(lat: float, lon: float, edges: np.ndarray, *,
                        threshold_m: float | None = None,
                        rel_tol: float = 1e-4, abs_tol: float = 0.05) -> float:
    """Return the geodesic distance, metres, from (lat, lon) to the nearest point of ``edges``.

    ``edges`` is an ``(m, 4)`` array of straight lon/lat segments ``lon0, lat0, lon1, lat1``
    (longitudes may run past ±180; a geodesic does not care). The answer is within
    ``max(abs_tol, rel_tol * d)`` of the true distance ``d``: the distance to a point moving
    along a segment changes no faster than the point moves, so a piece of length ``L`` whose
    ends are ``fa`` and ``fb`` away cannot come nearer than ``(fa + fb - L) / 2``; pieces that
    cannot beat the best so far are dropped and the rest split in four until none can.

    With ``threshold_m``, stop as soon as the answer's side of the threshold is known: the
    value returned is then exact when at most ``threshold_m`` and otherwise only guaranteed
    to be above it.
    """
    if len(edges) == 0:
        return math.inf
    lon0, lat0, lon1, lat1 = (np.array(edges[:, i], dtype=float) for i in range(4))
    f = distances_m(lat, lon, np.concatenate([lat0, lat1]), np.concatenate([lon0, lon1]))
    fa, fb = f[: len(lon0)], f[len(lon0):]
    best = float(f.min())
    length = _curve_length_bound_m(lon0, lat0, lon1, lat1)
    ts = np.array([0.25, 0.5, 0.75])
    while True:
        if threshold_m is not None and best <= threshold_m:
            return best
        lower = (fa + fb - length) / 2.0
        if threshold_m is not None and lower.min() > threshold_m:
            return float(lower.min())
        keep = lower < best - max(abs_tol, rel_tol * best)
        if not keep.any():
            return best
        lon0, lat0, lon1, lat1, fa, fb = (v[keep] for v in (lon0, lat0, lon1, lat1, fa, fb))
        # three new points per kept piece, making four pieces of it
        mlon = lon0[:, None] + (lon1 - lon0)[:, None] * ts
        mlat = lat0[:, None] + (lat1 - lat0)[:, None] * ts
        fm = distances_m(lat, lon, mlat, mlon)
        best = min(best, float(fm.min()))
        plon = np.column_stack([lon0, mlon, lon1])
        plat = np.column_stack([lat0, mlat, lat1])
        pf = np.column_stack([fa, fm, fb])
        lon0, lon1 = plon[:, :-1].ravel(), plon[:, 1:].ravel()
        lat0, lat1 = plat[:, :-1].ravel(), plat[:, 1:].ravel()
        fa, fb = pf[:, :-1].ravel(), pf[:, 1:].ravel()
        length = _curve_length_bound_m(lon0, lat0, lon1, lat1)
