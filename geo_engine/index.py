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

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import shapely
from pykdtree.kdtree import KDTree
from shapely import STRtree

from .geometry import (
    GEOD,
    boundary_distance_m,
    chord_for_distance,
    distances_m,
    lonlat_boxes,
    min_distance_for_chord,
    unit_vector,
    unit_vectors,
)
from .model import Confidence, Geofence

__all__ = ["FenceIndex", "StoreIndex"]

_EMPTY_I = np.array([], dtype=np.intp)
_EMPTY_F = np.array([], dtype=float)


class StoreIndex:
    """Nearest and within-radius queries over store points, exact in WGS84 geodesic metres.

    Parameters
    ----------
    lats, lons : array_like
        Store positions in degrees, **sorted by store id** (ties in distance are broken by
        position, which is then the id order).
    """

    def __init__(self, lats, lons):
        self.lats = np.ascontiguousarray(lats, dtype=float)
        self.lons = np.ascontiguousarray(lons, dtype=float)
        self.size = len(self.lats)
        self._tree = KDTree(unit_vectors(self.lats, self.lons)) if self.size else None

    def __len__(self) -> int:
        return self.size

    def _query(self, points: np.ndarray, k: int, chord_max: float | None = None):
        kw = {} if chord_max is None else {"distance_upper_bound": chord_max}
        chord, idx = self._tree.query(points, k=k, **kw)
        return chord.reshape(len(points), k), idx.reshape(len(points), k).astype(np.intp)

    def _geodesics(self, lat: float, lon: float, idx: np.ndarray) -> list[float]:
        # scalar calls beat one array call below about ten points
        if len(idx) <= 10:
            lats, lons, inv = self.lats, self.lons, GEOD.inv
            return [inv(lon, lat, lons[i], lats[i])[2] for i in idx.tolist()]
        return distances_m(lat, lon, self.lats[idx], self.lons[idx]).tolist()

    def nearest(self, lat: float, lon: float, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` nearest stores: their positions in the index and geodesic metres.

        Nearest first, ties broken by id. Fewer than ``k`` when the index holds fewer stores.

        The k-d tree proposes the ``k + 2`` nearest by chord; they are ranked by geodesic, and
        the answer stands when the next store by chord is provably farther (its chord's lower
        bound exceeds the k-th geodesic). Otherwise more are proposed.
        """
        k = min(int(k), self.size)
        if k <= 0:
            return _EMPTY_I, _EMPTY_F
        q = np.array([unit_vector(lat, lon)])
        m = min(self.size, k + 2)
        while True:
            chord, idx = self._query(q, m)
            idx_l = idx[0].tolist()
            ranked = sorted(zip(self._geodesics(lat, lon, idx[0]), idx_l, strict=True))[:k]
            if m == self.size or min_distance_for_chord(float(chord[0, -1])) > ranked[-1][0]:
                break
            m = min(self.size, m * 4)
        return (np.fromiter((i for _, i in ranked), dtype=np.intp, count=len(ranked)),
                np.fromiter((d for d, _ in ranked), dtype=float, count=len(ranked)))

    def within(self, lat: float, lon: float, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Return every store within ``radius_m`` geodesic metres (inclusive), nearest first.

        Ties are broken by id. Returns index positions and geodesic metres.
        """
        if self.size == 0 or radius_m < 0:
            return _EMPTY_I, _EMPTY_F
        q = np.array([unit_vector(lat, lon)])
        chord_max = chord_for_distance(radius_m)
        m = min(self.size, 16)
        while True:
            chord, idx = self._query(q, m, chord_max)
            found = idx[0] < self.size
            if not found[-1] or m == self.size:
                break
            m = min(self.size, m * 8)
        idx = idx[0][found]
        dist = np.asarray(self._geodesics(lat, lon, idx), dtype=float)
        keep = dist <= radius_m
        idx, dist = idx[keep], dist[keep]
        order = np.lexsort((idx, dist))
        return idx[order], dist[order]

    def nearest_bulk(self, lats, lons, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` nearest stores of every point: ``(n, k)`` positions and metres.

        Row ``i`` equals ``nearest(lats[i], lons[i], k)``; rows are padded with -1 and inf when
        the index holds fewer than ``k`` stores. One k-d tree pass proposes ``k + 1`` per point;
        geodesics are computed for the first ``k`` and the (k+1)-th chord proves most rows
        done. The rest are proposed again with more candidates, as arrays.
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
        m = min(self.size, kk + 1)
        chord, idx = self._query(q, m)
        d = distances_m(lats[:, None], lons[:, None], self.lats[idx[:, :kk]], self.lons[idx[:, :kk]])
        cand_i = idx[:, :kk]
        order = np.lexsort((cand_i, d), axis=-1)
        d = np.take_along_axis(d, order, axis=-1)
        cand_i = np.take_along_axis(cand_i, order, axis=-1)
        out_i[:, :kk], out_d[:, :kk] = cand_i, d
        if m == kk:  # every store was a candidate
            return out_i, out_d
        pending = np.flatnonzero(min_distance_for_chord(chord[:, -1]) <= d[:, -1])
        while len(pending):
            m = min(self.size, m * 4)
            chord, idx = self._query(q[pending], m)
            dd = distances_m(lats[pending, None], lons[pending, None], self.lats[idx], self.lons[idx])
            order = np.lexsort((idx, dd), axis=-1)[:, :kk]
            dd = np.take_along_axis(dd, order, axis=-1)
            out_i[pending, :kk] = np.take_along_axis(idx, order, axis=-1)
            out_d[pending, :kk] = dd
            if m == self.size:
                break
            pending = pending[min_distance_for_chord(chord[:, -1]) <= dd[:, -1]]
        return out_i, out_d

    def count_within_bulk(self, lats, lons, radius_m: float) -> np.ndarray:
        """Return, for every point, how many stores lie within ``radius_m`` geodesic metres."""
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        counts = np.zeros(len(lats), dtype=np.int64)
        if self.size == 0 or len(lats) == 0:
            return counts
        q = unit_vectors(lats, lons)
        chord_max = chord_for_distance(radius_m)
        pending = np.arange(len(lats))
        m = min(self.size, 16)
        while len(pending):
            _, idx = self._query(q[pending], m, chord_max)
            found = idx < self.size
            full = found[:, -1] & (m < self.size)
            done = pending[~full]
            rows = np.flatnonzero(~full)
            r, c = np.nonzero(found[rows])
            pts = done[r]
            stores = idx[rows][r, c]
            d = distances_m(lats[pts], lons[pts], self.lats[stores], self.lons[stores])
            np.add.at(counts, pts[d <= radius_m], 1)
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
        self._owners = np.array(owners, dtype=np.intp)
        b = np.array(boxes, dtype=float).reshape(-1, 4)
        self._tree = STRtree(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
        self._circle = np.array([f.is_circle for f in self.fences], dtype=bool)
        self._c_lat = np.array([f.lat if f.is_circle else np.nan for f in self.fences], dtype=float)
        self._c_lon = np.array([f.lon if f.is_circle else np.nan for f in self.fences], dtype=float)
        self._c_r = np.array([f.radius_m if f.is_circle else np.nan for f in self.fences], dtype=float)

    def __len__(self) -> int:
        return len(self.fences)

    def candidates(self, lat: float, lon: float, reach_m: float = 0.0) -> np.ndarray:
        """Return positions of geofences whose boxes come within ``reach_m`` of the point."""
        if not self.fences:
            return _EMPTY_I
        if reach_m <= 0:
            hits = self._tree.query(shapely.Point(lon, lat))
        else:
            boxes = lonlat_boxes(lat, lon, reach_m)
            geoms = [shapely.box(*b) for b in boxes]
            hits = self._tree.query(geoms[0]) if len(geoms) == 1 else \
                np.unique(self._tree.query(geoms)[1])
        return np.unique(self._owners[hits])

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
        out = []
        for i in self.candidates(lat, lon, acc).tolist():
            fence = self.fences[i]
            if not fence.active(at):
                continue
            conf = self._confidence(i, lat, lon, acc)
            if conf is not None:
                out.append((i, conf))
        return out

    def _confidence(self, i: int, lat: float, lon: float, acc: float) -> Confidence | None:
        if self._circle[i]:
            d = GEOD.inv(self._c_lon[i], self._c_lat[i], lon, lat)[2]
            r = self._c_r[i]
            if d <= r:
                return Confidence.HIGH if d + acc <= r else Confidence.MEDIUM
            return Confidence.LOW if d - acc <= r else None
        inside = bool(shapely.intersects_xy(self._shapes[i], lon, lat))
        if acc == 0.0:
            return Confidence.HIGH if inside else None
        near = boundary_distance_m(lat, lon, self.fences[i].edges, threshold_m=acc)
        if inside:
            return Confidence.MEDIUM if near < acc else Confidence.HIGH
        return Confidence.LOW if near <= acc else None

    def distance_m(self, i: int, lat: float, lon: float) -> float:
        """Return the geodesic metres from the point to geofence ``i``'s boundary, 0 inside."""
        if self._circle[i]:
            d = GEOD.inv(self._c_lon[i], self._c_lat[i], lon, lat)[2]
            return max(0.0, d - float(self._c_r[i]))
        if shapely.intersects_xy(self._shapes[i], lon, lat):
            return 0.0
        return boundary_distance_m(lat, lon, self.fences[i].edges)

    def containing_bulk(self, lats, lons, at: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(point, fence)`` position pairs for every active geofence containing a point.

        The point form of :meth:`containing` with no accuracy (boundary inclusive), for arrays:
        one R-tree pass proposes pairs, one geodesic pass tests circles and one
        ``intersects_xy`` pass tests polygons. Pairs are sorted by point, then fence.
        """
        lats = np.asarray(lats, dtype=float).ravel()
        lons = np.asarray(lons, dtype=float).ravel()
        if not self.fences or len(lats) == 0:
            return _EMPTY_I, _EMPTY_I
        at = at or datetime.now(UTC)
        pts, boxes = self._tree.query(shapely.points(lons, lats))
        fences = self._owners[boxes]
        pairs = np.unique(np.column_stack([pts, fences]), axis=0)
        pts, fences = pairs[:, 0], pairs[:, 1]
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
