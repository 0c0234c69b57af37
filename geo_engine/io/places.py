"""Read and validate store and geofence files: GeoJSON FeatureCollections and CSV store lists.

Validation collects *every* problem in a file (feature index or CSV line, id, what is wrong and
how to fix it) before raising :class:`~geo_engine.errors.ValidationFailed`, so a marketer fixes
a file in one pass (each property's rule is :mod:`.properties`'). The format: docs/formats.md.

It reads files into values; it never touches the database or an index.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidGeometry, Problem, ValidationFailed
from ..model import Geofence, Store
from ..text import NOT_TEXT, bad_text
from .properties import (
    KNOWN_FENCE,
    KNOWN_STORE,
    MAX_RADIUS_M,
    MIN_RADIUS_M,
    Bad,
    Reprojector,
    fence_fields,
    id_string,
    store_fields,
)
from .shapes import ShapeBatch, check_lonlat

__all__ = [
    "MAX_FEATURES",
    "MAX_RING_VERTICES",
    "Dataset",
    "FileLimits",
    "check_references",
    "derive_timezones",
    "export_collection",
    "geofence_feature",
    "load_files",
    "parse_csv",
    "parse_geojson",
    "store_feature",
]

MAX_FEATURES = 1_000_000  # features in one import (SPEC 5): past it, the import is refused
MAX_RING_VERTICES = 10_000  # positions in one polygon ring (SPEC 5)


@dataclass(frozen=True)
class FileLimits:
    """How large a file, and a polygon in it, may be (settings ``max_features`` and
    ``max_ring_vertices``): past them the file is refused with a problem that says so."""

    max_features: int = MAX_FEATURES
    max_ring_vertices: int = MAX_RING_VERTICES


@dataclass
class Dataset:
    """What a set of files holds: stores, geofences, and notes on what was done to them."""

    stores: list[Store] = field(default_factory=list)
    geofences: list[Geofence] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    # where each item came from, by id(item): (source, index or line, "feature" or "line")
    origins: dict[int, tuple[str, int | None, str]] = field(default_factory=dict, repr=False)

    def add(self, item: Store | Geofence, source: str, index: int | None, unit: str) -> None:
        (self.stores if isinstance(item, Store) else self.geofences).append(item)
        self.origins[id(item)] = (source, index, unit)

    def extend(self, other: Dataset) -> None:
        self.stores += other.stores
        self.geofences += other.geofences
        self.notices += other.notices
        self.origins.update(other.origins)



def _longest_ring(geom: dict) -> int:
    """The most positions in one ring of a Polygon or MultiPolygon (0 for other types or for
    coordinates too broken to count: the shape check names those)."""
    coords = geom.get("coordinates")
    polygons = [coords] if geom.get("type") == "Polygon" else \
        coords if geom.get("type") == "MultiPolygon" else []
    if not isinstance(polygons, list):
        return 0
    return max((len(ring) for poly in polygons if isinstance(poly, list)
                for ring in poly if isinstance(ring, list)), default=0)


def _loads(text: str) -> Any:
    """Parse JSON with orjson (fast); the standard library names the line of an error, and
    reads the NaN and Infinity some exporters write (the coordinate check then reports them)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a file's objects are made.

    A 100,000-feature file makes millions of lists and dicts, none of them cyclic; the
    collector would otherwise rescan the growing heap again and again (``benchmarks/RESULTS.md``,
    bench_index, has what that cost). Reference counting still frees memory.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_geojson(text: str, source: str = "", limits: FileLimits = FileLimits()
                  ) -> tuple[Dataset, list[Problem]]:
    """Return the stores and geofences of a GeoJSON FeatureCollection, and every problem in it.

    Store references are not checked here (a store may be in another file or already loaded):
    :func:`load_files` checks them across everything.
    """
    with _gc_paused():
        return _parse_geojson(text, source, limits)


def _parse_geojson(text: str, source: str, limits: FileLimits) -> tuple[Dataset, list[Problem]]:
    problems: list[Problem] = []
    data = Dataset()
    try:
        doc = _loads(text)
    except json.JSONDecodeError as exc:
        return data, [Problem(source, None, None, f"malformed JSON at line {exc.lineno}, column "
                              f"{exc.colno}: {exc.msg}; fix the JSON there (geojson.io shows it)")]
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        got = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        return data, [Problem(source, None, None, f"not a GeoJSON FeatureCollection (type is "
                              f"{json.dumps(got)}); wrap the features in "
                              '{"type": "FeatureCollection", "features": [...]}')]
    features = doc.get("features")
    if not isinstance(features, list):
        return data, [Problem(source, None, None, "the FeatureCollection has no \"features\" list")]
    if len(features) > limits.max_features:
        return data, [Problem(source, None, None, f"the file holds {len(features):,} features; at "
                              f"most {limits.max_features:,} go in one import (split it, or raise "
                              "GEO_ENGINE_MAX_FEATURES)")]
    try:
        project = Reprojector(doc.get("crs"))
    except Bad as exc:
        return data, [Problem(source, None, None, str(exc))]
    if project.name:
        data.notices.append(f"{source or 'input'}: coordinates reprojected from {project.name} "
                            "to WGS84 lon/lat (the file's \"crs\" member)")
    batch = ShapeBatch()
    pending = []  # (index, id, kind, fields, batch item): built once every geometry is in
    for i, feature in enumerate(features):
        fid = None
        try:
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise Bad("not a GeoJSON Feature (needs \"type\": \"Feature\")")
            where = bad_text(feature)
            if where is not None:
                raise Bad(f"{where} {NOT_TEXT}")
            props = feature.get("properties") or {}
            if not isinstance(props, dict):
                raise Bad("properties must be a JSON object")
            raw_id = props.get("id", feature.get("id"))
            if raw_id is None:
                raise Bad("has no id: add an \"id\" property (unique across the file)")
            fid = id_string(raw_id, "id")
            kind = props.get("kind", "geofence")
            geom = feature.get("geometry")
            if kind not in ("store", "geofence"):
                raise Bad(f"kind must be \"store\" or \"geofence\", got {json.dumps(kind)}")
            if not isinstance(geom, dict) or "type" not in geom:
                raise Bad(f"has no geometry (null); draw a {'Point' if kind == 'store' else 'Polygon'}"
                          " for it")
            longest = _longest_ring(geom)
            if longest > limits.max_ring_vertices:
                raise Bad(f"a ring of its {geom['type']} has {longest:,} vertices; at most "
                          f"{limits.max_ring_vertices:,} (simplify it, e.g. in QGIS or "
                           "mapshaper, or raise GEO_ENGINE_MAX_RING_VERTICES)")
            fields = (store_fields if kind == "store" else fence_fields)(props, geom)
            item = batch.add(geom, point_ok=True, polygon_ok=kind == "geofence")
            pending.append((i, fid, kind, fields, item))
        except (Bad, InvalidGeometry) as exc:
            problems.append(Problem(source, i, fid, str(exc)))
    shapes = batch.build(project if project.transformer is not None else None)
    for i, fid, kind, fields, item in pending:
        shape = shapes[item]
        if isinstance(shape, str):
            problems.append(Problem(source, i, fid, shape))
        elif kind == "store":
            data.add(Store(id=fid, lon=shape.lon, lat=shape.lat, **fields), source, i, "feature")
        elif shape.parts:
            data.add(Geofence(id=fid, geometry=shape.geometry, parts=shape.parts, edges=shape.edges,
                              **fields), source, i, "feature")
        else:
            data.add(Geofence(id=fid, lon=shape.lon, lat=shape.lat, **fields), source, i, "feature")
    problems.sort(key=lambda p: p.index if p.index is not None else -1)
    return data, problems


def parse_csv(text: str, source: str = "") -> tuple[Dataset, list[Problem]]:
    """Return stores and circle geofences from a CSV ``id, store_id, lat, lon, radius_m`` list.

    Optional columns: ``name``, and ``tags`` separated by ``|``. A row makes its store (once per
    ``store_id``) and a circle geofence ``id`` around it; an empty ``radius_m`` makes the store
    alone. Problems carry the 1-based line number.
    """
    problems: list[Problem] = []
    data = Dataset()
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("id", "store_id", "lat", "lon", "radius_m") if c not in header]
    if missing:
        return data, [Problem(source, 1, None, f"the header lacks column{'s' if len(missing) > 1 else ''}"
                              f" {', '.join(missing)}; a store list needs id, store_id, lat, lon,"
                              " radius_m (and may add name, tags)", unit="line")]
    reader.fieldnames = header
    stores: dict[str, Store] = {}
    for row in reader:
        line = reader.line_num
        rid = (row.get("id") or "").strip() or None
        try:
            sid = (row.get("store_id") or "").strip()
            if not sid:
                raise Bad("store_id is empty; every row names its store")
            try:
                lat, lon = float(row["lat"]), float(row["lon"])
            except (TypeError, ValueError):
                raise Bad(f"lat {row.get('lat')!r} and lon {row.get('lon')!r} must be numbers") from None
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # NaN fails too
                check_lonlat(np.array([[lon, lat]]), "lat/lon")
            tags = tuple(t.strip() for t in (row.get("tags") or "").split("|") if t.strip())
            name = (row.get("name") or "").strip()
            known = stores.get(sid)
            if known is None:
                stores[sid] = known = Store(id=sid, lat=lat, lon=lon, name=name, tags=tags)
                data.add(known, source, line, "line")
            elif (known.lat, known.lon) != (lat, lon):
                raise Bad(f"store {sid!r} is at lat {known.lat}, lon {known.lon} on an earlier "
                          f"line but at lat {lat}, lon {lon} here; give one store one place")
            radius_text = (row.get("radius_m") or "").strip()
            if not radius_text:
                continue
            if rid is None:
                raise Bad("id is empty; a row with radius_m makes a geofence and needs its id")
            try:
                radius = float(radius_text)
            except ValueError:
                radius = math.nan
            if not MIN_RADIUS_M <= radius <= MAX_RADIUS_M:
                raise Bad(f"radius_m must be a number of metres from {MIN_RADIUS_M:g} to "
                          f"{MAX_RADIUS_M:,.0f}, got {radius_text!r}")
            data.add(Geofence(id=rid, store_id=sid, name=name, lat=lat, lon=lon, radius_m=radius,
                              tags=tags), source, line, "line")
        except (Bad, InvalidGeometry) as exc:
            problems.append(Problem(source, line, rid, str(exc), unit="line"))
    return data, problems


def check_references(data: Dataset, known_store_ids: Iterable[str]) -> list[Problem]:
    """Duplicate ids and geofences whose store is nowhere to be found, across all files."""
    problems = []
    for kind, items in (("store", data.stores), ("geofence", data.geofences)):
        seen: dict[str, tuple[str, int | None, str]] = {}
        for item in items:
            src, idx, unit = data.origins[id(item)]
            if item.id in seen:
                first = seen[item.id]
                problems.append(Problem(src, idx, item.id, f"duplicate {kind} id: {first[2]} "
                                        f"{first[1]} of {first[0] or 'the input'} has it too; "
                                        "give each a unique id", unit=unit))
            else:
                seen[item.id] = (src, idx, unit)
    store_ids = {s.id for s in data.stores} | set(known_store_ids)
    for fence in data.geofences:
        if fence.store_id not in store_ids:
            src, idx, unit = data.origins[id(fence)]
            problems.append(Problem(src, idx, fence.id, f"store_id {fence.store_id!r} is no store"
                                    " in these files or the database; add that store (a Point "
                                    "feature with \"kind\": \"store\") or fix the store_id",
                                    unit=unit))
    return problems


def load_files(paths: Sequence[str | Path], known_store_ids: Iterable[str] = (),
               limits: FileLimits = FileLimits()) -> Dataset:
    """Return everything in these GeoJSON/CSV files, or raise ValidationFailed with every problem.

    ``known_store_ids`` are stores already loaded (a geofence file may refer to them). A file
    ending in ``.csv`` is a store list; anything else is read as GeoJSON.
    """
    data, problems = Dataset(), []
    for path in paths:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(source, None, None, f"cannot be read: {exc}"))
            continue
        if path.suffix.lower() == ".csv":
            part, found = parse_csv(text, source)
        else:
            part, found = parse_geojson(text, source, limits)
        problems += found
        data.extend(part)
    problems += check_references(data, known_store_ids)
    if problems:
        raise ValidationFailed(problems)
    return data


def geofence_feature(fence: Geofence) -> dict:
    """A geofence as a GeoJSON Feature, its properties as :func:`parse_geojson` takes them."""
    props = {"id": fence.id, "store_id": fence.store_id, "name": fence.name,
             "tags": list(fence.tags), "enabled": fence.enabled, "metadata": fence.metadata}
    if fence.is_circle:
        props["radius_m"] = fence.radius_m
    if fence.expires_at is not None:
        props["expires_at"] = fence.expires_at.isoformat()
    return {"type": "Feature", "id": fence.id, "properties": props,
            "geometry": fence.geojson_geometry()}


def _flat(props: dict, metadata: dict, known: set[str]) -> dict:
    """``props`` with the metadata at the top level, as a QGIS or geojson.io file carries its
    style (``stroke``, ``fill``, ...); a metadata key that is also a property's name stays
    under ``metadata``, so the file imports back to the same."""
    out = dict(props)
    kept = {k: v for k, v in metadata.items() if k in known or k in out}
    out.update({k: v for k, v in metadata.items() if k not in kept})
    if kept:
        out["metadata"] = kept
    return out


def store_feature(store: Store, flat: bool = False) -> dict:
    """A store as a GeoJSON Feature, its properties as :func:`parse_geojson` takes them (with
    ``flat``, its metadata at the top level of ``properties``)."""
    props: dict[str, Any] = {"kind": "store", "id": store.id, "name": store.name,
                             "tags": list(store.tags)}
    if store.timezone:
        props["timezone"] = store.timezone
    if store.opening_hours is not None:
        props["opening_hours"] = store.opening_hours
    if store.address:
        props["address"] = store.address
    props = _flat(props, store.metadata, KNOWN_STORE) if flat else {**props, "metadata": store.metadata}
    return {"type": "Feature", "id": store.id, "properties": props,
            "geometry": {"type": "Point", "coordinates": [store.lon, store.lat]}}


def export_collection(stores: Iterable[Store], fences: Iterable[Geofence]) -> dict:
    """Every store and geofence as one FeatureCollection, style and other metadata back at the
    top level of ``properties``: what ``import`` takes back into an empty database unchanged."""
    features = [store_feature(s, flat=True) for s in stores]
    for fence in fences:
        feature = geofence_feature(fence)
        props = {k: v for k, v in feature["properties"].items() if k != "metadata"}
        feature["properties"] = _flat(props, fence.metadata, KNOWN_FENCE)
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


_tz_finder = None


def derive_timezones(data: Dataset) -> None:
    """Give stores without a ``timezone`` the IANA zone of their location, offline."""
    global _tz_finder
    missing = [k for k, s in enumerate(data.stores) if s.timezone is None]
    if not missing:
        return
    if _tz_finder is None:
        from timezonefinder import TimezoneFinder

        _tz_finder = TimezoneFinder()
    for k in missing:
        s = data.stores[k]
        zone = _tz_finder.timezone_at(lng=s.lon, lat=s.lat) or "UTC"
        data.stores[k] = dataclasses.replace(s, timezone=zone)
