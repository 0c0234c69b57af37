"""The store index: nearest and within-radius queries over store points, exact in geodesic metres.

:class:`StoreIndex` is a k-d tree (pykdtree) over store positions in Earth-centred metres
(ECEF), which have no seam, so the antimeridian and the poles need no special case. It only
*proposes* candidates by straight-line chord; exact WGS84 geodesics decide (see
:mod:`geo_engine.geodesy` for the bounds that make the proposals complete: no geodesic is
shorter than its chord, nor longer by more than a fraction of a millimetre at 5 km). Queries
return store positions in the index (stores are sorted by id, so position order is id order) and
geodesic metres, nearest first, ties broken by id: the same as a brute-force scan. One-point
queries (a ping) go through a :class:`~.grids.PointGrid`; counts within a radius for many points
through a :class:`~.counting.CapGrid`.

It knows positions only: not what a store is, nor the database.
"""

from __future__ import annotations

import numpy as np
from pykdtree.kdtree import KDTree

from ..geodesy import (
    GEOD,
    chord_inside,
    chord_reach,
    distances_m,
    ecef,
    ecef_one,
    lonlat_boxes,
)
from .counting import CapGrid
from .grids import PointGrid

__all__ = ["StoreIndex"]

#: up to this many stores, a grid answers one-point nearest queries (about 130 bytes a store)
GRID_MAX_POINTS = 250_000
_EARTH = GEOD.a  # no ECEF coordinate is larger
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
    """Return an ordering of ECEF points (metres) along a 3-D Morton (Z-order) curve.

    Points close on the sphere end up close in memory, so a k-d tree walk touches few cache
    lines (the gain at 1M stores is in ``benchmarks/RESULTS.md``, bench_index).
    """
    g = ((xyz / _EARTH + 1.0) * (0.5 * (2**21 - 1))).astype(np.uint64)
    code = _spread_bits(g[:, 0]) | (_spread_bits(g[:, 1]) << np.uint64(1)) | \
        (_spread_bits(g[:, 2]) << np.uint64(2))
    return np.argsort(code, kind="stable")


def _min_distance(chord):
    """A lower bound, in geodesic metres, for points at this ECEF chord (metres) or farther:
    the chord itself, less a hair for rounding (scalar or array)."""
    return chord * (1 - 1e-12) - 1e-6


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
        xyz = ecef(lats, lons)
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
        q = np.array([ecef_one(lat, lon)])
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
    def point_grid(self) -> PointGrid | None:
        """The cell grid one-point queries try first (built on first use; None past
        :data:`GRID_MAX_POINTS` stores or with none)."""
        if self._point_grid is None and 0 < self.size <= GRID_MAX_POINTS:
            self._point_grid = PointGrid(self._plats, self._plons)
        return self._point_grid

    def nearest_one(self, lat: float, lon: float) -> tuple[int, float] | None:
        """``(position, geodesic metres)`` of the nearest store (ties by id); None when empty.

        The same answer as ``nearest(lat, lon, 1)``, from the grid when it can prove it.
        """
        if self.size == 0:
            return None
        grid = self.point_grid
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
        q = np.array([ecef_one(lat, lon)])
        chord_max = chord_reach(radius_m)
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
        q = ecef(lats, lons)
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
        pending = np.flatnonzero(_min_distance(chord[:, kk]) <= res_d[:, -1]) if m > kk else np.arange(0)
        # Unsure rows: propose more, rank them all, until the last chord proves the answer.
        while len(pending):
            m = min(self.size, 4 * m + 4)
            chord, slot = self._query(q[pending], m)
            rank(pending, slot)
            if m == self.size:
                break
            pending = pending[_min_distance(chord[:, -1]) <= res_d[pending, -1]]
        out_i[rows, :kk], out_d[rows, :kk] = res_i, res_d
        return out_i, out_d

    def count_within_bulk(self, lats, lons, radius_m: float,
                          per_store: np.ndarray | None = None) -> np.ndarray:
        """Return, for every point, how many stores lie within ``radius_m`` geodesic metres.

        Counted by :class:`~geo_engine.spatial.counting.CapGrid` (whole cells inside the radius at once);
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
        Stores the grid leaves (a pole, ±180 in reach: a few) each ask an index of the points
        for those within the radius (asking it of every point, against a tree of those few
        stores, took half of a worldwide run: benchmarks/RESULTS.md)."""
        grid = CapGrid(lats, lons, radius_m, per_radius=8)
        mine, done, counts = grid.count(self._plats, self._plons, per_point=True)
        rest = np.flatnonzero(~done)
        if len(rest):
            # only the points in reach of those stores go in the index (a box test each, when
            # they are few; a chain along the antimeridian indexes every point)
            near = np.zeros(len(lats), dtype=bool) if len(rest) <= 64 else np.ones(len(lats), dtype=bool)
            for k in rest.tolist() if len(rest) <= 64 else ():
                for x0, y0, x1, y1 in lonlat_boxes(float(self._plats[k]), float(self._plons[k]), radius_m):
                    near |= (y0 <= lats) & (lats <= y1) & (x0 <= lons) & (lons <= x1)
            sub = np.flatnonzero(near)
            points = StoreIndex(lats[sub], lons[sub])
            for k in rest.tolist():
                idx, _ = points.within(float(self._plats[k]), float(self._plons[k]), radius_m)
                counts[sub[idx]] += 1  # a point once per store: positions are distinct
                mine[k] = len(idx)
        if per_store is not None:
            per_store += mine
        return counts

    def _count_within_tree(self, lats, lons, radius_m: float,
                           per_store: np.ndarray | None = None) -> np.ndarray:
        """:meth:`count_within_bulk` by the k-d tree: every pair listed.

        A store whose ECEF chord is short enough that its geodesic is surely within the radius is
        counted without one; only those in the hair-thin shell between
        :func:`~geo_engine.geodesy.chord_inside` and the radius are measured. With ``per_store`` (an
        int array, one slot per store position), each pair found also adds one to its store: how
        many of the points lie within the radius of each store, from the same pass.
        """
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        counts = np.zeros(len(lats), dtype=np.int64)
        if self.size == 0 or len(lats) == 0:
            return counts
        q = ecef(lats, lons)
        chord_max = chord_reach(radius_m)
        chord_in = chord_inside(radius_m)
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
