"""Exact counts of points within a geodesic radius, without listing most of the pairs.

Batch scoring asks, for every customer, how many stores lie within ``R`` (5 km by default), and
for every store how many customers do. In a dense city that is hundreds of pairs a customer; a
k-d tree lists them all. :class:`CapGrid` counts whole runs of points instead:

* The points go in rows of latitude ``R / per_radius`` (in angle) high, sorted by row and then
  by longitude, so the points of a row between two longitudes are one ``searchsorted`` range.
* Batch scoring has far more customers than stores, so the stores are the queries over a grid
  of the customers: one pass then gives both counts, the stores' directly and each customer's
  from a difference array over the sorted customers (+1 where a counted run starts, -1 after it
  ends) plus the edge hits (``count(..., per_point=True)``).
* Around a query, the disk of radius ``R`` lies between two spherical caps: every point within
  ``theta_in = R / R_HI`` is within ``R``, and none beyond ``theta_out = R / R_LO`` is (the bounds
  of :mod:`geo_engine.geodesy`). For each row the longitudes a cap covers are an interval, from
  spherical trigonometry: the points of a row inside the inner cap's interval are counted whole
  (two binary searches); only those between it and the outer cap's interval are tested, by
  their ECEF chord, whose bounds (:func:`~geo_engine.geodesy.chord_inside`) leave a shell a
  fraction of a millimetre thick for the exact geodesic.

Everything is numpy over all queries, row offset by row offset. Queries whose outer cap comes
near a pole (beyond 85 degrees) or crosses the antimeridian are left to the caller (``handled``
is False for them): the k-d tree answers those few.

It knows points and a radius only: not stores, customers nor the database.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..geodesy import R_HI, R_LO, chord_inside, chord_reach, distances_m, ecef, radii_of_curvature
from .grids import expand_runs

__all__ = ["CapGrid"]

# rows across the radius: finer means fewer points tested at the edge, more rows per query.
# Many queries over few points (customers over stores): 3. Few queries over many points
# (stores over a chunk's customers): 8. (Measured in benchmarks/RESULTS.md.)
PER_RADIUS = 3
# where the points are dense, rows such that the points a row's quantisation leaves at the edge
# (about 4 R^2 density / per_radius) and the work of the rows (a few binary searches each, worth
# about ROW_COST point tests) balance
ROW_COST = 4.0
MAX_PER_RADIUS = 64
_MAX_LAT = 85.0
# a count is split over the cores from this many queries per core and this many points (each
# part sorts its queries and walks the rows: below, the split costs more than it saves)
PARALLEL_QUERIES = 1000
PARALLEL_POINTS = 20_000
_pool: ThreadPoolExecutor | None = None  # its own: the parts call distances_m, which has one
_EPS = 1e-9  # radians of slack: full intervals shrink by it, partial ones grow by it
_ROW = 512.0  # sort key: row * _ROW + (lon + 180), longitudes exact within a row
_MARGIN = 1e-6  # degrees: a sort key is rounded to ~1e-8 degrees; cuts keep this far off


def _half_width(phi: np.ndarray, phi0: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Half the longitude span (radians) of a cap of angle ``theta`` around latitude ``phi0``
    at latitude ``phi``; NaN where the parallel misses the cap."""
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (np.cos(theta) - np.sin(phi) * np.sin(phi0)) / (np.cos(phi) * np.cos(phi0))
    out = np.arccos(np.clip(c, -1.0, 1.0))
    out[~(c <= 1.0 + 1e-12)] = np.nan
    return out


class CapGrid:
    """Points sorted for counting within ``radius_m`` (see the module docstring).

    Parameters
    ----------
    lats, lons : the points, degrees
    radius_m : the geodesic radius the counts are for
    per_radius : rows across the radius (at least; more where the points are dense)
    """

    def __init__(self, lats, lons, radius_m: float, per_radius: int = PER_RADIUS):
        self.radius_m = float(radius_m)
        self.lats = np.asarray(lats, dtype=float)
        self.lons = np.asarray(lons, dtype=float)
        self.theta_in = self.radius_m / R_HI * (1 - 1e-9)
        self.theta_out = self.radius_m / R_LO * (1 + 1e-9) + 1e-12
        self.chord_in2 = chord_inside(self.radius_m) ** 2
        self.chord_out2 = chord_reach(self.radius_m) ** 2
        # finer where the points are dense: the edge's points, each tested, fall with the row
        self.per_radius = max(int(per_radius), self._dense_per_radius())
        self.row_h = max(math.degrees(self.theta_out) / self.per_radius, 1e-6)  # degrees
        keys = self._keys(self.lats, self.lons)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]  # NaN (a point without coordinates) sorts last: never counted
        # ECEF metres of the sorted points, a contiguous array per axis (gathers are the edge's cost)
        xyz = ecef(self.lats[self.order], self.lons[self.order])
        self.xyz = tuple(np.ascontiguousarray(c) for c in xyz.T)

    def _dense_per_radius(self) -> int:
        """Rows across the radius where the points are densest (the 90th percentile of
        radius-sized cells that hold any): the edge's points then cost about what the rows do."""
        finite = np.isfinite(self.lats) & np.isfinite(self.lons)
        if finite.sum() < 1000:
            return 1
        reach = max(math.degrees(self.theta_out), 1e-6)
        keys = np.floor((self.lats[finite] + 90.0) / reach).astype(np.int64) * \
            (math.ceil(360.0 / reach) + 2) + np.floor((self.lons[finite] + 180.0) / reach).astype(np.int64)
        _, per_cell = np.unique(keys, return_counts=True)
        dense = float(np.percentile(per_cell, 90))
        return int(min(MAX_PER_RADIUS, max(1, round(math.sqrt(dense / ROW_COST)))))

    def _rows(self, lats) -> np.ndarray:
        return np.floor((np.asarray(lats, dtype=float) + 90.0) / self.row_h)

    def _keys(self, lats, lons) -> np.ndarray:
        # no wrap at ±180: caps that cross it are left to the caller
        return self._rows(lats) * _ROW + (np.asarray(lons, dtype=float) + 180.0)

    def count(self, lats, lons, per_point: bool = False):
        """Return (counts, handled): for each query, the points within the radius (inclusive).

        Rows with ``handled`` False have count 0 and are for the caller to answer. With
        ``per_point``, return (counts, handled, per point): for each point, how many of the
        handled queries have it within the radius, from the same pass (whole runs through a
        difference array over the sorted points, edge points as they are tested). With few
        queries over many points (stores over customers) that gives both counts at once.

        A large count is split by queries over the machine's cores (numpy's binary searches and
        gathers run without the GIL): 1.45 times faster on two cores (benchmarks/RESULTS.md).
        """
        q_lat = np.asarray(lats, dtype=float).ravel()
        q_lon = np.asarray(lons, dtype=float).ravel()
        workers = min(os.cpu_count() or 1, len(q_lat) // PARALLEL_QUERIES)
        if workers < 2 or len(self.keys) < PARALLEL_POINTS:
            return self._count(q_lat, q_lon, per_point)
        global _pool
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count(), thread_name_prefix="count")
        # in key order, so each part's queries are neighbours and walk the same keys
        parts = np.array_split(np.argsort(self._keys(q_lat, q_lon), kind="stable"), workers)
        done = list(_pool.map(lambda p: self._count(q_lat[p], q_lon[p], per_point), parts))
        counts = np.zeros(len(q_lat), dtype=np.int64)
        handled = np.zeros(len(q_lat), dtype=bool)
        for p, got in zip(parts, done, strict=True):
            counts[p], handled[p] = got[0], got[1]
        if not per_point:
            return counts, handled
        return counts, handled, sum(got[2] for got in done)

    def _count(self, q_lat: np.ndarray, q_lon: np.ndarray, per_point: bool):
        """:meth:`count` in this thread."""
        n = len(q_lat)
        counts = np.zeros(n, dtype=np.int64)
        # per sorted point: a difference array for whole runs, plus edge hits
        diff = np.zeros(len(self.keys) + 1, dtype=np.int64) if per_point else None
        hits = np.zeros(len(self.keys), dtype=np.int64) if per_point else None

        def done(handled):
            if not per_point:
                return counts, handled
            by_point = np.empty(len(self.keys), dtype=np.int64)
            by_point[self.order] = np.cumsum(diff)[:-1] + hits
            return counts, handled, by_point
        if n == 0 or self.radius_m < 0:
            return done(np.ones(n, dtype=bool))
        handled = self._handled(q_lat, q_lon)
        qi = np.flatnonzero(handled)
        if len(qi) == 0 or len(self.keys) == 0:
            return done(handled)
        # queries in sort order: the binary searches below then walk the keys in order
        qi = qi[np.argsort(self._keys(q_lat[qi], q_lon[qi]), kind="stable")]
        qlat, qlon = q_lat[qi], q_lon[qi]
        phi0, lam = np.radians(qlat), qlon + 180.0
        th_in, th_out = self._local_caps(phi0)
        qxyz = tuple(np.ascontiguousarray(c) for c in ecef(qlat, qlon).T)
        sub = np.zeros(len(qi), dtype=np.int64)
        qrow = self._rows(qlat)
        phi_star = np.arcsin(np.clip(np.sin(phi0) / np.cos(th_out), -1, 1))  # widest latitude
        keys = self.keys
        # half-widths at row edge k (the south edge of row qrow + k), each found once
        edges: dict[tuple[int, bool], np.ndarray] = {}

        def width(k: int, inner: bool) -> np.ndarray:
            if (k, inner) not in edges:
                edges[k, inner] = _half_width(np.radians((qrow + k) * self.row_h - 90.0), phi0,
                                              th_in if inner else th_out)
            return edges[k, inner]
        for dy in range(-self.per_radius - 1, self.per_radius + 2):
            cut = self._cuts(dy, qrow, phi0, lam, th_in, th_out, phi_star, width)
            if cut is None:
                continue
            meets, base, w_out, w_in = cut
            o_lo = np.searchsorted(keys, base - w_out, "left")
            o_hi = np.searchsorted(keys, base + w_out, "right")
            full = np.flatnonzero(w_in > 0)
            i_lo, i_hi = o_hi.copy(), o_hi.copy()  # without an inner run: an empty one
            if len(full):  # whole runs inside the inner cap: every point counts
                i_lo[full] = np.searchsorted(keys, base[full] - w_in[full], "left")
                i_hi[full] = np.searchsorted(keys, base[full] + w_in[full], "right")
                sub[meets[full]] += i_hi[full] - i_lo[full]
                if per_point:
                    diff += np.bincount(i_lo[full], minlength=len(diff)) - \
                        np.bincount(i_hi[full], minlength=len(diff))
            # the edge: [o_lo, i_lo) and [i_hi, o_hi) (without an inner run, all of [o_lo, o_hi))
            starts = np.concatenate([o_lo, i_hi])
            lengths = np.concatenate([i_lo - o_lo, o_hi - i_hi])
            owners = np.concatenate([meets, meets])
            sub += self._edge(owners, starts, lengths, qxyz, qlat, qlon, len(qi), hits)
        counts[qi] = sub
        return done(handled)

    def _handled(self, q_lat: np.ndarray, q_lon: np.ndarray) -> np.ndarray:
        """The queries this grid answers: finite, and the outer cap clear of 85 degrees and of
        the antimeridian."""
        with np.errstate(invalid="ignore"):
            wide = np.degrees(np.arcsin(np.minimum(1.0, math.sin(self.theta_out) /
                                                   np.cos(np.radians(q_lat)))))
        return (np.abs(q_lat) + math.degrees(self.theta_out) < _MAX_LAT) & \
            (q_lon - wide > -180.0) & (q_lon + wide < 180.0) & np.isfinite(q_lat) & np.isfinite(q_lon)

    def _cuts(self, dy: int, qrow, phi0, lam, th_in, th_out, phi_star, width):
        """For the row ``dy`` from each query's own (``lam``: its longitude + 180, as in the sort
        key): which queries' outer caps meet it, the sort key of each one's centre on it, and
        the half-widths (degrees) of its outer and inner intervals there (the inner one -1 where
        the row is not wholly inside the inner cap); None when no cap meets the row."""
        row = qrow + dy
        a = np.radians(row * self.row_h - 90.0)  # the row's south and north edges
        b = np.radians((row + 1) * self.row_h - 90.0)
        # outer cap: the widest longitude half-span over the band (cut to the cap's reach)
        lo, hi = np.maximum(a, phi0 - th_out), np.minimum(b, phi0 + th_out)
        meets = np.flatnonzero(lo <= hi)
        if not len(meets):
            return None
        lo, hi, a_m, b_m = lo[meets], hi[meets], a[meets], b[meets]
        # an edge cut to the cap's reach is its tip, where the half-width is 0
        w_out = np.fmax(np.where(lo == a_m, width(dy, False)[meets], 0.0),
                        np.where(hi == b_m, width(dy + 1, False)[meets], 0.0))
        ps = phi_star[meets]
        at_star = (ps >= lo) & (ps <= hi)
        star = meets[at_star]
        w_out[at_star] = np.fmax(w_out[at_star], _half_width(ps[at_star], phi0[star], th_out[star]))
        w_out = np.degrees(np.nan_to_num(w_out, nan=0.0) + _EPS) + _MARGIN
        # inner cap: the narrowest half-span over the band (the ends: it has one maximum)
        w_in = np.degrees(np.fmin(width(dy, True)[meets], width(dy + 1, True)[meets]) - _EPS)
        p0, t_in = phi0[meets], th_in[meets]
        whole_band = (p0 - t_in + _EPS <= a_m) & (b_m <= p0 + t_in - _EPS)
        w_in = np.where(whole_band & np.isfinite(w_in), w_in - _MARGIN, -1.0)
        return meets, row[meets] * _ROW + lam[meets], w_out, w_in

    def _local_caps(self, phi0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query (latitude ``phi0``, radians), the inner and outer caps' angles from the radii
        of curvature over the latitudes its disk can reach, rather than over the whole ellipsoid:
        a geodesic of length at most ``R`` stays within ``R / R_LO`` of the query's latitude, and
        along it the line element lies between the least ``M`` and the greatest ``N`` there. At
        40 degrees that makes the shell between the caps 0.4 % of the radius, not 1 %."""
        reach = self.theta_out
        lo, hi = np.abs(phi0 - reach), np.abs(phi0 + reach)
        nearest_eq = np.where((phi0 - reach) * (phi0 + reach) <= 0, 0.0, np.minimum(lo, hi))
        m_min, _ = radii_of_curvature(nearest_eq)
        _, n_max = radii_of_curvature(np.minimum(np.maximum(lo, hi), math.pi / 2))
        th_in = self.radius_m / n_max * (1 - 1e-9)
        th_out = np.minimum(self.radius_m / m_min * (1 + 1e-9) + 1e-12, reach)
        return th_in, th_out

    def _edge(self, qsel, starts, lengths, qxyz, q_lat, q_lon, nq,
              hits: np.ndarray | None = None) -> np.ndarray:
        """Counts (over all nq queries) from the points of runs of sorted slots, each tested:
        by ECEF chord, and by geodesic in the hair-thin shell the chord leaves undecided."""
        owner, slot = expand_runs(starts, lengths)
        if len(slot) == 0:
            return np.zeros(nq, dtype=np.int64)
        q = qsel[owner]
        c2 = None
        for axis, q_axis in zip(self.xyz, qxyz, strict=True):
            d = axis[slot]
            d -= q_axis[q]
            d *= d
            c2 = d if c2 is None else np.add(c2, d, out=c2)
        keep = c2 <= self.chord_in2
        maybe = c2 <= self.chord_out2
        if np.count_nonzero(maybe) > np.count_nonzero(keep):  # rare: a point in the shell
            shell = np.flatnonzero(maybe & ~keep)
            p = self.order[slot[shell]]
            d = distances_m(q_lat[q[shell]], q_lon[q[shell]], self.lats[p], self.lons[p])
            keep[shell] = d <= self.radius_m
        if hits is not None:
            hits += np.bincount(slot[keep], minlength=len(hits))
        return np.bincount(q[keep], minlength=nq)
