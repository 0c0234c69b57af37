"""Batch scoring (SPEC section 7): every customer row scored against the stores and campaigns.

Arrays in, arrays out: a chunk of rows is located (Point geometry, then ``lat``/``lon``
columns), then scored with the bulk index queries (nearest store, stores within the radius,
geofences containing the point) and the offer a ping there would get, decided once per distinct
situation (the set of geofences and the nearby stores) with the same :func:`geo_engine.decide.decide`
as the service, ignoring per-device state. No Python loop runs per row. Every input row comes
out, in order, with a ``status`` saying why it could not be scored when it could not.

It holds no SQL and no rule of its own: the indexes, the targeting and :func:`decide` are
the ping's.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from .decide import decide
from .engine import Engine
from .errors import InvalidInput
from .io.customers import BackgroundWriter, ChunkWriter, prefetch, read_chunks
from .io.geocoding import AddressGeocoder, PostalCodes
from .targeting import Targeting

__all__ = ["OUTPUT_COLUMNS", "ScoreRun", "locate_rows", "score_file", "score_frame"]

OUTPUT_COLUMNS = ["nearest_store_id", "nearest_distance_m", "stores_within_radius", "geofence_ids",
                  "offer_campaign_id", "status", "location_source", "located_lat", "located_lon"]


def locate_rows(df: pd.DataFrame, lat_col: str = "lat", lon_col: str = "lon", *,
                address_col: str = "address", postal_col: str = "postal_code",
                country_col: str = "country", geocoder: AddressGeocoder | None = None,
                postal_codes: PostalCodes | None = None, decimal: str = "."
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
        la = _numbers(raw_lat, decimal)
        lo = _numbers(raw_lon, decimal)
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


def _numbers(values: np.ndarray, decimal: str) -> np.ndarray:
    """Numbers from a column as read (text, or numbers already), NaN where not one; with
    ``decimal`` "," a decimal comma is read as a point."""
    series = pd.Series(values)
    if decimal != "." and not pd.api.types.is_numeric_dtype(series):
        series = series.astype(str).str.replace(decimal, ".", regex=False)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


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
    snap = engine.refresh()
    places = snap.places
    lats, lons, status, source = locate_rows(df, lat_col, lon_col, **locate_kw)
    far_m = engine.settings.far_from_store_m
    _flag_suspicious(df, places, lats, lons, status, source, lat_col, lon_col,
                     locate_kw.get("decimal", "."), far_m)
    ok = np.flatnonzero(status == "ok")
    n = len(df)
    nearest_id = np.full(n, None, dtype=object)
    nearest_d = np.full(n, np.nan)
    within = np.zeros(n, dtype=np.int64)
    fence_ids = np.full(n, "", dtype=object)
    offer = np.full(n, None, dtype=object)
    if len(ok) and len(places.store_index):
        idx, dist = places.store_index.nearest_bulk(lats[ok], lons[ok], 1)
        nearest_id[ok] = places.stores.ids[idx[:, 0]]
        nearest_d[ok] = dist[:, 0]
        within[ok] = places.store_index.count_within_bulk(lats[ok], lons[ok], radius_m, per_store)
    if len(ok) and len(places.fence_index):
        pts, fences = places.fence_index.containing_bulk(lats[ok], lons[ok], at)
        names = places.fence_index.ids
        if len(pts):
            order = np.lexsort((names[fences], pts))
            pts, fences = pts[order], fences[order]
            starts = np.flatnonzero(np.r_[True, pts[1:] != pts[:-1]])
            sizes = np.diff(np.r_[starts, len(pts)])
            one = starts[sizes == 1]  # most points: one geofence, its id as it is
            fence_ids[ok[pts[one]]] = names[fences[one]]
            many = starts[sizes > 1]
            fence_ids[ok[pts[many]]] = ["|".join(names[fences[a:b]])
                                        for a, b in zip(many.tolist(), (many + sizes[sizes > 1]).tolist(),
                                                        strict=True)]
    if len(ok):
        offer[ok] = _offers(snap.targeting, engine.campaign_spend, lats[ok], lons[ok],
                            fence_ids[ok], at)
        far = ok[~(nearest_d[ok] <= far_m)]
        status[far] = "far_from_any_store"  # scored, but look at it: a typo, a test row...
    out = df.copy()
    for name, values in zip(OUTPUT_COLUMNS, [nearest_id, nearest_d, within, fence_ids, offer, status,
                                             source, lats, lons], strict=True):
        out[name] = values
    return out


def _flag_suspicious(df: pd.DataFrame, places, lats: np.ndarray, lons: np.ndarray,
                     status: np.ndarray, source: np.ndarray, lat_col: str, lon_col: str,
                     decimal: str, far_m: float) -> None:
    """Rows kept but not scored as if right (SPEC 7): ``null_island`` (exactly 0, 0: an empty
    value written as zeros) and ``swapped_lat_lon`` (invalid as given, valid swapped, and then
    within ``far_m`` of a store). In place."""
    zero = (status == "ok") & (lats == 0) & (lons == 0)
    status[zero] = "null_island"
    lats[zero], lons[zero] = np.nan, np.nan
    bad = np.flatnonzero((status == "invalid_coordinates") & (source == "latlon"))
    if not len(bad) or not len(places.store_index) or lat_col not in df.columns:
        return
    la = _numbers(df[lat_col].to_numpy()[bad], decimal)
    lo = _numbers(df[lon_col].to_numpy()[bad], decimal)
    swappable = np.isfinite(la) & np.isfinite(lo) & (np.abs(lo) <= 90) & (np.abs(la) <= 180)
    if not swappable.any():
        return
    rows = bad[swappable]
    _, dist = places.store_index.nearest_bulk(lo[swappable], la[swappable], 1)
    status[rows[dist[:, 0] <= far_m]] = "swapped_lat_lon"


def _offers(targeting: Targeting, read_spend: Callable[[], dict[str, int]], lats: np.ndarray,
            lons: np.ndarray, fence_ids: np.ndarray, at: datetime) -> np.ndarray:
    """The campaign a ping would get at each point: decided once per distinct situation
    (``read_spend`` gives the campaigns' spend, read only when there are offers to decide)."""
    n = len(lats)
    # a single ping can only be offered an enter or a nearby campaign
    if not any(c.trigger in ("enter", "nearby") for c in targeting.active):
        return np.full(n, None, dtype=object)
    # nearby: for each campaign, the nearest targeted store within its radius (arrays)
    near_keys = []
    for c in targeting.nearby:
        targeted, sub = targeting.stores_targeted_by(c)
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
    spend = read_spend()
    _, first_rows = np.unique(codes, return_index=True)  # one representative row per situation
    for u, row in enumerate(first_rows.tolist()):
        cands = targeting.place_candidates(
            filter(None, str(fence_ids[row]).split("|")), lats[row], lons[row],
            [(c, int(hit[row]), float(dist[row])) for c, hit, dist in near_keys if hit[row] >= 0])
        if cands:
            decision = decide(cands, device_id="", segments=frozenset(), at=at, ts=at.timestamp(),
                              opted_out=False, suspicious=False, interval_blocked=False,
                              history={}, spend=spend, per_device=False)
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
        opts["geocoder"] = AddressGeocoder(name, engine.db.geocodes, url, delay_s, options=options)
    per_store = np.zeros(len(engine.snapshot.places.stores), dtype=np.int64)
    return score_frame(df, engine, per_store=per_store, **opts), per_store


@dataclass
class ScoreRun:
    """What a scoring run did: rows, their statuses, customers within the radius of each store
    (store id -> count, stores with none left out), how long it took, the map's sample."""

    rows: int
    statuses: dict[str, int]
    near: dict[str, int]
    seconds: float
    id_col: str | None
    geocoder_requests: int | None = None
    #: the finished output, not yet in place (``score_file(..., commit=False)``)
    pending: ChunkWriter | None = None

    def commit(self) -> None:
        """Put the output in place (after everything else the run writes has succeeded)."""
        if self.pending is not None:
            self.pending.commit()
            self.pending = None

    def abort(self) -> None:
        """Drop the finished output: whatever was at ``--out`` stays as it was."""
        if self.pending is not None:
            self.pending.abort()
            self.pending = None


def score_file(engine: Engine, input_path: Path, out: Path, *, radius_m: float = 5000.0,
               at: datetime | None = None, lat_col: str = "lat", lon_col: str = "lon",
               chunk_rows: int = 200_000, id_col: str | None = None, scheduler: str | None = None,
               geocoder: tuple[str, str | None, float, dict] | None = None,
               postal_codes_file: Path | None = None, sample=None,
               progress: Callable[[int], None] | None = None, delimiter: str = ",",
               commit: bool = True, **locate_kw) -> ScoreRun:
    """Score a customer file into ``out`` (format by extension), chunk by chunk; return totals.

    Reading, scoring and writing overlap (a thread each side). ``out`` appears only when the
    whole run succeeds: a failed run leaves an earlier file there as it was. ``scheduler``
    scores the chunks on a Dask cluster (``"local"`` starts one here) with the same results.
    ``geocoder`` is ``(name, url, delay_s, options)``; ``sample`` (a report's
    :class:`~geo_engine.report.MapSample`) sees every scored chunk; ``progress`` is told how
    many rows each chunk had. ``id_col`` must be a column when given; by default ``id`` when
    there is one, and it is written first. With ``commit`` false the finished output waits
    for :meth:`ScoreRun.commit` (the CLI's report is written first).
    """
    if not input_path.is_file():
        raise InvalidInput(f"{input_path}: no such file")
    # one instant for every chunk (and every worker): the offers are decided as of it
    when = at or datetime.now(UTC)
    coder = AddressGeocoder(geocoder[0], engine.db.geocodes, geocoder[1], geocoder[2],
                            options=geocoder[3]) if geocoder else None
    locate_kw.update(postal_codes=PostalCodes(postal_codes_file), geocoder=coder)
    chunks = prefetch(read_chunks(input_path, chunk_rows, delimiter))  # reading overlaps scoring
    first = next(chunks, None)
    id_col = _id_column(first, id_col, input_path)
    if sample is not None:
        sample.id_col = id_col  # shown when a customer on the map is hovered
    todo: Iterator = itertools.chain([first], chunks) if first is not None else iter(())
    stores = engine.refresh().places.stores
    options = dict(radius_m=radius_m, at=when, lat_col=lat_col, lon_col=lon_col, **locate_kw)
    if scheduler:
        options.update(postal_codes_file=postal_codes_file, geocoder=geocoder)
        del options["postal_codes"]
        scored = _on_dask(scheduler, todo, str(Path(engine.path).resolve()), options)
    else:
        scored = _here(engine, todo, len(stores), options)
    run = ScoreRun(0, {}, {}, 0.0, id_col)
    per_store = np.zeros(len(stores), dtype=np.int64)
    writer = BackgroundWriter(ChunkWriter(out))  # writes overlap the next chunk's scoring
    started = time.monotonic()
    try:
        for frame, counts in scored:
            if id_col is not None:
                frame = frame[[id_col, *(c for c in frame.columns if c != id_col)]]
            writer.write(frame)
            # customers within the radius of each store, counted in the same pass as each
            # customer's stores within the radius
            per_store += counts
            for k, v in frame["status"].value_counts().items():
                run.statuses[k] = run.statuses.get(k, 0) + int(v)
            run.rows += len(frame)
            if progress is not None:
                progress(len(frame))
            if sample is not None:
                sample.add(frame)
    except BaseException:
        writer.abort()  # no half-written output; an earlier one at --out stays as it was
        raise
    writer.close(commit)
    if not commit:
        run.pending = writer.writer
    run.seconds = time.monotonic() - started
    run.near = {sid: int(c) for sid, c in zip(stores.ids, per_store, strict=True) if c}
    run.geocoder_requests = coder.requests if coder is not None else None
    return run


def _id_column(first: pd.DataFrame | None, id_col: str | None, input_path: Path) -> str | None:
    """The id column, checked on the input's first chunk before anything is scored: named and
    missing is an error; by default ``id`` when there is one."""
    if first is None:
        return id_col
    if id_col is not None and id_col not in first.columns:
        raise InvalidInput(f"{input_path}: no column {id_col!r} for --id-col (columns: "
                           f"{', '.join(map(str, first.columns))})")
    return "id" if id_col is None and "id" in first.columns else id_col


def _here(engine: Engine, chunks: Iterator[pd.DataFrame], n_stores: int, options: dict):
    """Score chunks in this process; yield (scored rows, customers within reach per store)."""
    for chunk in chunks:
        counts = np.zeros(n_stores, dtype=np.int64)
        yield score_frame(chunk, engine, per_store=counts, **options), counts


def _on_dask(scheduler: str, chunks, db_path: str, options: dict, in_flight: int = 4):
    """Score chunks on a Dask cluster; yield the results in input order (a few in flight)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                           host="127.0.0.1") if scheduler == "local" else None
    try:
        with Client(cluster if cluster is not None else scheduler, timeout="20s") as client:
            pending: deque = deque()
            for chunk in chunks:
                pending.append(client.submit(score_chunk_on_worker, chunk, db_path, options, pure=False))
                if len(pending) >= in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    except (OSError, TimeoutError) as exc:
        raise InvalidInput(f"cannot reach the Dask scheduler {scheduler!r}: {exc}") from None
    finally:
        if cluster is not None:
            cluster.close()
