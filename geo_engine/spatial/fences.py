"""The geofence index: which geofences contain a point, how surely, and how far a point is.

:class:`FenceIndex` holds the lon/lat boxes of geofence parts (a circle's box conservatively
covers its geodesic disk, cut in two at ±180) in a :class:`~.grids.BoxGrid`, with an R-tree
(shapely's STRtree) for what the grid declines. Boxes only *propose*; the exact test decides: a
geodesic distance for circles, shapely's planar lon/lat test for polygons (boundary inside,
RFC 7946), and :func:`geo_engine.polygons.boundary_distance_m` for the distance to a boundary.

It knows geofence shapes only: not campaigns, devices nor the database.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import shapely
from shapely import STRtree

from ..geodesy import GEOD, chord_inside, distances_m, ecef, lonlat_boxes, unit_vectors
from ..model import Confidence, Geofence
from ..polygons import boundary_distance_m
from .grids import BoxGrid

__all__ = ["FenceIndex"]

_EMPTY_I = np.array([], dtype=np.intp)


class FenceIndex:
    """Which geofences contain a point, with what confidence, and how far a point is from one.

    Parameters
    ----------
    fences : sequence of Geofence
        Polygons need ``parts`` and ``edges`` (as :func:`geo_engine.io.shapes.build_geofences` builds them).
    """

    def __init__(self, fences: Sequence[Geofence]):
        self.fences = list(fences)
        self.ids = np.array([f.id for f in self.fences], dtype=object)
        boxes, owners = [], []
        self._shapes = np.empty(len(self.fences), dtype=object)
        for i, fence in enumerate(self.fences):
            if fence.is_circle:
                parts_boxes = lonlat_boxes(fence.lat, fence.lon, fence.radius_m)
            else:
                parts_boxes = [p.bounds for p in fence.parts]
                shape = shapely.multipolygons(list(fence.parts)) if len(fence.parts) > 1 \
                    else fence.parts[0]
                shapely.prepare(shape)
                self._shapes[i] = shape
            boxes += parts_boxes
            owners += [i] * len(parts_boxes)
        # GEOS prepared geometries are not thread-safe (libgeos/geos#825): their indexes are
        # built lazily by the first query and some predicates keep state while they run, and
        # shapely releases the GIL around them. Threads of a server share this index, so every
        # call on a prepared polygon holds this lock (a ping beside a polygon while others
        # queried it crashed the process with SIGSEGV without it).
        self._geos = threading.Lock()
        self._owners = owners  # box -> fence position (a list: indexing a few is cheaper)
        self._owners_arr = np.array(owners, dtype=np.intp)
        b = np.array(boxes, dtype=float).reshape(-1, 4)
        self._boxes = b
        #: the lon/lat boxes in cells; the R-tree answers only what this grid declines
        self.box_grid = BoxGrid(b, self._owners_arr)
        self._circle = np.array([f.is_circle for f in self.fences], dtype=bool)
        self._c_lat = np.array([f.lat if f.is_circle else np.nan for f in self.fences], dtype=float)
        self._c_lon = np.array([f.lon if f.is_circle else np.nan for f in self.fences], dtype=float)
        self._c_r = np.array([f.radius_m if f.is_circle else np.nan for f in self.fences], dtype=float)
        self._c_xyz = ecef(self._c_lat, self._c_lon)  # circles' centres in ECEF metres (bulk tests)
        # the same, as Python lists for the one-point path (numpy scalars cost ~100 ns each)
        self._circle_l = self._circle.tolist()
        self._c_lat_l, self._c_lon_l, self._c_r_l = (self._c_lat.tolist(), self._c_lon.tolist(),
                                                     self._c_r.tolist())

    def __len__(self) -> int:
        return len(self.fences)

    @functools.cached_property
    def _tree(self) -> STRtree:
        """An R-tree of the same boxes, built on first use: only for queries the grid declines
        (very wide geofences, a reach of more than a few cells, near the poles)."""
        b = self._boxes
        return STRtree(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))

    def _candidates(self, lat: float, lon: float, reach_m: float) -> tuple[list[int], list]:
        """Candidate positions, and the boxes (geometries) that cover the reach, if any."""
        if not self.fences:
            return [], []
        owners = self._owners
        reach = lonlat_boxes(lat, lon, reach_m) if reach_m > 0 else [(lon, lat, lon, lat)]
        found = self.box_grid.query(reach)
        if found is not None:
            return sorted(found), None
        if reach_m <= 0:
            hits = self._tree.query(shapely.Point(lon, lat)).tolist()
            return sorted({owners[h] for h in hits}), []
        boxes = [shapely.box(*b) for b in reach]
        hits = (self._tree.query(boxes[0]) if len(boxes) == 1 else self._tree.query(boxes)[1]).tolist()
        return sorted({owners[h] for h in hits}), boxes

    def containing(self, lat: float, lon: float, accuracy_m: float = 0.0,
                   at: datetime | None = None) -> list[tuple[int, Confidence]]:
        """Return ``(position, confidence)`` of every active geofence the fix is in or touches.

        Confidence (SPEC section 6): ``high`` when the whole accuracy circle of radius
        ``accuracy_m`` lies inside, ``medium`` when the point is inside, ``low`` when only the
        accuracy circle touches the geofence. A point on a boundary is inside. Disabled
        geofences, and those expired at ``at`` (default now), are left out. Ordered by position
        (geofence id).
        """
        at = at or datetime.now(UTC)
        acc = max(0.0, float(accuracy_m))
        cand, boxes = self._candidates(lat, lon, acc)
        out = []
        for i in cand:
            if not self.fences[i].active(at):
                continue
            conf = self._confidence(i, lat, lon, acc, boxes)
            if conf is not None:
                out.append((i, conf))
        return out

    def _confidence(self, i: int, lat: float, lon: float, acc: float,
                    boxes: list | None = None) -> Confidence | None:
        if self._circle_l[i]:
            d = GEOD.inv(self._c_lon_l[i], self._c_lat_l[i], lon, lat)[2]
            r = self._c_r_l[i]
            if d <= r:
                return Confidence.HIGH if d + acc <= r else Confidence.MEDIUM
            return Confidence.LOW if d - acc <= r else None
        shape = self._shapes[i]
        with self._geos:
            inside = bool(shapely.intersects_xy(shape, lon, lat))
        if acc == 0.0:
            return Confidence.HIGH if inside else None
        # The boxes cover the accuracy disk: a polygon holding all of them holds the disk, and
        # one touching none of them cannot touch it. Only the band in between needs the search.
        boxes = boxes or [shapely.box(*b) for b in lonlat_boxes(lat, lon, acc)]
        with self._geos:
            if inside and all(shapely.contains_properly(shape, b) for b in boxes):
                return Confidence.HIGH
            if not inside and not any(shapely.intersects(shape, b) for b in boxes):
                return None
        near = boundary_distance_m(lat, lon, self.fences[i].edges, threshold_m=acc)
        if inside:
            return Confidence.MEDIUM if near < acc else Confidence.HIGH
        return Confidence.LOW if near <= acc else None

    def distance_m(self, i: int, lat: float, lon: float) -> float:
        """Return the geodesic metres from the point to geofence ``i``'s boundary, 0 inside."""
        if self._circle_l[i]:
            d = GEOD.inv(self._c_lon_l[i], self._c_lat_l[i], lon, lat)[2]
            return max(0.0, d - self._c_r_l[i])
        with self._geos:
            inside = shapely.intersects_xy(self._shapes[i], lon, lat)
        if inside:
            return 0.0
        return boundary_distance_m(lat, lon, self.fences[i].edges)

    def nearest(self, lat: float, lon: float, limit: int,
                at: datetime | None = None) -> list[tuple[int, float]]:
        """Return ``(position, metres)`` of the ``limit`` active geofences nearest by boundary.

        Distance is to the nearest boundary point, 0 inside; nearest first, ties by id. The
        reach doubles from 1 km until ``limit`` geofences are within it: any geofence outside
        the reach is farther than it, so the answer is exact.
        """
        at = at or datetime.now(UTC)
        reach = 1000.0
        while True:
            found = [(self.distance_m(i, lat, lon), i) for i in self._candidates(lat, lon, reach)[0]
                     if self.fences[i].active(at)]
            inside = sorted((d, i) for d, i in found if d <= reach)
            if len(inside) >= limit or reach > 2.1e7:
                return [(i, d) for d, i in inside[:limit]]
            reach *= 4

    def enclosing_circle(self, i: int) -> tuple[float, float, float]:
        """Return ``(lat, lon, radius_m)`` of a circle enclosing geofence ``i``.

        A circle geofence is itself; a polygon gets the circle around its vertices' mean
        direction on the sphere, wide enough for every vertex and edge midpoint plus 1 m.
        """
        if self._circle[i]:
            return float(self._c_lat[i]), float(self._c_lon[i]), float(self._c_r[i])
        e = self.fences[i].edges
        lons = np.concatenate([e[:, 0], (e[:, 0] + e[:, 2]) / 2])
        lats = np.concatenate([e[:, 1], (e[:, 1] + e[:, 3]) / 2])
        v = unit_vectors(lats, lons).mean(axis=0)
        c_lat = float(np.degrees(np.arcsin(v[2] / np.linalg.norm(v))))
        c_lon = float(np.degrees(np.arctan2(v[1], v[0])))
        r = float(distances_m(c_lat, c_lon, lats, lons).max()) + 1.0
        return c_lat, c_lon, r

    def containing_bulk(self, lats, lons, at: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(point, fence)`` position pairs for every active geofence containing a point.

        The point form of :meth:`containing` with no accuracy (boundary inclusive), for arrays:
        the box grid (or, with very wide geofences, the R-tree) proposes pairs, one geodesic pass
        tests circles and one ``intersects_xy`` pass tests polygons. Pairs are sorted by point,
        then fence.
        """
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        if not self.fences or len(lats) == 0:
            return _EMPTY_I, _EMPTY_I
        at = at or datetime.now(UTC)
        found = self.box_grid.query_points(lats, lons)  # arrays, no Point objects (RESULTS.md)
        if found is None:
            pts, boxes = self._tree.query(shapely.points(lons, lats))
            pairs = np.unique(np.column_stack([pts, self._owners_arr[boxes]]), axis=0)
            found = pairs[:, 0], pairs[:, 1]
        pts, fences = found
        active = np.array([f.active(at) for f in self.fences], dtype=bool)
        keep = active[fences]
        circ = self._circle[fences]
        c = keep & circ
        if c.any():  # by ECEF chord; a geodesic only in the hair-thin shell it leaves
            ci, f = np.flatnonzero(c), fences[c]
            chord = np.linalg.norm(self._c_xyz[f] - ecef(lats[pts[c]], lons[pts[c]]), axis=1)
            r = self._c_r[f]
            inside = chord <= chord_inside(r)
            shell = np.flatnonzero(~inside & (chord <= r * (1 + 1e-12) + 1e-6))
            if len(shell):
                g, p_ = f[shell], pts[c][shell]
                inside[shell] = distances_m(self._c_lat[g], self._c_lon[g], lats[p_], lons[p_]) <= r[shell]
            keep[ci] = inside
        p = keep & ~circ
        if p.any():
            with self._geos:
                keep[np.flatnonzero(p)] = shapely.intersects_xy(self._shapes[fences[p]],
                                                                lons[pts[p]], lats[pts[p]])
        return pts[keep], fences[keep]
