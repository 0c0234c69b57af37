"""GeoJSON geometries to engine shapes, in bulk: check and build every geometry of a file at once.

A file of 100,000 geofences is checked in one array pass, not 100,000 small ones: a
:class:`ShapeBatch` collects the positions of every Point, Polygon and MultiPolygon (checking
their structure in plain Python as they come), then :meth:`ShapeBatch.build` checks ranges,
NaN, ring closure, width and validity over all of them with NumPy and shapely's vectorized
functions, and builds every polygon with two calls (``linearrings``, ``polygons``). Only
geometries that cross the antimeridian (rare) or have a problem take the per-geometry path, for
the split or for a message that says where.

It knows geometry, not files, campaigns or the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon

from ..errors import InvalidGeometry
from ..model import Geofence
from ..polygons import explain_invalid, polygon_parts

__all__ = ["Shape", "ShapeBatch", "build_geofences", "check_lonlat", "geofence_from_geometry"]

# Web Mercator's extent: a coordinate inside it but outside lon/lat ranges is probably metres.
_MERCATOR_X, _MERCATOR_Y = 20037508.35, 20048966.11
_NUMBER = (int, float)


@dataclass(frozen=True)
class Shape:
    """A built geometry: a point (``lon``, ``lat``) or polygon parts with boundary edges."""

    lon: float | None = None
    lat: float | None = None
    parts: tuple[Polygon, ...] = ()
    edges: np.ndarray | None = None
    geometry: dict[str, Any] | None = None


def check_lonlat(arr: np.ndarray, what: str) -> None:
    """Raise InvalidGeometry when positions are not finite WGS84 lon/lat, saying what they look like."""
    bad_num = ~np.isfinite(arr).all(axis=1)
    if bad_num.any():
        i = int(np.argmax(bad_num))
        raise InvalidGeometry(f"{what}, position {i}: coordinates must be finite numbers, got "
                              f"{arr[i, 0]}, {arr[i, 1]}")
    lon, lat = arr[:, 0], arr[:, 1]
    out = (np.abs(lon) > 180) | (np.abs(lat) > 90)
    if not out.any():
        return
    i = int(np.argmax(out))
    x, y = float(lon[i]), float(lat[i])
    if (np.abs(arr) > 1000).any() and (np.abs(lon) <= _MERCATOR_X).all() and \
            (np.abs(lat) <= _MERCATOR_Y).all():
        raise InvalidGeometry(f"{what}, position {i}: [{x}, {y}] is not lon/lat; it looks like Web "
                              "Mercator (EPSG:3857) metres: export as WGS84 (EPSG:4326) or add a "
                              "\"crs\" member naming EPSG:3857")
    if abs(x) <= 90 and abs(y) <= 180:
        raise InvalidGeometry(f"{what}, position {i}: [{x}, {y}] has latitude {y} outside [-90, 90]; "
                              "it looks like [lat, lon]: GeoJSON positions are [lon, lat], so swap "
                              "them")
    raise InvalidGeometry(f"{what}, position {i}: [{x}, {y}] is outside WGS84: lon must be in "
                          "[-180, 180] and lat in [-90, 90]")


@dataclass
class _Item:
    kind: str  # "point" or "polygonal"
    geom_type: str
    first_ring: int  # rings (a point is one ring of one position) in the batch
    ring_count: int
    polygon_rings: list[int]  # rings per polygon, for Polygon/MultiPolygon
    coordinates: Any  # as given, reused when nothing changed
    plain: bool  # every position exactly [lon, lat]: the given coordinates can be kept


class ShapeBatch:
    """Collect geometries with :meth:`add`, then :meth:`build` them all at once."""

    def __init__(self) -> None:
        self._changed = False  # positions were reprojected: rebuild the GeoJSON from them
        self._coords: list[float] = []
        self._ring_start: list[int] = []
        self._ring_len: list[int] = []
        self._items: list[_Item] = []

    def __len__(self) -> int:
        return len(self._items)

    # --- collecting (structure only, plain Python) ---------------------------------------------

    def _ring(self, value: Any, what: str, min_count: int) -> bool:
        if type(value) is not list:
            raise InvalidGeometry(f"{what} must be a list of [lon, lat] positions")
        if len(value) < min_count:
            n = len(value)
            raise InvalidGeometry(f"{what} has {n} position{'s' if n != 1 else ''}; it needs at "
                                  f"least {min_count}")
        flat: list[float] = []
        plain = True
        for pos in value:
            # the common case, [lon, lat] of plain numbers, costs one type check per value
            if type(pos) is list and len(pos) == 2 and type(pos[0]) in _NUMBER and \
                    type(pos[1]) in _NUMBER:
                flat += pos
            elif type(pos) is list and len(pos) > 2 and type(pos[0]) in _NUMBER and \
                    type(pos[1]) in _NUMBER:
                flat += pos[:2]  # altitude is accepted and ignored
                plain = False
            else:
                i = value.index(pos)
                raise InvalidGeometry(f"{what}, position {i}: {json.dumps(pos)[:60]} is not a "
                                      "[lon, lat] pair of numbers")
        self._ring_start.append(len(self._coords) // 2)
        self._ring_len.append(len(value))
        self._coords += flat
        return plain

    def add(self, geometry: dict[str, Any], *, point_ok: bool, polygon_ok: bool) -> int:
        """Register a geometry; return its item number. Raises InvalidGeometry on bad structure.

        Nothing is registered when it raises.
        """
        kind = geometry.get("type")
        coords = geometry.get("coordinates")
        mark = (len(self._coords), len(self._ring_start))
        try:
            if kind == "Point" and point_ok:
                plain = self._ring([coords], "Point", 1)
                item = _Item("point", kind, mark[1], 1, [], coords, plain)
            elif kind in ("Polygon", "MultiPolygon") and polygon_ok:
                polygons = [coords] if kind == "Polygon" else coords
                if type(polygons) is not list or not polygons:
                    raise InvalidGeometry(f"{kind} coordinates must be a non-empty list")
                per_polygon, plain = [], True
                for k, rings in enumerate(polygons):
                    what = "polygon" if kind == "Polygon" else f"polygon {k}"
                    if type(rings) is not list or not rings:
                        raise InvalidGeometry(f"{what} must be a list of rings (exterior first, "
                                              "then holes)")
                    for j, ring in enumerate(rings):
                        plain = self._ring(ring, f"{what} ring {j}", 4) and plain
                    per_polygon.append(len(rings))
                item = _Item("polygonal", kind, mark[1], len(self._ring_start) - mark[1],
                             per_polygon, coords, plain)
            else:
                raise InvalidGeometry(f"unexpected {kind}")  # the caller words this one
        except InvalidGeometry:
            del self._coords[mark[0]:], self._ring_start[mark[1]:], self._ring_len[mark[1]:]
            raise
        self._items.append(item)
        return len(self._items) - 1

    # --- building (arrays) ---------------------------------------------------------------------

    def build(self, project: Callable[[np.ndarray], np.ndarray] | None = None) -> list[Shape | str]:
        """Return a Shape, or a problem sentence, for every item in the order added.

        ``project`` maps an ``(n, 2)`` array of positions to WGS84 lon/lat (a legacy ``crs``).
        """
        if not self._items:
            return []
        self._changed = project is not None
        arr = np.array(self._coords, dtype=float).reshape(-1, 2)
        if project is not None:
            arr = np.ascontiguousarray(project(arr), dtype=float)
        starts = np.array(self._ring_start, dtype=np.intp)
        lens = np.array(self._ring_len, dtype=np.intp)
        ends = starts + lens
        ring_of = np.repeat(np.arange(len(starts)), lens)
        lon = arr[:, 0]

        # per ring: bad positions, closure, an edge jumping over 180 degrees, lon range, seam
        good_pos = np.isfinite(arr).all(axis=1) & (np.abs(lon) <= 180) & (np.abs(arr[:, 1]) <= 90)
        ring_bad = np.add.reduceat(~good_pos, starts) > 0
        closed = (arr[starts] == arr[ends - 1]).all(axis=1) | (lens == 1)
        step = np.abs(np.diff(lon)) > 180.0
        ring_jump = np.zeros(len(starts), dtype=bool)
        ring_jump[ring_of[:-1][step & (ring_of[:-1] == ring_of[1:])]] = True
        with np.errstate(invalid="ignore"):
            width = np.maximum.reduceat(lon, starts) - np.minimum.reduceat(lon, starts)
        ring_seam = np.add.reduceat(np.abs(lon) == 180.0, starts) > 0
        # per item, by reducing over its rings (every item has at least one ring)
        first = np.array([it.first_ring for it in self._items], dtype=np.intp)
        trouble = np.add.reduceat(ring_bad | ~closed, first) > 0
        jumps = np.add.reduceat(ring_jump, first) > 0
        shells = [r for it in self._items if it.kind == "polygonal" for r in self._shells(it)]
        wide = np.zeros(len(starts), dtype=bool)
        wide[shells] = width[shells] > 180.0
        too_wide = np.add.reduceat(wide, first) > 0
        edges_all = np.hstack([arr[:-1], arr[1:]]) if len(arr) > 1 else np.empty((0, 4))

        results: list[Shape | str | None] = [None] * len(self._items)
        fast: list[int] = []  # items whose polygons can all be built by the vectorized path
        flags = zip(trouble.tolist(), jumps.tolist(), too_wide.tolist(), strict=True)
        ring_first_xy = arr[starts].tolist()  # a point is a ring of one position
        for n, (item, (bad, jump, is_wide)) in enumerate(zip(self._items, flags, strict=True)):
            if bad:
                results[n] = self._problem(item, arr, ring_bad, starts, ends)
            elif item.kind == "point":
                x, y = ring_first_xy[item.first_ring]
                results[n] = Shape(lon=x, lat=y, geometry={"type": "Point", "coordinates": [x, y]})
            elif jump:
                results[n] = self._slow(item, arr, starts, ends)
            elif is_wide:
                results[n] = self._too_wide(item, arr, starts, ends)
            else:
                fast.append(n)
        self._build_fast(fast, results, arr, starts, lens, edges_all, ring_seam)
        return results  # type: ignore[return-value]

    def _problem(self, item: _Item, arr, ring_bad, starts, ends) -> str:
        """The first bad or unclosed ring of an item, in words."""
        names = [("Point", item.first_ring)] if item.kind == "point" else self._ring_names(item)
        for what, r in names:
            if ring_bad[r]:
                return self._diagnose(arr, r, what)
            first, last = arr[starts[r]].tolist(), arr[ends[r] - 1].tolist()
            if first != last:
                return f"{what} is not closed: its last position {last} must repeat its first {first}"
        return "invalid coordinates"  # pragma: no cover - trouble implies one of the above

    def _too_wide(self, item: _Item, arr, starts, ends) -> str:
        for k, r in enumerate(self._shells(item)):
            lo, hi = arr[starts[r]:ends[r], 0].min(), arr[starts[r]:ends[r], 0].max()
            if hi - lo > 180.0:
                where = f"polygon {k}: " if item.geom_type == "MultiPolygon" else ""
                return (f"{where}polygon spans {hi - lo:.1f} degrees of longitude (from {lo:.4f} to "
                        f"{hi:.4f}); at most 180 is allowed: split it into smaller polygons")
        return "polygon too wide"  # pragma: no cover - too_wide implies a wide shell

    def _ring_names(self, item: _Item):
        r = item.first_ring
        for k, count in enumerate(item.polygon_rings):
            what = "polygon" if item.geom_type == "Polygon" else f"polygon {k}"
            for j in range(count):
                yield f"{what} ring {j}", r
                r += 1

    def _shells(self, item: _Item) -> list[int]:
        firsts, r = [], item.first_ring
        for count in item.polygon_rings:
            firsts.append(r)
            r += count
        return firsts

    def _diagnose(self, arr: np.ndarray, r: int, what: str) -> str:
        start, length = self._ring_start[r], self._ring_len[r]
        try:
            check_lonlat(arr[start:start + length], what)
        except InvalidGeometry as exc:
            return str(exc)
        return f"{what}: invalid coordinates"  # pragma: no cover - ring_bad implies a raise

    def _clean_geometry(self, item: _Item, arr: np.ndarray, starts, ends, changed: bool) -> dict:
        if item.plain and not changed:
            return {"type": item.geom_type, "coordinates": item.coordinates}
        polygons, r = [], item.first_ring
        for count in item.polygon_rings:
            polygons.append([arr[starts[q]:ends[q]].tolist() for q in range(r, r + count)])
            r += count
        coords = polygons[0] if item.geom_type == "Polygon" else polygons
        return {"type": item.geom_type, "coordinates": coords}

    def _slow(self, item: _Item, arr, starts, ends) -> Shape | str:
        """Per-polygon path: unwrap and split at the antimeridian (geometry.polygon_parts)."""
        parts, edges, r = [], [], item.first_ring
        for k, count in enumerate(item.polygon_rings):
            rings = [arr[starts[q]:ends[q]] for q in range(r, r + count)]
            r += count
            try:
                p, e = polygon_parts(rings)
            except InvalidGeometry as exc:
                where = f"polygon {k}: " if item.geom_type == "MultiPolygon" else ""
                return f"{where}{exc}"
            parts += p
            edges.append(e)
        return Shape(parts=tuple(parts), edges=np.concatenate(edges),
                     geometry=self._clean_geometry(item, arr, starts, ends, self._changed))

    def _build_fast(self, fast, results, arr, starts, lens, edges_all, ring_seam) -> None:
        if not fast:
            return
        items = [self._items[n] for n in fast]
        rings_sel = _ranges(np.array([it.first_ring for it in items], dtype=np.intp),
                            np.array([it.ring_count for it in items], dtype=np.intp))
        pos_sel = _ranges(starts[rings_sel], lens[rings_sel])
        ring_index = np.repeat(np.arange(len(rings_sel)), lens[rings_sel])
        rings = shapely.linearrings(arr[pos_sel], indices=ring_index)
        # polygon number of every selected ring: shells open a new polygon
        per_item = [self._items[n].polygon_rings for n in fast]
        counts = np.array([c for pr in per_item for c in pr], dtype=np.intp)
        poly_arr = shapely.polygons(rings, indices=np.repeat(np.arange(len(counts)), counts))
        reasons = shapely.is_valid_reason(poly_arr).tolist()
        polys = poly_arr.tolist()
        starts_l, lens_l, seam_l = starts.tolist(), lens.tolist(), ring_seam.tolist()
        ends = starts + lens
        p = 0
        for n, pr in zip(fast, per_item, strict=True):
            item = self._items[n]
            mine, why = polys[p:p + len(pr)], reasons[p:p + len(pr)]
            p += len(pr)
            bad = [k for k, reason in enumerate(why) if reason != "Valid Geometry"]
            if bad:
                where = f"polygon {bad[0]}: " if item.geom_type == "MultiPolygon" else ""
                results[n] = where + explain_invalid(why[bad[0]])
                continue
            rs = range(item.first_ring, item.first_ring + item.ring_count)
            pieces = [edges_all[starts_l[r]:starts_l[r] + lens_l[r] - 1] for r in rs]
            edges = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            if any(seam_l[r] for r in rs):
                edges = _drop_seam(edges)
            results[n] = Shape(parts=tuple(mine), edges=edges,
                               geometry=self._clean_geometry(item, arr, starts, ends, self._changed))


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    total = int(lens.sum())
    ends = np.cumsum(lens)
    offsets = np.repeat(starts - (ends - lens), lens)
    return np.arange(total) + offsets


def _drop_seam(edges: np.ndarray) -> np.ndarray:
    """Drop edges along ±180 when parts lie on both sides: a polygon already cut there
    (RFC 7946 3.1.9) has a seam that is no boundary."""
    seam = (np.abs(edges[:, 0]) == 180) & (edges[:, 0] == edges[:, 2])
    if seam.any() and (edges[:, 0] == 180).any() and (edges[:, 0] == -180).any():
        return edges[~seam]
    return edges


def build_geofences(records: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[Geofence]:
    """Return polygon Geofences from ``(WGS84 geometry, fields)`` pairs, built in one batch.

    Raises :class:`~geo_engine.errors.InvalidGeometry` naming the first geometry that cannot be
    a geofence.
    """
    batch = ShapeBatch()
    for geometry, fields in records:
        try:
            batch.add(geometry, point_ok=False, polygon_ok=True)
        except InvalidGeometry as exc:
            raise InvalidGeometry(f"geofence {fields.get('id')!r}: {exc}") from None
    out = []
    for (_, fields), shape in zip(records, batch.build(), strict=True):
        if isinstance(shape, str):
            raise InvalidGeometry(f"geofence {fields.get('id')!r}: {shape}")
        out.append(Geofence(geometry=shape.geometry, parts=shape.parts, edges=shape.edges, **fields))
    return out


def geofence_from_geometry(geometry: dict[str, Any], **fields: Any) -> Geofence:
    """Return a polygon Geofence from a WGS84 Polygon/MultiPolygon, with its parts and edges.

    Raises :class:`~geo_engine.errors.InvalidGeometry` for a geometry that cannot be one.
    """
    return build_geofences([(geometry, fields)])[0]
