"""Batch scoring (SPEC section 7): every customer row scored against the stores and campaigns.

Arrays in, arrays out: a chunk of rows is located (Point geometry, then ``lat``/``lon``
columns), then scored with the bulk index queries (nearest store, stores within the radius,
geofences containing the point) and the offer a ping there would get, decided once per distinct
situation (the set of geofences and the nearby stores) with the same :func:`geo_engine.decide.decide`
as the service, ignoring per-device state. No Python loop runs per row. Every input row comes
out, in order, with a ``status`` saying why it could not be scored when it could not.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import shapely

from .decide import Candidate, Counts, decide
from .engine import Engine
from .geodesy import distance_m
from .io.geocoding import AddressGeocoder, PostalCodes
from .model import Confidence

__all__ = ["OUTPUT_COLUMNS", "locate_rows", "score_frame"]

OUTPUT_COLUMNS = ["nearest_store_id", "nearest_distance_m", "stores_within_radius", "geofence_ids",
                  "offer_campaign_id", "status", "location_source", "located_lat", "located_lon"]


def locate_rows(df: pd.DataFrame, lat_col: str = "lat", lon_col: str = "lon", *,
                address_col: str = "address", postal_col: str = "postal_code",
                country_col: str = "country", geocoder: AddressGeocoder | None = None,
                postal_codes: PostalCodes | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (lats, lons, status, source) for every row, in SPEC 3.3's order of sources.

    A non-empty Point geometry wins, then ``lat``/``lon`` columns, then the ``address`` column
    through ``geocoder`` (each distinct address once), then ``postal_code`` (+ ``country``)
    through ``postal_codes``. ``status`` is ``ok``, ``missing_coordinates`` (nothing to locate
    the row by), ``invalid_coordinates`` (not numbers, NaN, or outside WGS84 ranges),
    ``not_geocoded`` (an address the geocoder did not find, or no geocoder given) or
    ``unknown_postal_code``.
    """
    n = len(df)
    lats, lons = np.full(n, np.nan), np.full(n, np.nan)
    source = np.full(n, "", dtype=object)
    status = np.full(n, "missing_coordinates", dtype=object)
    geom = getattr(df, "geometry", None) if "geometry" in df.columns else None
    if geom is not None and hasattr(geom, "geom_type"):
        arr = geom.to_numpy()
        is_point = (shapely.get_type_id(arr) == 0) & ~shapely.is_empty(arr)
        lons[is_point] = shapely.get_x(arr[is_point])
        lats[is_point] = shapely.get_y(arr[is_point])
        source[is_point] = "geometry"
        other = ~is_point & ~shapely.is_missing(arr) & ~shapely.is_empty(arr)
        status[other] = "invalid_coordinates"  # a line or polygon is no customer location
    if lat_col in df.columns and lon_col in df.columns:
        todo = source == ""
        raw_lat, raw_lon = df[lat_col].to_numpy()[todo], df[lon_col].to_numpy()[todo]
        la = pd.to_numeric(pd.Series(raw_lat), errors="coerce").to_numpy(dtype=float)
        lo = pd.to_numeric(pd.Series(raw_lon), errors="coerce").to_numpy(dtype=float)
        blank = _blank(raw_lat) | _blank(raw_lon)
        idx = np.flatnonzero(todo)
        lats[idx], lons[idx] = la, lo
        source[idx[~blank]] = "latlon"
        status[idx[~blank]] = "invalid_coordinates"
    if address_col in df.columns:
        todo = np.flatnonzero((source == "") & ~_blank(df[address_col].to_numpy()))
        if len(todo):
            addresses = df[address_col].to_numpy()[todo].astype(str)
            source[todo], status[todo] = "address", "not_geocoded"
            if geocoder is not None:
                found = geocoder.geocode(list(addresses))
                pairs = np.array([found.get(a, (None, None)) for a in addresses], dtype=float)
                lats[todo], lons[todo] = pairs[:, 0], pairs[:, 1]
    if postal_col in df.columns and postal_codes is not None:
        todo = np.flatnonzero((source == "") & ~_blank(df[postal_col].to_numpy()))
        if len(todo):
            countries = df[country_col].to_numpy()[todo] if country_col in df.columns else None
            la, lo = postal_codes.lookup(df[postal_col].to_numpy()[todo], countries)
            lats[todo], lons[todo] = la, lo
            source[todo], status[todo] = "postal_code", "unknown_postal_code"
    located = (source != "") & np.isfinite(lats) & np.isfinite(lons) & \
        (np.abs(lats) <= 90) & (np.abs(lons) <= 180)
    status[located] = "ok"
    lats[~located], lons[~located] = np.nan, np.nan
    return lats, lons, status, source


def _blank(values: np.ndarray) -> np.ndarray:
    """Missing or empty (None, NaN, or an empty string): one vectorized pass."""
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        return pd.isna(values)
    return pd.isna(values) | (values == "")


def score_frame(df: pd.DataFrame, engine: Engine, *, radius_m: float = 5000.0,
                at: datetime | None = None, lat_col: str = "lat", lon_col: str = "lon",
                per_store: np.ndarray | None = None, **locate_kw) -> pd.DataFrame:
    """Return ``df`` with the SPEC 7 columns added (a GeoDataFrame stays one), rows in order.

    Distances are WGS84 geodesic metres; ``geofence_ids`` joins the containing geofences' ids
    with ``|`` (sorted); ``offer_campaign_id`` is what a ping at the point would get at ``at``
    (default now), per-device caps, holdouts and audiences aside. ``locate_kw`` goes to
    :func:`locate_rows` (address and postal-code columns, geocoder, postal codes). With
    ``per_store`` (an int array, one slot per store position), the count of these rows within
    ``radius_m`` of each store is added to it, from the same pass.
    """
    at = at or datetime.now(UTC)
    lats, lons, status, source = locate_rows(df, lat_col, lon_col, **locate_kw)
    ok = np.flatnonzero(status == "ok")
    n = len(df)
    nearest_id = np.full(n, None, dtype=object)
    nearest_d = np.full(n, np.nan)
    within = np.zeros(n, dtype=np.int64)
    fence_ids = np.full(n, "", dtype=object)
    offer = np.full(n, None, dtype=object)
    if len(ok) and len(engine.store_index):
        idx, dist = engine.store_index.nearest_bulk(lats[ok], lons[ok], 1)
        nearest_id[ok] = engine.stores.ids[idx[:, 0]]
        nearest_d[ok] = dist[:, 0]
        within[ok] = engine.store_index.count_within_bulk(lats[ok], lons[ok], radius_m, per_store)
    if len(ok) and len(engine.fence_index):
        pts, fences = engine.fence_index.containing_bulk(lats[ok], lons[ok], at)
        names = engine.fence_index.ids
        if len(pts):
            order = np.lexsort((names[fences], pts))
            pts, fences = pts[order], fences[order]
            starts = np.flatnonzero(np.r_[True, pts[1:] != pts[:-1]])
            groups = np.split(names[fences], starts[1:])
            fence_ids[ok[pts[starts]]] = ["|".join(g) for g in groups]
    if len(ok):
        offer[ok] = _offers(engine, lats[ok], lons[ok], fence_ids[ok], at)
    out = df.copy()
    for name, values in zip(OUTPUT_COLUMNS, [nearest_id, nearest_d, within, fence_ids, offer, status,
                                             source, lats, lons], strict=True):
        out[name] = values
    return out


def _offers(engine: Engine, lats: np.ndarray, lons: np.ndarray, fence_ids: np.ndarray,
            at: datetime) -> np.ndarray:
    """The campaign a ping would get at each point: decided once per distinct situation."""
    active = engine.active_campaigns
    enters = [c for c in active if c.trigger == "enter"]
    nearby = [c for c in active if c.trigger == "nearby"]
    n = len(lats)
    if not enters and not nearby:  # a single ping can only be offered an enter or nearby campaign
        return np.full(n, None, dtype=object)
    # nearby: for each campaign, the nearest targeted store within its radius (arrays)
    near_keys = []
    for c in nearby:
        targeted, sub = engine.stores_targeted_by(c)
        hit = np.full(n, -1, dtype=np.int64)
        dist = np.full(n, np.inf)
        if sub is not None:
            i, d = sub.nearest_bulk(lats, lons, 1)
            close = d[:, 0] <= c.radius_m
            hit[close], dist[close] = targeted[i[close, 0]], d[close, 0]
        near_keys.append((c, hit, dist))
    key_cols = [fence_ids] + [h for _, h, _ in near_keys]
    keys = pd.MultiIndex.from_arrays(key_cols) if len(key_cols) > 1 else pd.Index(key_cols[0])
    codes, uniques = pd.factorize(keys)
    result = np.full(len(uniques), None, dtype=object)
    spend = engine.db.campaign_spend()
    _, first_rows = np.unique(codes, return_index=True)  # one representative row per situation
    for u, row in enumerate(first_rows.tolist()):
        cands = []
        for fid in filter(None, str(fence_ids[row]).split("|")):
            fence = engine.geofence(fid)
            store = engine.find_store(fence.store_id) if fence is not None else None
            if store is None:
                continue
            d = distance_m(lats[row], lons[row], store.lat, store.lon)
            cands += [Candidate(c, store, fid, d, Confidence.HIGH) for c in enters
                      if c.targets_fence(fence, store)]
        for c, hit, dist in near_keys:
            if hit[row] >= 0:
                store = engine.store(engine.stores.ids[hit[row]])
                cands.append(Candidate(c, store, None, float(dist[row]), Confidence.HIGH))
        if cands:
            decision = decide(cands, device_id="", segments=frozenset(), at=at, ts=at.timestamp(),
                              opted_out=False, suspicious=False, interval_blocked=False,
                              counts=lambda c: Counts(0, 0, None, spend.get(c.campaign.id, 0)),
                              per_device=False)
            result[u] = decision.chosen.campaign.id if decision.chosen else None
    return result[codes]


_worker_engines: dict[str, Engine] = {}


def score_chunk_on_worker(df: pd.DataFrame, db_path: str, options: dict
                          ) -> tuple[pd.DataFrame, np.ndarray]:
    """Score one chunk in a Dask worker: the scored rows and the per-store counts.

    The worker opens the database once and keeps it.

    ``options`` are score_frame's keywords, with ``postal_codes_file`` and ``geocoder`` given as
    plain values (``(name, url, delay_s, options)``) that the worker turns into objects.
    """
    from .config import Settings

    engine = _worker_engines.get(db_path)
    if engine is None:
        engine = _worker_engines[db_path] = Engine(Settings(db=db_path))
    opts = dict(options)
    postal = opts.pop("postal_codes_file", None)
    geocoder = opts.pop("geocoder", None)
    opts["postal_codes"] = PostalCodes(postal)
    if geocoder:
        name, url, delay_s, options = geocoder
        opts["geocoder"] = AddressGeocoder(name, engine.db, url, delay_s, options=options)
    per_store = np.zeros(len(engine.store_index), dtype=np.int64)
    return score_frame(df, engine, per_store=per_store, **opts), per_store
