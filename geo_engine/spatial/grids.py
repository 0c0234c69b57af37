"""Lon/lat grids in plain Python for the one-point queries of a ping.

A numpy or k-d tree call on one point costs more in call overhead alone than the work
(``benchmarks/RESULTS.md``, bench_ping). A ping asks about one point, so for it a dict of grid
cells answers in a few microseconds; the arrays stay for bulk queries. Each grid proposes
candidates or says it cannot (near a pole, a very wide reach, nothing near): the caller then asks
the tree, so answers never depend on which path ran.

* :class:`PointGrid`: stores in cells, for the nearest store. A cell ring search stops when the
  geodesic to the best store is below a lower bound on the distance to anything outside the
  cells searched (bounds as in :mod:`geo_engine.geodesy`: ``R_LO * theta <= s``).
* :class:`BoxGrid`: the lon/lat boxes of geofence parts, for candidates whose box meets a
  query box.
"""

from __future__ import annotations

import math

import numpy as np
from pykdtree.kdtree import KDTree

from ..geodesy import GEOD, R_HI, R_LO, unit_vector, unit_vectors

__all__ = ["BoxGrid", "PointGrid", "expand_runs"]


def expand_runs(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every index of the runs ``starts[i] .. starts[i] + lengths[i] - 1``, with its run ``i``:
    ``(run, index)`` arrays, run by run (the vectorized form of a loop over ranges)."""
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 0)
    run = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.cumsum(lengths) - lengths
    return run, np.asarray(starts, dtype=np.int64)[run] + np.arange(len(run)) - offsets[run]


def _cell_keys(lats, lons, cell: float, ncol: int) -> np.ndarray:
    """Row-major cell numbers of lon/lat points in square cells of ``cell`` degrees (the
    longitude wrapped into ``ncol`` columns)."""
    return np.floor((np.asarray(lats) + 90) / cell).astype(np.int64) * ncol + \
        np.floor((np.asarray(lons) + 180) / cell).astype(np.int64) % ncol


_D2R = math.pi / 180.0
_RATIO = R_HI / R_LO * (1 + 1e-9)  # chord-angle ratio that a geodesic ranking can overturn
_RATIO2 = _RATIO * _RATIO * (1 + 1e-9)
_MAX_LAT = 80.0  # beyond this the cells are slivers: the tree answers
_MAX_RING = 3
_MAX_LISTED = 16  # a cell whose list would be longer keeps the ring search


def _pick_cell(lats: np.ndarray, lons: np.ndarray, per_cell: float) -> float:
    """The largest cell size (degrees) whose cells hold at most ``per_cell`` points on average,
    as a point sees it (weighted by points: dense city centres decide, not empty country)."""
    for cell in (5.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002):
        counts = np.unique(_cell_keys(lats, lons, cell, round(360 / cell)), return_counts=True)[1]
        if (counts.astype(float) ** 2).sum() / len(lats) <= per_cell:
            return cell
    return 0.002


class PointGrid:
    """Points in lon/lat cells; :meth:`nearest` is exact or returns None (ask the tree).

    Parameters
    ----------
    lats, lons : arrays of the points (positions in these arrays are what is returned)
    listed : also list, for each cell with points and its neighbours, the points that can be
        nearest from it (``_candidate_lists``): queries there then skip the ring search. It
        takes seconds and tens of MB more per 100k city points (``benchmarks/RESULTS.md``): a
        server builds it, a one-off query does not.
    """

    def __init__(self, lats: np.ndarray, lons: np.ndarray, listed: bool = False):
        lats = np.asarray(lats, dtype=float)
        lons = np.asarray(lons, dtype=float)
        self.cell = _pick_cell(lats, lons, 3.0) if len(lats) else 1.0
        self.ncol = round(360 / self.cell)
        keys = _cell_keys(lats, lons, self.cell, self.ncol)
        order = np.argsort(keys, kind="stable")
        k = keys[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        ends = np.r_[starts[1:], len(k)]
        xyz = unit_vectors(lats[order], lons[order]).tolist()
        rows = [(x, y, z, p) for (x, y, z), p in zip(xyz, order.tolist(), strict=True)]
        self._lats, self._lons = lats.tolist(), lons.tolist()
        self._cells = {int(k[s]): tuple(rows[s:e]) for s, e in zip(starts, ends, strict=True)}
        self.listed = listed
        self._near: dict[int, tuple] = {}
        if listed and len(lats):
            by_point: list = [None] * len(rows)
            for row in rows:
                by_point[row[3]] = row
            self._near = self._candidate_lists(lats, lons, np.unique(keys), by_point)

    def _candidate_lists(self, lats: np.ndarray, lons: np.ndarray, keys: np.ndarray,
                         by_point: list) -> dict[int, tuple]:
        """Cell -> every point that can be the nearest to some point of that cell, for the cells
        holding points and their neighbours (where queries come), when there are few.

        For a query ``q`` in a cell with centre ``c`` and corner angle ``rho``, and ``p1`` the
        point nearest to ``c`` (angle ``t1``), the nearest point ``p*`` satisfies
        ``R_LO (angle(c, p*) - rho) <= s(q, p*) <= s(q, p1) <= R_HI (rho + t1)``, so
        ``angle(c, p*) <= R_HI / R_LO (rho + t1) + rho``: every point within that angle of the
        centre is listed (ties included). A cell with more than ``_MAX_LISTED`` is left out.
        """
        cell, ncol = self.cell, self.ncol
        r0, c0 = keys // ncol, keys % ncol
        dr, dc = (a.ravel() for a in np.meshgrid([-1, 0, 1], [-1, 0, 1]))
        r = (r0[:, None] + dr).ravel()
        c = ((c0[:, None] + dc) % ncol).ravel()
        lat_lo, lat_hi = r * cell - 90, (r + 1) * cell - 90
        ok = (lat_lo >= -_MAX_LAT - cell) & (lat_hi <= _MAX_LAT + cell)
        cells = np.unique(r[ok] * ncol + c[ok])
        if not len(cells):  # every point too near a pole: the tree answers there
            return {}
        r, c = cells // ncol, cells % ncol
        lat_lo, lon_lo = r * cell - 90, c * cell - 180
        lat_mid, lon_mid = lat_lo + cell / 2, lon_lo + cell / 2
        centre = unit_vectors(lat_mid, lon_mid)
        rho = np.zeros(len(cells))
        for la, lo in [(lat_lo, lon_lo), (lat_lo, lon_lo + cell), (lat_lo + cell, lon_lo),
                       (lat_lo + cell, lon_lo + cell), (lat_lo, lon_mid), (lat_lo + cell, lon_mid),
                       (lat_mid, lon_lo), (lat_mid, lon_lo + cell)]:  # corners and edge midpoints
            chord = np.linalg.norm(unit_vectors(la, lo) - centre, axis=1)
            rho = np.maximum(rho, 2 * np.arcsin(np.minimum(1.0, chord / 2)))
        rho *= 1.01  # the farthest point of a cell is a corner; a margin all the same
        tree = KDTree(unit_vectors(lats, lons))
        k = min(_MAX_LISTED + 1, len(lats))
        chord, idx = tree.query(np.ascontiguousarray(centre), k=k)
        chord, idx = chord.reshape(len(cells), k), idx.reshape(len(cells), k)
        t1 = 2 * np.arcsin(np.minimum(1.0, chord[:, 0] / 2))
        reach = np.minimum(np.pi, _RATIO * (rho + t1) + rho) * (1 + 1e-9) + 1e-12
        limit = 2 * np.sin(reach / 2)
        inside = chord <= limit[:, None]
        complete = ~inside[:, -1] if k > _MAX_LISTED else np.ones(len(cells), dtype=bool)
        counts = inside.sum(axis=1)[complete]  # the tree lists each row nearest first
        flat = [by_point[i] for i in idx[complete][inside[complete]].tolist()]
        ends = np.cumsum(counts).tolist()
        starts = [0, *ends[:-1]]
        return {key: tuple(flat[a:b]) for key, a, b in
                zip(cells[complete].tolist(), starts, ends, strict=True)}

    def _geodesic_best(self, lat: float, lon: float, found: list[tuple[float, int]],
                       best: float) -> tuple[float, int]:
        """``(geodesic metres, position)`` of the nearest of ``found`` ((chord squared,
        position) pairs, ``best`` their least chord squared): only those whose chord a geodesic
        ranking can still put first are measured."""
        limit = (2 * math.sin(min(math.pi, 2 * math.asin(min(1.0, math.sqrt(best) / 2)) * _RATIO)
                              / 2)) ** 2 + 1e-15
        inv, la, lo = GEOD.inv, self._lats, self._lons
        return min((inv(lon, lat, lo[p], la[p])[2], p) for c2, p in found if c2 <= limit)

    def has_list(self, lat: float, lon: float) -> bool:
        """Whether the cell holding (lat, lon) lists the points that can be nearest from it
        (:meth:`nearest` then needs no ring search)."""
        iy = math.floor((lat + 90) / self.cell)
        ix = math.floor((lon + 180) / self.cell)
        return iy * self.ncol + ix % self.ncol in self._near

    def nearest(self, lat: float, lon: float) -> tuple[int, float] | None:
        """``(position, geodesic metres)`` of the nearest point, ties by position; or None."""
        if abs(lat) > _MAX_LAT or not self._cells:
            return None
        cell, ncol, cells = self.cell, self.ncol, self._cells
        qx, qy, qz = unit_vector(lat, lon)
        iy = math.floor((lat + 90) / cell)
        ix = math.floor((lon + 180) / cell)
        listed = self._near.get(iy * ncol + ix % ncol)
        if listed is not None:  # the points that can be nearest from this cell: no ring search
            best = math.inf
            scored = []
            for px, py, pz, pos in listed:
                dx, dy, dz = px - qx, py - qy, pz - qz
                c2 = dx * dx + dy * dy + dz * dz
                scored.append((c2, pos))
                if c2 < best:
                    best = c2
            d, pos = self._geodesic_best(lat, lon, scored, best)
            return pos, d
        cphi = math.cos(lat * _D2R)
        found: list[tuple[float, int]] = []  # (chord squared, position), maybe nearest
        best = keep = math.inf
        margin = 0.0
        for r in range(_MAX_RING + 1):
            if (2 * r + 1) * cell >= 180:
                return None
            for row in range(iy - r, iy + r + 1):
                edge = row == iy - r or row == iy + r
                for col in (range(ix - r, ix + r + 1) if edge else (ix - r, ix + r)):
                    for px, py, pz, pos in cells.get(row * ncol + col % ncol, ()):
                        dx, dy, dz = px - qx, py - qy, pz - qz
                        c2 = dx * dx + dy * dy + dz * dz
                        if c2 <= keep:  # chord(R theta) <= R chord(theta): a superset
                            found.append((c2, pos))
                            if c2 < best:
                                best, keep = c2, c2 * _RATIO2
            # the searched block: rows iy-r..iy+r, cols ix-r..ix+r; any point outside is at
            # least this far (angle), the least of the distances to its four edges
            lat_lo = (iy - r) * cell - 90
            lat_hi = (iy + r + 1) * cell - 90
            if lat_lo <= -90 or lat_hi >= 90:
                return None
            dlam = min(lon + 180 - (ix - r) * cell, (ix + r + 1) * cell - (lon + 180)) * _D2R
            margin = min((lat - lat_lo) * _D2R, (lat_hi - lat) * _D2R,
                         math.asin(min(1.0, cphi * math.sin(min(dlam, math.pi / 2)))))
            if found and 2 * math.asin(min(1.0, math.sqrt(best) / 2)) * _RATIO < margin:
                break
        if not found:
            return None
        d, pos = self._geodesic_best(lat, lon, found, best)
        if d >= R_LO * margin * (1 - 1e-9) - 1e-6:
            return None  # something outside the block might be nearer
        return pos, d


class BoxGrid:
    """Lon/lat boxes in cells; :meth:`query` gives the owners of boxes meeting a query box.

    Parameters
    ----------
    boxes : (n, 4) array of ``min_lon, min_lat, max_lon, max_lat`` (none crossing ±180)
    owners : what each box belongs to (an int per box)
    """

    MAX_CELLS_PER_BOX = 64  # boxes wider than this go in a list every query looks at
    MAX_WIDE = 64  # more wide boxes than this and the grid declines every query
    MAX_QUERY_CELLS = 36

    def __init__(self, boxes: np.ndarray, owners: np.ndarray):
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        owners = np.asarray(owners, dtype=np.int64)
        extent = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        self.cell = float(np.clip(np.median(extent), 0.002, 1.0)) if len(boxes) else 1.0
        self.ncol = math.ceil(360 / self.cell)
        ix0, iy0 = self._col(boxes[:, 0]), self._row(boxes[:, 1])
        ix1, iy1 = self._col(boxes[:, 2]), self._row(boxes[:, 3])
        nx, ny = ix1 - ix0 + 1, iy1 - iy0 + 1
        wide = nx * ny > self.MAX_CELLS_PER_BOX
        self._wide = sorted(set(owners[wide].tolist()))
        self._wide_boxes = np.flatnonzero(wide)  # each tested against every point, in bulk
        self.usable = len(self._wide) <= self.MAX_WIDE
        keep = np.flatnonzero(~wide)
        n = (nx * ny)[keep]
        box_of, k = expand_runs(np.zeros(len(n), dtype=np.int64), n)  # k: index within a box
        rep = keep[box_of]
        keys = (iy0[rep] + k // nx[rep]) * self.ncol + ix0[rep] + k % nx[rep]
        order = np.argsort(keys, kind="stable")
        keys, rep = keys[order], rep[order]
        # each cell lists its boxes whole, so a query drops the ones its box misses at once
        who = list(zip(*boxes[rep].T.tolist(), owners[rep].tolist(), strict=True))
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])[:len(keys)]
        ends = np.r_[starts[1:], len(keys)][:len(starts)]
        self._cells = {int(keys[s]): tuple(who[s:e]) for s, e in zip(starts, ends, strict=True)}
        # the same as arrays, for many points at once: cell keys, their runs, box per entry
        self._ukeys, self._ustart, self._uend = keys[starts], starts, ends
        self._boxes, self._entry_box, self._owners = boxes, rep, owners

    def query_points(self, lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(point, owner)`` pairs, unique, for every box holding a point (edges inclusive);
        None when too many wide boxes make the grid unfit (use a tree). The few wide ones (a
        geofence by a pole spans every longitude) are each tested against every point."""
        if not self.usable:
            return None
        keys = self._row(lats) * self.ncol + self._col(lons)
        at = np.searchsorted(self._ukeys, keys)
        at = np.minimum(at, max(len(self._ukeys) - 1, 0))
        hit = np.flatnonzero((len(self._ukeys) > 0) & (self._ukeys[at] == keys)) if len(keys) \
            else np.zeros(0, dtype=np.int64)
        start, length = self._ustart[at[hit]], self._uend[at[hit]] - self._ustart[at[hit]]
        run, entry = expand_runs(start, length)
        pts = hit[run]
        box = self._entry_box[entry]
        b = self._boxes[box]
        x, y = lons[pts], lats[pts]
        inside = (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])
        found = [np.column_stack([pts[inside], self._owners[box[inside]]])]
        for w in self._wide_boxes.tolist():
            x0, y0, x1, y1 = self._boxes[w]
            p = np.flatnonzero((y0 <= lats) & (lats <= y1) & (x0 <= lons) & (lons <= x1))
            found.append(np.column_stack([p, np.full(len(p), self._owners[w])]))
        pairs = np.unique(np.concatenate(found), axis=0)
        return pairs[:, 0], pairs[:, 1]

    def _col(self, lon):
        return np.minimum(np.floor((np.asarray(lon) + 180) / self.cell).astype(np.int64), self.ncol - 1)

    def _row(self, lat):
        return np.floor((np.asarray(lat) + 90) / self.cell).astype(np.int64)

    def query(self, boxes: list[tuple[float, float, float, float]]) -> set[int] | None:
        """Owners of every box meeting one of ``boxes`` (and all wide ones); None: use a tree."""
        if not self.usable:
            return None
        cell, ncol, cells = self.cell, self.ncol, self._cells
        out = set(self._wide)
        n = 0
        for x0, y0, x1, y1 in boxes:
            c0 = min(math.floor((x0 + 180) / cell), ncol - 1)
            c1 = min(math.floor((x1 + 180) / cell), ncol - 1)
            r0, r1 = math.floor((y0 + 90) / cell), math.floor((y1 + 90) / cell)
            n += (c1 - c0 + 1) * (r1 - r0 + 1)
            if n > self.MAX_QUERY_CELLS:
                return None
            for row in range(r0, r1 + 1):
                for col in range(c0, c1 + 1):
                    for bx0, by0, bx1, by1, owner in cells.get(row * ncol + col, ()):
                        if bx0 <= x1 and x0 <= bx1 and by0 <= y1 and y0 <= by1:
                            out.add(owner)
        return out
