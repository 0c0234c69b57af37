"""The ``geo-engine`` command: thin over :class:`geo_engine.engine.Engine`.

Every :class:`GeoEngineError` becomes one sentence on stderr and a non-zero exit; nothing a
user types leads to a traceback.

It parses options and prints; everything it does is an engine, scoring or key call. It is the
one library module that may import the web layer (``serve``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from . import __version__
from .config import SETTINGS, Settings
from .db import Database, is_postgres_url
from .engine import Engine
from .errors import GeoEngineError, InvalidInput, ValidationFailed

__all__ = ["main"]

_DB_HELP = next(s for s in SETTINGS if s.name == "db").help + " [env GEO_ENGINE_DB]; or a " \
    "postgresql:// URL [env GEO_ENGINE_DATABASE_URL]"


def _fails_cleanly(fn: Callable) -> Callable:
    """Turn library errors into one line on stderr and exit 1."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValidationFailed as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            n = len(exc.problems)
            click.echo(f"{n} problem{'s' if n != 1 else ''} found; nothing was changed", err=True)
            sys.exit(1)
        except GeoEngineError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


class _Time(click.ParamType):
    """An RFC 3339 time (``2026-11-24T17:00:00Z``; without a zone, UTC)."""

    name = "TIME"

    def convert(self, value, param, ctx):
        from datetime import UTC, datetime

        if isinstance(value, datetime):
            return value
        try:
            t = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a time: give one like 2026-11-24T17:00:00Z (RFC 3339)", param, ctx)
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t


_TIME = _Time()


def _engine(db: str | None) -> Engine:
    return Engine(Settings.from_env(db=db))


def _db_option(fn: Callable) -> Callable:
    return click.option("--db", "db", default=None, metavar="PATH", help=_DB_HELP)(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geo-engine")
def cli() -> None:
    """geo-engine: stores, geofences and location-triggered offers, exact on the WGS84 ellipsoid."""


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--db", "db", default=None, metavar="PATH",
              help="also accept store_ids already in this database [env GEO_ENGINE_DB]")
@_fails_cleanly
def validate(files: tuple[str, ...], db: str | None) -> None:
    """Check GeoJSON/CSV store and geofence FILES; print every problem (exit 1 if any)."""
    settings = Settings.from_env(db=db)
    from .io.places import FileLimits, load_files

    known: set[str] = set()
    if db is not None:
        from .preflight import check_database

        check_database(settings.database)  # validating never creates a database
    if settings.database_url or Path(settings.db).is_file():
        known = Database(settings.database).places.store_ids()
    data = load_files(files, known_store_ids=known,
                      limits=FileLimits(settings.max_features, settings.max_ring_vertices))
    for notice in data.notices:
        click.echo(f"note: {notice}")
    click.echo(f"ok: {len(data.stores)} stores, {len(data.geofences)} geofences in "
               f"{len(files)} file{'s' if len(files) != 1 else ''}")


@cli.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_db_option
@_fails_cleanly
def import_(files: tuple[str, ...], db: str | None) -> None:
    """Validate FILES, then load them into the database, all or nothing."""
    engine = _engine(db)
    counts, data = engine.import_files(files)
    for notice in data.notices:
        click.echo(f"note: {notice}")
    total = engine.counts()
    click.echo(f"imported {counts['stores']} stores and {counts['geofences']} geofences into "
               f"{engine.path} (now {total['stores']} stores, {total['geofences']} geofences)")


def _point_options(fn: Callable) -> Callable:
    fn = click.option("--lon", type=float, required=True, help="longitude, degrees")(fn)
    return click.option("--lat", type=float, required=True, help="latitude, degrees")(fn)


@cli.command()
@_point_options
@click.option("-k", "k", type=int, default=None, help="how many stores (default 1)")
@click.option("--radius-m", type=float, default=None, help="every store within this many metres")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="print the same JSON as the HTTP API")
@_fails_cleanly
def nearest(lat: float, lon: float, k: int | None, radius_m: float | None, db: str | None,
            as_json: bool) -> None:
    """The nearest stores to a point, with WGS84 geodesic distances."""
    hits = _engine(db).nearest(lat, lon, k=k, radius_m=radius_m)
    if as_json:
        click.echo(json.dumps({"stores": [h.as_dict() for h in hits]}))
        return
    if not hits:
        click.echo("no stores" + (f" within {radius_m:g} m" if radius_m is not None else ""))
        return
    width = max(len(h.store_id) for h in hits)
    for rank, h in enumerate(hits, 1):
        click.echo(f"{rank:>3}  {h.store_id:<{width}}  {h.distance_m:>12,.1f} m  "
                   f"({h.lat:.6f}, {h.lon:.6f})  {h.name}")


@cli.command()
@_point_options
@click.option("--accuracy-m", type=float, default=0.0, show_default=True,
              help="GPS accuracy radius, metres")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="print the same JSON as GET /v1/locate")
@_fails_cleanly
def locate(lat: float, lon: float, accuracy_m: float, db: str | None, as_json: bool) -> None:
    """What a ping at a point would see: geofences (with confidence) and the nearest store."""
    where = _engine(db).locate(lat, lon, accuracy_m)
    if as_json:
        click.echo(json.dumps(where.as_dict()))
        return
    if not where.geofences:
        click.echo("in no geofence")
    for hit in where.geofences:
        click.echo(f"in geofence {hit.geofence_id} (store {hit.store_id}), confidence "
                   f"{hit.confidence}")
    if where.nearest_store:
        s = where.nearest_store
        click.echo(f"nearest store: {s.store_id} {s.name}, {s.distance_m:,.1f} m")


DATA = Path(__file__).resolve().parent.parent / "data"


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@_db_option
@click.option("--demo", is_flag=True, help="load the demo chain and campaigns into an empty database")
@click.option("--basemap", metavar="URL|FILE", help="the console's base map: a tile URL template "
              "(https://.../{z}/{x}/{y}.png) or a local .pmtiles archive of raster tiles [env "
              "GEO_ENGINE_BASEMAP]")
@click.option("--seed-week", is_flag=True, help="with --demo, on a database with no events yet: a "
              "week of simulated phones and a holdout campaign, for the console's results")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes serving on one port and one database")
@_fails_cleanly
def serve(host: str, port: int, db: str | None, demo: bool, basemap: str | None, seed_week: bool,
          workers: int) -> None:
    """Run the HTTP API (docs at /docs)."""
    import uvicorn

    from api.app import create_app

    from .apikeys import ensure_keys

    if basemap is not None:
        if not basemap.startswith(("http://", "https://")) and not (
                basemap.endswith(".pmtiles") and Path(basemap).is_file()):
            raise click.BadParameter("give a tile URL template (https://.../{z}/{x}/{y}.png) or an "
                                     "existing .pmtiles file", param_hint="--basemap")
        os.environ["GEO_ENGINE_BASEMAP"] = basemap  # (and every worker's)
    engine = _engine(db)
    if demo and engine.counts()["stores"] == 0:
        engine.import_files([DATA / "demo_stores.geojson"])
        for c in json.loads((DATA / "demo_campaigns.json").read_text()):
            engine.put_campaign(c["id"], c)
        click.echo(f"loaded the demo chain into {engine.path}", err=True)
    if demo and seed_week and engine.db.logs.latest_event_id() == 0:
        from dataclasses import replace

        from .demo import seed_week as seed

        click.echo("simulating a week of phones at the demo chain...", err=True)
        simulator = Engine(replace(engine.settings, trust_client_clock=True))  # replays the week
        done = seed(simulator)
        simulator.db.close()
        engine.reload()
        click.echo(f"simulated {done['phones']} phones, {done['pings']:,} pings: {done['pushed']} "
                   f"pushed the latte-trial offer, {done['held_out']} held out, {done['came_back']} "
                   "came back (see /console#results)", err=True)
    for kind, key in ensure_keys(engine.db.apikeys, engine.settings).items():
        click.echo(f"created the {kind} key (shown once, keep it): {key}", err=True)
    options = dict(host=host, port=port, access_log=False, log_level="warning",
                   timeout_graceful_shutdown=10)
    if workers > 1:
        # each worker is a new process that builds its own engine from the settings: the
        # database this one opened is the one they open
        where = engine.settings.database
        engine.db.close()
        if is_postgres_url(where):
            os.environ["GEO_ENGINE_DATABASE_URL"] = where
            path = engine.path
        else:
            path = os.environ["GEO_ENGINE_DB"] = str(Path(where).resolve())
        click.echo(f"geo-engine serving {path} on http://{host}:{port} with {workers} workers "
                   "(docs: /docs)", err=True)
        uvicorn.run("api.app:create_app_from_env", factory=True, workers=workers, **options)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine.start_serving()
    click.echo(f"geo-engine serving {engine.path} on http://{host}:{port} (docs: /docs)", err=True)
    uvicorn.run(create_app(engine), **options)


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="output file; its format from the extension (.csv, .parquet, .geojson, .gpkg)")
@_db_option
@click.option("--radius-m", type=float, default=5000.0, show_default=True,
              help="count the stores within this many metres")
@click.option("--at", "at", type=_TIME,
              default=None, help="score the offer as of this time (RFC 3339; default now, UTC)")
@click.option("--lat-col", default=None, help="the latitude column  [default: lat, latitude or y, "
              "in any case]")
@click.option("--lon-col", default=None, help="the longitude column  [default: lon, lng, longitude "
              "or x, in any case]")
@click.option("--address-col", default="address", show_default=True)
@click.option("--postal-col", default="postal_code", show_default=True)
@click.option("--country-col", default="country", show_default=True)
@click.option("--geocoder", default=None, help="a geopy geocoder for the address column, e.g. nominatim")
@click.option("--geocoder-url", default=None, help="where it runs, e.g. http://127.0.0.1:8080")
@click.option("--geocoder-option", "geocoder_options", multiple=True, metavar="NAME=VALUE",
              help="passed to the geopy geocoder, e.g. api_key=... (repeat for several)")
@click.option("--geocode-delay-s", type=float, default=1.0, show_default=True,
              help="seconds between look-ups (Nominatim's public policy is 1)")
@click.option("--postal-codes", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="a GeoNames postal-code file for countries beyond the built-in US ZIP codes")
@click.option("--chunk-rows", type=int, default=200_000, show_default=True,
              help="rows per chunk: memory is bounded by this, not by the file")
@click.option("--id-col", default=None, help="the customer id column: checked to be there, written "
              "first, shown on the report's map  [default: id, customer_id, ... when there is one]")
@click.option("--tile-url", default=None, metavar="URL",
              help="a base map for --report from this tile server, e.g. "
                   "http://127.0.0.1:8080/tile/{z}/{x}/{y}.png (the page fetches tiles when opened)")
@click.option("--pmtiles", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="a base map for --report from a local PMTiles archive of raster tiles (the tiles "
                   "in view are embedded: the page needs no network)")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="score on a Dask cluster at this scheduler address; 'local' starts one here")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write a self-contained HTML page: a map and the figures")
@_fails_cleanly
def score(input_path: Path, out: Path, db: str | None, radius_m: float, at, lat_col: str,
          lon_col: str, address_col: str, postal_col: str, country_col: str, geocoder: str | None,
          geocoder_url: str | None, geocoder_options: tuple[str, ...], geocode_delay_s: float,
          postal_codes: Path | None,
          chunk_rows: int, report_path: Path | None, id_col: str | None, tile_url: str | None,
          pmtiles: Path | None, scheduler: str | None) -> None:
    """Score a customer file: nearest store, stores in reach, geofences, the offer (SPEC 7)."""

    from tqdm import tqdm

    from .basemap import BaseMap
    from .io.customers import count_rows
    from .io.geocoding import parse_options
    from .preflight import check_database, plan_run
    from .report import MapSample, write_report
    from .scoring import score_file

    if not input_path.is_file():
        raise InvalidInput(f"{input_path}: no such file")
    base_map = BaseMap.open(tile_url, pmtiles)  # checked before anything is written
    if base_map is not None and report_path is None:
        raise InvalidInput("--tile-url and --pmtiles draw the --report's base map; add --report FILE.html")
    geocoder_opts = parse_options(geocoder_options)
    settings = Settings.from_env(db=db)
    check_database(settings.database)  # a scoring run never creates an empty database
    engine = Engine(settings)
    plan = plan_run(input_path, out, report_path, stores=engine.counts()["stores"],
                    radius_m=radius_m, chunk_rows=chunk_rows, lat_col=lat_col, lon_col=lon_col,
                    id_col=id_col, address_col=address_col, postal_col=postal_col)
    for note in plan.notes:
        click.echo(f"note: {note}")
    sample = MapSample() if report_path is not None else None  # the map's points
    with tqdm(total=count_rows(input_path), unit="rows", disable=not sys.stderr.isatty(),
              desc="scoring") as bar:
        run = score_file(
            engine, input_path, out, radius_m=radius_m, at=at,
            lat_col=plan.lat_col or "lat", lon_col=plan.lon_col or "lon", chunk_rows=chunk_rows,
            id_col=plan.id_col, delimiter=plan.delimiter, decimal=plan.decimal, commit=False,
            scheduler=scheduler, postal_codes_file=postal_codes,
            geocoder=(geocoder, geocoder_url, geocode_delay_s, geocoder_opts) if geocoder else None,
            sample=sample, progress=bar.update, address_col=address_col, postal_col=postal_col,
            country_col=country_col)
    try:  # the report first, beside its path; then both in place: a failure changes neither
        if sample is not None:
            partial = report_path.with_name(f".{report_path.name}.partial")
            write_report(partial, engine.snapshot.places.stores, rows=run.rows,
                         statuses=run.statuses, near=run.near, sample=sample.frame,
                         radius_m=radius_m, seconds=run.seconds, base_map=base_map,
                         id_col=run.id_col, fences=engine.snapshot.places.geofences,
                         offers=sample.offers, store_offers=sample.store_offers,
                         at=at.isoformat() if at is not None else "", source=str(input_path))
            partial.replace(report_path)
    except BaseException:
        run.abort()
        if sample is not None:
            partial.unlink(missing_ok=True)
        raise
    run.commit()
    _say_scored(run, out, report_path, radius_m, geocoder)


def _say_scored(run, out: Path, report_path: Path | None, radius_m: float, geocoder: str | None) -> None:
    """What a finished scoring run prints: rows by status, the report, the top stores."""
    rows, took, statuses = run.rows, run.seconds, run.statuses
    click.echo(f"scored {rows:,} rows in {took:.1f} s ({rows / max(took, 1e-9):,.0f} rows/s) into {out}")
    for k in sorted(statuses):
        click.echo(f"  {k:<22} {statuses[k]:>12,}")
    if statuses.get("not_geocoded") and not geocoder:
        click.echo("  (rows with only an address need --geocoder, e.g. --geocoder nominatim "
                   "--geocoder-url http://your-nominatim:8080)")
    if run.geocoder_requests is not None:
        click.echo(f"  geocoder look-ups: {run.geocoder_requests:,} (the rest from the cache)")
    if report_path is not None:
        click.echo(f"  report: {report_path}")
    top = sorted(run.near.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    if top:
        click.echo(f"  top stores by customers within {radius_m:g} m:")
        for sid, count in top:
            click.echo(f"    {sid:<20} {count:>10,}")


@cli.command()
@_db_option
@click.option("--rotate", type=click.Choice(["admin", "publishable"]), help="replace this key")
@_fails_cleanly
def keys(db: str | None, rotate: str | None) -> None:
    """List the active API keys (by prefix), or rotate one."""
    from .apikeys import rotate_key

    database = Database(Settings.from_env(db=db).database)
    if rotate:
        click.echo(f"new {rotate} key (shown once; the old one no longer works): "
                   f"{rotate_key(database.apikeys, rotate)}")
        return
    for kind, prefix, created in database.apikeys.active():
        click.echo(f"{kind:<12} {prefix}...  created {created}")


@cli.command()
@_db_option
@_fails_cleanly
def migrate(db: str | None) -> None:
    """Make the database's schema, or bring it up to this version's, and say which it is."""
    database = Database(Settings.from_env(db=db).database)
    click.echo(f"{database.path}: schema version {database.sql.schema_version}")
    database.close()


from .cli_catalog import campaigns, stores  # noqa: E402 - they use the helpers above
from .cli_results import results  # noqa: E402

cli.add_command(campaigns)
cli.add_command(results)
cli.add_command(stores)


def main() -> None:
    """Entry point: run the CLI. A mistyped option or value is one sentence and exit 2 (not
    click's usage block); an unexpected error is reported in one line, as a bug."""
    try:
        code = cli.main(prog_name="geo-engine", standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command: its help, as click shows it
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if exc.ctx is not None else "geo-engine"
        click.echo(f"error: {exc.format_message()} (see {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("error: stopped", err=True)
        sys.exit(1)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: still no traceback for the user
        click.echo(f"error: internal error ({type(exc).__name__}: {exc}); this is a bug, please "
                   "report it", err=True)
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)
