"""Exact counts of points within a geodesic radius, without listing most of the pairs.

Batch scoring asks, for every customer, how many stores lie within ``R`` (5 km by default), and
for every store how many customers do. In a dense city that is hundreds of pairs a customer; a
k-d tree lists them all. :class:`CapGrid` counts whole grid cells instead:

* The points go in square lon/lat cells of ``R / per_radius`` (in angle), sorted by cell, so
  the points of a run of cells along a row are one ``searchsorted`` range.
* Batch scoring has far more customers than stores, so the stores are the queries over a grid
  of the customers: one pass then gives both counts, the stores' directly and each customer's
  from a difference array over the sorted customers (+1 where a run of whole cells starts, -1
  after it ends) plus the edge hits (``count(..., per_point=True)``).
* Around a query, the disk of radius ``R`` lies between two spherical caps: every point within
  ``theta_in = R / R_HI`` is within ``R``, and none beyond ``theta_out = R / R_LO`` is (the bounds
  of :mod:`geo_engine.geodesy`). For each row of cells the longitudes a cap covers are an
  interval, from spherical trigonometry: cells inside the inner cap are counted whole (two
  binary searches); only the cells along the edge that meet the outer cap have their points
  tested, by chord, and by geodesic in the thin shell between the caps.

Everything is numpy over all queries, row offset by row offset. Queries whose outer cap comes
near a pole (beyond 85 degrees) or crosses the antimeridian are left to the caller (``handled``
is False for them): the k-d tree answers those few.

It knows points and a radius only: not stores, customers nor the database.
"""

from __future__ import annotations

import math

import numpy as np

from ..geodesy import R_HI, R_LO, distances_m, unit_vectors
from .grids import expand_runs

__all__ = ["CapGrid"]

# cells across the radius: finer means fewer points tested at the edge, more rows per query.
# Many queries over few points (customers over stores): 3. Few queries over many points
# (stores over a chunk's customers): 8. (Measured in benchmarks/RESULTS.md.)
PER_RADIUS = 3
EDGE_POINTS_PER_CELL = 4.0  # where the points are dense, about this many a cell
MAX_PER_RADIUS = 48  # beyond, the rows a query walks cost more than the points they spare
_MAX_LAT = 85.0
_EPS = 1e-9  # radians of slack: full intervals shrink by it, partial ones grow by it


def _half_width(phi: np.ndarray, phi0: np.ndarray, theta: float) -> np.ndarray:
    """Half the longitude span (radians) of a cap of angle ``theta`` around latitude ``phi0``
    at latitude ``phi``; NaN where the parallel misses the cap."""
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (math.cos(theta) - np.sin(phi) * np.sin(phi0)) / (np.cos(phi) * np.cos(phi0))
    out = np.arccos(np.clip(c, -1.0, 1.0))
    out[~(c <= 1.0 + 1e-12)] = np.nan
    return out


class CapGrid:
    """Points bucketed for counting within ``radius_m`` (see the module docstring).

    Parameters
    ----------
    lats, lons : the points, degrees
    radius_m : the geodesic radius the counts are for
    per_radius : cells across the radius
    """

    def __init__(self, lats, lons, radius_m: float, per_radius: int = PER_RADIUS):
        self.radius_m = float(radius_m)
        self.lats = np.asarray(lats, dtype=float)
        self.lons = np.asarray(lons, dtype=float)
        self.theta_in = self.radius_m / R_HI * (1 - 1e-9)
        self.theta_out = self.radius_m / R_LO * (1 + 1e-9) + 1e-12
        # finer where the points are dense: the edge's points, each tested, fall with the cell
        self.per_radius = max(int(per_radius), self._dense_per_radius())
        self.cell = max(math.degrees(self.theta_out) / self.per_radius, 1e-6)  # degrees
        self.ncol = math.ceil(360.0 / self.cell) + 2
        keys = self._keys(self.lats, self.lons)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]
        self.xyz = unit_vectors(self.lats[self.order], self.lons[self.order])

    def _dense_per_radius(self) -> int:
        """Cells across the radius that put about :data:`EDGE_POINTS_PER_CELL` points in a cell
        where the points are densest (the 90th percentile of radius-sized cells that hold any):
        a dense city's points are then tested a few per edge cell, not hundreds."""
        finite = np.isfinite(self.lats) & np.isfinite(self.lons)
        if finite.sum() < 1000:
            return 1
        reach = max(math.degrees(self.theta_out), 1e-6)
        keys = np.floor((self.lats[finite] + 90.0) / reach).astype(np.int64) * \
            (math.ceil(360.0 / reach) + 2) + np.floor((self.lons[finite] + 180.0) / reach).astype(np.int64)
        _, per_cell = np.unique(keys, return_counts=True)
        dense = float(np.percentile(per_cell, 90))
        return int(min(MAX_PER_RADIUS, max(1, round(math.sqrt(dense / EDGE_POINTS_PER_CELL)))))

    def _keys(self, lats, lons) -> np.ndarray:
        # no wrap at ±180: caps that cross it are left to the caller
        return np.floor((lats + 90.0) / self.cell).astype(np.int64) * self.ncol + \
            np.floor((lons + 180.0) / self.cell).astype(np.int64)

    def count(self, lats, lons, per_point: bool = False):
        """Return (counts, handled): for each query, the points within the radius (inclusive).

        Rows with ``handled`` False have count 0 and are for the caller to answer. With
        ``per_point``, return (counts, handled, per point): for each point, how many of the
        handled queries have it within the radius, from the same pass (whole cells through a
        difference array over the sorted points, edge points as they are tested). With few
        queries over many points (stores over customers) that gives both counts at once.
        """
        q_lat = np.asarray(lats, dtype=float)
        q_lon = np.asarray(lons, dtype=float)
        n = len(q_lat)
        counts = np.zeros(n, dtype=np.int64)
        # per sorted point: a difference array for whole cells, plus edge hits
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
        th_in, th_out, cell = self.theta_in, self.theta_out, self.cell
        phi0 = np.radians(q_lat)
        reach_deg = math.degrees(th_out)
        with np.errstate(invalid="ignore"):
            wide = np.degrees(np.arcsin(np.minimum(1.0, math.sin(th_out) / np.cos(phi0))))
        handled = (np.abs(q_lat) + reach_deg < _MAX_LAT) & (q_lon - wide > -180.0) & \
            (q_lon + wide < 180.0) & np.isfinite(q_lat) & np.isfinite(q_lon)
        qi = np.flatnonzero(handled)
        if len(qi) == 0 or len(self.keys) == 0:
            return done(handled)
        # queries in cell order: the binary searches below then walk the keys in order
        qi = qi[np.argsort(self._keys(q_lat[qi], q_lon[qi]), kind="stable")]
        phi0, lam_deg = phi0[qi], q_lon[qi]
        qxyz = unit_vectors(q_lat[qi], lam_deg)
        sub = np.zeros(len(qi), dtype=np.int64)
        qrow = np.floor((q_lat[qi] + 90.0) / cell).astype(np.int64)
        phi_star = np.arcsin(np.clip(np.sin(phi0) / math.cos(th_out), -1, 1))  # widest latitude
        chord_in2 = (2 * math.sin(th_in / 2)) ** 2
        chord_out2 = (2 * math.sin(th_out / 2)) ** 2
        keys, ncol = self.keys, self.ncol
        span = self.per_radius + 1
        # half-widths at row edge k (the south edge of row qrow + k), each found once
        edges: dict[tuple[int, float], np.ndarray] = {}

        def width(k: int, theta: float) -> np.ndarray:
            if (k, theta) not in edges:
                edges[k, theta] = _half_width(np.radians((qrow + k) * cell - 90.0), phi0, theta)
            return edges[k, theta]
        for dy in range(-span, span + 1):
            row = qrow + dy
            a = np.radians(row * cell - 90.0)  # the row's south and north edges
            b = np.radians((row + 1) * cell - 90.0)
            # outer cap: the widest longitude half-span over the band (cut to the cap's reach)
            lo, hi = np.maximum(a, phi0 - th_out), np.minimum(b, phi0 + th_out)
            meets = lo <= hi
            if not meets.any():
                continue
            # an edge cut to the cap's reach is its tip, where the half-width is 0
            w_out = np.fmax(np.where(lo == a, width(dy, th_out), 0.0),
                            np.where(hi == b, width(dy + 1, th_out), 0.0))
            at_star = (phi_star >= lo) & (phi_star <= hi)
            w_out[at_star] = np.fmax(w_out[at_star],
                                     _half_width(phi_star[at_star], phi0[at_star], th_out))
            w_out = np.degrees(np.nan_to_num(w_out, nan=0.0) + _EPS)
            # inner cap: the narrowest half-span over the band (the ends: it has one maximum)
            w_in = np.degrees(np.fmin(width(dy, th_in), width(dy + 1, th_in)) - _EPS)
            whole_band = (phi0 - th_in + _EPS <= a) & (b <= phi0 + th_in - _EPS)
            w_in = np.where(whole_band & np.isfinite(w_in), w_in, -1.0)
            p_lo = np.floor((lam_deg - w_out + 180.0) / cell).astype(np.int64)
            p_hi = np.floor((lam_deg + w_out + 180.0) / cell).astype(np.int64)
            f_lo = np.ceil((lam_deg - w_in + 180.0) / cell).astype(np.int64)
            f_hi = np.floor((lam_deg + w_in + 180.0) / cell).astype(np.int64) - 1
            full = (w_in >= 0) & (f_lo <= f_hi) & meets
            base = row * ncol
            if full.any():  # cells inside the inner cap: every point counts
                fi = np.flatnonzero(full)
                s_hi = np.searchsorted(keys, base[fi] + f_hi[fi], "right")
                s_lo = np.searchsorted(keys, base[fi] + f_lo[fi], "left")
                sub[fi] += s_hi - s_lo
                if per_point:
                    diff += np.bincount(s_lo, minlength=len(diff)) - \
                        np.bincount(s_hi, minlength=len(diff))
            # the edge: [p_lo, f_lo - 1] and [f_hi + 1, p_hi], or all of [p_lo, p_hi]
            left_hi = np.where(full, f_lo - 1, p_hi)
            right_lo = np.where(full, f_hi + 1, p_hi + 1)
            for e_lo, e_hi in ((p_lo, left_hi), (right_lo, p_hi)):
                use = meets & (e_lo <= e_hi)
                if use.any():
                    ui = np.flatnonzero(use)
                    sub += self._edge(ui, base[ui] + e_lo[ui], base[ui] + e_hi[ui], qxyz,
                                      q_lat[qi], q_lon[qi], len(qi), chord_in2, chord_out2, hits)
        counts[qi] = sub
        return done(handled)

    def _ranges(self, k_lo: np.ndarray, k_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For key ranges, which range each point slot belongs to and the slots themselves."""
        start = np.searchsorted(self.keys, k_lo, "left")
        end = np.searchsorted(self.keys, k_hi, "right")
        return expand_runs(start, end - start)

    def _edge(self, qsel, k_lo, k_hi, qxyz, q_lat, q_lon, nq, chord_in2, chord_out2,
              hits: np.ndarray | None = None) -> np.ndarray:
        """Counts (over all nq queries) from the points of edge cells, tested one by one."""
        owner, slot = self._ranges(k_lo, k_hi)
        if len(slot) == 0:
            return np.zeros(nq, dtype=np.int64)
        q = qsel[owner]
        c2 = ((self.xyz[slot] - qxyz[q]) ** 2).sum(axis=1)
        keep = c2 <= chord_in2
        shell = np.flatnonzero((c2 > chord_in2) & (c2 <= chord_out2))
        if len(shell):
            p = self.order[slot[shell]]
            d = distances_m(q_lat[q[shell]], q_lon[q[shell]], self.lats[p], self.lons[p])
            keep[shell] = d <= self.radius_m
        if hits is not None:
            hits += np.bincount(slot[keep], minlength=len(hits))
        return np.bincount(q[keep], minlength=nq)
