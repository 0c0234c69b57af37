"""Spatial indexes over stores and geofences: built once, queried exactly.

Both indexes only *propose* candidates; exact WGS84 geodesics (and, for polygons, planar
lon/lat containment as RFC 7946 draws it) decide. See :mod:`geo_engine.geometry` for the
bounds that make the proposals complete.

* :class:`StoreIndex`: a k-d tree (pykdtree) over store positions on the unit sphere. The
  sphere has no seam, so the antimeridian and the poles need no special case. Queries return
  store positions in the index (stores are sorted by id, so position order is id order) and
  geodesic metres, nearest first, ties broken by id: the same as a brute-force scan.
* :class:`FenceIndex`: an R-tree (shapely's STRtree) over the lon/lat boxes of geofence parts;
  a circle's box is a conservative cover of its geodesic disk, cut in two at ±180.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import shapely
from pykdtree.kdtree import KDTree
from shapely import STRtree

from .counting import CapGrid
from .geometry import (
    GEOD,
    R_HI,
    R_LO,
    boundary_distance_m,
    chord_for_distance,
    distances_m,
    lonlat_boxes,
    min_distance_for_chord,
    unit_vector,
    unit_vectors,
)
from .grid import BoxGrid, PointGrid
from .model import Confidence, Geofence

__all__ = ["FenceIndex", "StoreIndex"]

#: up to this many stores, a grid answers one-point nearest queries (about 130 bytes a store)
GRID_MAX_POINTS = 250_000
_EMPTY_I = np.array([], dtype=np.intp)
_EMPTY_F = np.array([], dtype=float)


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Spread the low 21 bits of each value three apart (for a 3-D Morton code)."""
    x = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def _morton_order(xyz: np.ndarray) -> np.ndarray:
    """Return an ordering of unit-sphere points along a 3-D Morton (Z-order) curve.

    Points close on the sphere end up close in memory, so a k-d tree walk touches few cache
    lines: at 1M stores this took nearest-3 from 14.5/31.7 us (p50/p99) to 9.9/14.7 us here.
    """
    g = ((xyz + 1.0) * (0.5 * (2**21 - 1))).astype(np.uint64)
    code = _spread_bits(g[:, 0]) | (_spread_bits(g[:, 1]) << np.uint64(1)) | \
        (_spread_bits(g[:, 2]) << np.uint64(2))
    return np.argsort(code, kind="stable")


def _min_distance(chord: float) -> float:
    """Scalar :func:`min_distance_for_chord` (math, not numpy: this is the hot path)."""
    return R_LO * 2.0 * math.asin(min(chord, 2.0) / 2.0) * (1 - 1e-9) - 1e-6


def _chord(distance_m: float) -> float:
    """Scalar :func:`chord_for_distance` (numpy on one number costs ~10 us here)."""
    return 2.0 * math.sin(min(distance_m * (1 + 1e-9) / R_LO + 1e-12, math.pi) / 2.0)


class StoreIndex:
    """Nearest and within-radius queries over store points, exact in WGS84 geodesic metres.

    Parameters
    ----------
    lats, lons : array_like
        Store positions in degrees, **sorted by store id**: results are positions in these
        arrays, and ties in distance are broken by position, which is then the id order.

    Notes
    -----
    The tree holds the points in Morton order for memory locality; ``_id_pos`` maps a tree
    slot back to the caller's position.
    """

    def __init__(self, lats, lons):
        lats = np.ascontiguousarray(lats, dtype=float)
        lons = np.ascontiguousarray(lons, dtype=float)
        self.size = len(lats)
        self._tree = None
        if self.size == 0:
            self._id_pos, self._lats, self._lons = _EMPTY_I, _EMPTY_F, _EMPTY_F
            return
        xyz = unit_vectors(lats, lons)
        order = _morton_order(xyz)
        self._id_pos = order.astype(np.intp)
        self._lats, self._lons = lats[order], lons[order]
        self._tree = KDTree(np.ascontiguousarray(xyz[order]))
        # element access for the scalar path: a memoryview item is a Python number in ~40 ns,
        # where numpy indexing costs microseconds at this size of query
        self._pos_mv = memoryview(self._id_pos)
        self._lat_mv, self._lon_mv = memoryview(self._lats), memoryview(self._lons)
        self._plats, self._plons = lats, lons  # by position, for CapGrid
        self._cap_grids: dict[float, CapGrid] = {}
        # one-point queries (a ping) from a dict of cells: a tree call costs more than the work
        self._point_grid: PointGrid | None = None  # built on the first one-point query

    def __len__(self) -> int:
        return self.size

    def _query(self, points: np.ndarray, k: int, chord_max: float | None = None):
        kw = {} if chord_max is None else {"distance_upper_bound": chord_max}
        chord, slot = self._tree.query(points, k=k, **kw)
        return chord.reshape(len(points), k), slot.reshape(len(points), k).astype(np.intp)

    def _ranked(self, lat: float, lon: float, slots: np.ndarray) -> list[tuple[float, int]]:
        """(geodesic metres, id position) of tree slots, nearest first, ties by id."""
        if len(slots) <= 10:  # scalar calls beat one array call below about ten points
            inv, la, lo, pos = GEOD.inv, self._lat_mv, self._lon_mv, self._pos_mv
            return sorted([(inv(lon, lat, lo[s], la[s])[2], pos[s]) for s in slots.tolist()])
        d = distances_m(lat, lon, self._lats[slots], self._lons[slots]).tolist()
        return sorted(zip(d, self._id_pos[slots].tolist(), strict=True))

    def nearest(self, lat: float, lon: float, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` nearest stores: their positions and geodesic metres.

        Nearest first, ties broken by id. Fewer than ``k`` when the index holds fewer stores.

        The k-d tree proposes the ``k + 1`` nearest by chord and the first ``k`` are ranked by
        geodesic: the answer stands when the (k+1)-th chord's lower bound exceeds the k-th
        geodesic, as it does for most queries (one geodesic for nearest-1). Otherwise more are
        proposed and all of them ranked, until the last chord proves the answer.
        """
        k = min(int(k), self.size)
        if k <= 0:
            return _EMPTY_I, _EMPTY_F
        q = np.array([unit_vector(lat, lon)])
        m = min(self.size, k + 1)
        chord, slot = self._tree.query(q, k=m)
        slot = slot.ravel()
        ranked = self._ranked(lat, lon, slot[:k])
        if m > k and _min_distance(float(chord.ravel()[k])) <= ranked[-1][0]:
            while True:
                m = min(self.size, 4 * m + 4)
                chord, slot = self._tree.query(q, k=m)
                ranked = self._ranked(lat, lon, slot.ravel())[:k]
                if m == self.size or _min_distance(float(chord.ravel()[-1])) > ranked[-1][0]:
                    break
        return (np.array([p for _, p in ranked], dtype=np.intp),
                np.array([d for d, _ in ranked], dtype=float))

    def prepare_point_queries(self) -> None:
        """Build the grid one-point queries use now, with each cell's candidate list (a server,
        at start), rather than a plainer one in the first query."""
        if 0 < self.size <= GRID_MAX_POINTS and (self._point_grid is None or not self._point_grid.listed):
            self._point_grid = PointGrid(self._plats, self._plons, listed=True)

    @property
    def _grid(self) -> PointGrid | None:
        if self._point_grid is None and 0 < self.size <= GRID_MAX_POINTS:
            self._point_grid = PointGrid(self._plats, self._plons)
        return self._point_grid

    def nearest_one(self, lat: float, lon: float) -> tuple[int, float] | None:
        """``(position, geodesic metres)`` of the nearest store (ties by id); None when empty.

        The same answer as ``nearest(lat, lon, 1)``, from the grid when it can prove it.
        """
        if self.size == 0:
            return None
        grid = self._grid
        got = grid.nearest(lat, lon) if grid is not None else None
        if got is None:
            i, d = self.nearest(lat, lon, 1)
            got = int(i[0]), float(d[0])
        return got

    def within(self, lat: float, lon: float, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Return every store within ``radius_m`` geodesic metres (inclusive), nearest first.

        Ties are broken by id. Returns positions and geodesic metres.
        """
        if self.size == 0 or radius_m < 0:
            return _EMPTY_I, _EMPTY_F
        q = np.array([unit_vector(lat, lon)])
        chord_max = _chord(radius_m)
        m = min(self.size, 16)
        while True:
            _, slot = self._tree.query(q, k=m, distance_upper_bound=chord_max)
            slot = slot.ravel()
            if slot[-1] >= self.size or m == self.size:
                break
            m = min(self.size, m * 8)
        slot = slot[slot < self.size].astype(np.intp)
        ranked = [(d, p) for d, p in self._ranked(lat, lon, slot) if d <= radius_m]
        return (np.array([p for _, p in ranked], dtype=np.intp),
                np.array([d for d, _ in ranked], dtype=float))

    def nearest_bulk(self, lats, lons, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` nearest stores of every point: ``(n, k)`` positions and metres.

        Row ``i`` equals ``nearest(lats[i], lons[i], k)``; rows are padded with -1 and inf when
        the index holds fewer than ``k`` stores. Queries run in Morton order (for cache
        locality); one k-d tree pass proposes ``k + 1`` per point, geodesics are computed for
        the first ``k``, and the (k+1)-th chord proves most rows done. The rest are proposed
        again with more candidates, as arrays.
        """
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        n = len(lats)
        out_i = np.full((n, k), -1, dtype=np.intp)
        out_d = np.full((n, k), np.inf)
        kk = min(k, self.size)
        if n == 0 or kk <= 0:
            return out_i, out_d
        q = unit_vectors(lats, lons)
        rows = _morton_order(q)
        q, qlats, qlons = np.ascontiguousarray(q[rows]), lats[rows], lons[rows]
        res_i = np.empty((n, kk), dtype=np.intp)
        res_d = np.empty((n, kk))

        def rank(pending, slot):
            pos = self._id_pos[slot]
            d = distances_m(qlats[pending, None], qlons[pending, None], self._lats[slot],
                            self._lons[slot])
            order = np.lexsort((pos, d), axis=-1)[:, :kk]
            res_i[pending] = np.take_along_axis(pos, order, axis=-1)
            res_d[pending] = np.take_along_axis(d, order, axis=-1)

        # First pass: k + 1 proposals, geodesics for the first k only; the (k+1)-th chord
        # bounds everything not proposed.
        m = min(self.size, kk + 1)
        chord, slot = self._query(q, m)
        if kk == 1:  # one column: nothing to order
            res_i[:, 0] = self._id_pos[slot[:, 0]]
            res_d[:, 0] = distances_m(qlats, qlons, self._lats[slot[:, 0]], self._lons[slot[:, 0]])
        else:
            rank(np.arange(n), slot[:, :kk])
        if m > kk:
            pending = np.flatnonzero(min_distance_for_chord(chord[:, kk]) <= res_d[:, -1])
        else:
            pending = np.arange(0)
        # Unsure rows: propose more, rank them all, until the last chord proves the answer.
        while len(pending):
            m = min(self.size, 4 * m + 4)
            chord, slot = self._query(q[pending], m)
            rank(pending, slot)
            if m == self.size:
                break
            pending = pending[min_distance_for_chord(chord[:, -1]) <= res_d[pending, -1]]
        out_i[rows, :kk], out_d[rows, :kk] = res_i, res_d
        return out_i, out_d

    def count_within_bulk(self, lats, lons, radius_m: float,
                          per_store: np.ndarray | None = None) -> np.ndarray:
        """Return, for every point, how many stores lie within ``radius_m`` geodesic metres.

        Counted by :class:`~geo_engine.counting.CapGrid` (whole cells inside the radius at once);
        points it leaves (near a pole, a radius across ±180) go to the k-d tree. With
        ``per_store`` (an int array, one slot per store position), how many of the points lie
        within the radius of each store is added to it, from the same pass.
        """
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        if self.size == 0 or len(lats) == 0:
            return np.zeros(len(lats), dtype=np.int64)
        if per_store is not None or len(lats) >= self.size:
            # stores as the queries: one pass gives both counts (and beats the other way
            # round whenever the points outnumber the stores)
            return self._count_within_swapped(lats, lons, radius_m, per_store)
        grid = self._cap_grids.get(radius_m)
        if grid is None:
            self._cap_grids = {radius_m: CapGrid(self._plats, self._plons, radius_m)}
            grid = self._cap_grids[radius_m]
        counts, handled = grid.count(lats, lons)
        rest = np.flatnonzero(~handled)
        if len(rest):
            counts[rest] = self._count_within_tree(lats[rest], lons[rest], radius_m)
        return counts

    def _count_within_swapped(self, lats, lons, radius_m: float,
                              per_store: np.ndarray | None) -> np.ndarray:
        """More points than stores: the stores query a grid of the points, and one pass gives
        both counts (each point's from a difference array over whole cells plus edge hits).
        Stores the grid leaves (a pole, ±180 in reach) are counted by a k-d tree of just them."""
        grid = CapGrid(lats, lons, radius_m, per_radius=8)
        mine, done, counts = grid.count(self._plats, self._plons, per_point=True)
        rest = np.flatnonzero(~done)
        if len(rest):
            some = np.zeros(len(rest), dtype=np.int64)
            counts += StoreIndex(self._plats[rest], self._plons[rest])._count_within_tree(
                lats, lons, radius_m, some)
            mine[rest] = some
        if per_store is not None:
            per_store += mine
        return counts

    def _count_within_tree(self, lats, lons, radius_m: float,
                           per_store: np.ndarray | None = None) -> np.ndarray:
        """:meth:`count_within_bulk` by the k-d tree: every pair listed.

        A store whose chord is short enough that even ``R_HI * theta`` is within the radius
        is counted without a geodesic; only those in the thin shell between ``R / R_HI`` and
        ``R / R_LO`` (about 1 % of the radius) are measured. With ``per_store`` (an int array,
        one slot per store position), each pair found also adds one to its store: how many of
        the points lie within the radius of each store, from the same pass.
        """
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        counts = np.zeros(len(lats), dtype=np.int64)
        if self.size == 0 or len(lats) == 0:
            return counts
        q = unit_vectors(lats, lons)
        chord_max = chord_for_distance(radius_m)
        theta_in = radius_m / R_HI * (1 - 1e-9)
        chord_in = 2.0 * math.sin(min(theta_in, math.pi) / 2.0)
        pending = np.arange(len(lats))
        m = min(self.size, 64)  # re-querying the full rows costs more than a wider first pass
        while len(pending):
            chord, slot = self._query(q[pending], m, chord_max)
            found = slot < self.size
            full = found[:, -1] & (m < self.size)
            rows = np.flatnonzero(~full)
            done = pending[rows]
            sure = found[rows] & (chord[rows] <= chord_in)
            counts[done] += sure.sum(axis=1)
            if per_store is not None:  # (bincount: np.add.at is ~10 times slower)
                per_store += np.bincount(self._id_pos[slot[rows][sure]], minlength=len(per_store))
            r, c = np.nonzero(found[rows] & ~sure)
            if len(r):
                pts = done[r]
                slots = slot[rows][r, c]
                d = distances_m(lats[pts], lons[pts], self._lats[slots], self._lons[slots])
                counts += np.bincount(pts[d <= radius_m], minlength=len(counts))
                if per_store is not None:
                    per_store += np.bincount(self._id_pos[slots[d <= radius_m]],
                                             minlength=len(per_store))
            pending = pending[full]
            m = min(self.size, m * 8)
        return counts


class FenceIndex:
    """Which geofences contain a point, with what confidence, and how far a point is from one.

    Parameters
    ----------
    fences : sequence of Geofence
        Polygons need ``parts`` and ``edges`` (as :mod:`geo_engine.fences` builds them).
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
        self._owners = owners  # box -> fence position (a list: indexing a few is cheaper)
        self._owners_arr = np.array(owners, dtype=np.intp)
        b = np.array(boxes, dtype=float).reshape(-1, 4)
        self._boxes = b
        self._grid = BoxGrid(b, self._owners_arr)  # the R-tree only for what the grid declines
        self._circle = np.array([f.is_circle for f in self.fences], dtype=bool)
        self._c_lat = np.array([f.lat if f.is_circle else np.nan for f in self.fences], dtype=float)
        self._c_lon = np.array([f.lon if f.is_circle else np.nan for f in self.fences], dtype=float)
        self._c_r = np.array([f.radius_m if f.is_circle else np.nan for f in self.fences], dtype=float)
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
        found = self._grid.query(reach)
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
        inside = bool(shapely.intersects_xy(shape, lon, lat))
        if acc == 0.0:
            return Confidence.HIGH if inside else None
        # The boxes cover the accuracy disk: a polygon holding all of them holds the disk, and
        # one touching none of them cannot touch it. Only the band in between needs the search.
        boxes = boxes or [shapely.box(*b) for b in lonlat_boxes(lat, lon, acc)]
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
        if shapely.intersects_xy(self._shapes[i], lon, lat):
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
        found = self._grid.query_points(lats, lons)  # arrays, no Point objects: ~3x faster
        if found is None:
            pts, boxes = self._tree.query(shapely.points(lons, lats))
            pairs = np.unique(np.column_stack([pts, self._owners_arr[boxes]]), axis=0)
            found = pairs[:, 0], pairs[:, 1]
        pts, fences = found
        active = np.array([f.active(at) for f in self.fences], dtype=bool)
        keep = active[fences]
        circ = self._circle[fences]
        c = keep & circ
        if c.any():
            d = distances_m(self._c_lat[fences[c]], self._c_lon[fences[c]], lats[pts[c]], lons[pts[c]])
            keep[np.flatnonzero(c)] = d <= self._c_r[fences[c]]
        p = keep & ~circ
        if p.any():
            keep[np.flatnonzero(p)] = shapely.intersects_xy(self._shapes[fences[p]], lons[pts[p]],
                                                            lats[pts[p]])
        return pts[keep], fences[keep]
