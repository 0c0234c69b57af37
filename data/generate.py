"""Make large synthetic datasets for benchmarks: stores, geofences and customers.

    python data/generate.py stores -n 1000000 --layout worldwide -o benchmarks/data/stores_1m.csv
    python data/generate.py fences -n 100000 --layout city -o benchmarks/data/fences_100k.geojson
    python data/generate.py customers -n 10000000 --layout city -o benchmarks/data/customers_10m.csv

Layouts: ``worldwide`` spreads points uniformly over the sphere (poles and the antimeridian
included); ``city`` packs them around 50 real cities (Gaussian, 8 km spread), among them
cities near the antimeridian (Suva, Anadyr) and far north (Tromsø, Nuuk). Output is seeded and
written in chunks with a progress bar, so 10M customers fit in little memory. The functions are
imported by ``benchmarks/``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

CITIES = np.array([
    (35.68, 139.69), (28.61, 77.21), (31.23, 121.47), (-23.55, -46.63), (19.43, -99.13),
    (30.04, 31.24), (19.08, 72.88), (39.90, 116.41), (23.81, 90.41), (34.69, 135.50),
    (40.71, -74.01), (24.86, 67.01), (-34.60, -58.38), (41.01, 28.98), (22.57, 88.36),
    (14.60, 120.98), (6.52, 3.38), (-22.91, -43.17), (34.05, -118.24), (55.76, 37.62),
    (48.86, 2.35), (51.51, -0.13), (-6.21, 106.85), (37.57, 126.98), (-12.05, -77.04),
    (13.76, 100.50), (41.88, -87.63), (-33.87, 151.21), (43.65, -79.38), (1.35, 103.82),
    (52.52, 13.40), (40.42, -3.70), (-26.20, 28.05), (37.77, -122.42), (60.17, 24.94),
    (59.33, 18.07), (64.15, -21.94), (61.22, -149.90), (-18.14, 178.44), (-36.85, 174.76),
    (64.18, -51.72), (69.65, 18.96), (-54.80, -68.30), (21.31, -157.86), (49.28, -123.12),
    (-1.29, 36.82), (25.20, 55.27), (35.69, 51.39), (53.02, 158.65), (64.73, 177.51),
])
CITY_SPREAD_M = 8_000.0
LAYOUTS = ("worldwide", "city")


def points(n: int, layout: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` (lats, lons) in degrees for a layout."""
    if layout == "worldwide":
        return np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n))), rng.uniform(-180.0, 180.0, n)
    if layout != "city":
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    centre = CITIES[rng.integers(0, len(CITIES), n)]
    north = rng.normal(0.0, CITY_SPREAD_M, n)
    east = rng.normal(0.0, CITY_SPREAD_M, n)
    lats = np.clip(centre[:, 0] + north / 111_320.0, -89.9, 89.9)
    lons = centre[:, 1] + east / (111_320.0 * np.cos(np.radians(lats)))
    return lats, (lons + 180.0) % 360.0 - 180.0


def store_ids(n: int) -> np.ndarray:
    """Ids ``s0000000``...: zero-padded, so id order is creation order."""
    width = max(7, len(str(n - 1)))
    return np.array([f"s{i:0{width}d}" for i in range(n)], dtype=object)


def stores(n: int, layout: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``n`` stores as (ids, lats, lons), ids sorted."""
    lats, lons = points(n, layout, np.random.default_rng(seed))
    return store_ids(n), lats, lons


def fence_features(n: int, layout: str, seed: int = 2) -> Iterator[dict]:
    """Yield ``n`` stores and ``n`` geofences as GeoJSON features: half circles, half polygons.

    Polygons are irregular hexagons of 100 to 400 m around their store.
    """
    rng = np.random.default_rng(seed)
    ids, lats, lons = stores(n, layout, seed)
    radius = rng.uniform(50.0, 500.0, n)
    for i in range(n):
        lat, lon = float(lats[i]), float(lons[i])
        yield {"type": "Feature", "properties": {"kind": "store", "id": ids[i]},
               "geometry": {"type": "Point", "coordinates": [lon, lat]}}
        props = {"id": f"g{ids[i][1:]}", "store_id": ids[i]}
        if i % 2:
            props["radius_m"] = round(float(radius[i]), 1)
            geom = {"type": "Point", "coordinates": [lon, lat]}
        else:
            # evenly spaced with jitter: every gap under 180 degrees, so the ring is simple
            angles = (np.arange(6) + rng.uniform(0.0, 0.8, 6)) * (2 * np.pi / 6)
            r = rng.uniform(100.0, 400.0, 6)
            dlat = r * np.sin(angles) / 111_320.0
            dlon = r * np.cos(angles) / (111_320.0 * max(np.cos(np.radians(lat)), 0.01))
            ring = [[round((lon + x + 180.0) % 360.0 - 180.0, 7), round(min(89.99, lat + y), 7)]
                    for x, y in zip(dlon, dlat, strict=True)]
            geom = {"type": "Polygon", "coordinates": [ring + [ring[0]]]}
        yield {"type": "Feature", "properties": props, "geometry": geom}


def customer_chunks(n: int, layout: str, seed: int = 3, chunk: int = 1_000_000):
    """Yield (ids, lats, lons) chunks of customers, ``chunk`` rows at a time."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        lats, lons = points(size, layout, rng)
        yield np.arange(start, start + size), lats, lons


def _write_csv(path: Path, header: str, chunks, total: int) -> None:
    with path.open("w") as out, tqdm(total=total, unit="rows", disable=not sys.stderr.isatty()) as bar:
        out.write(header + "\n")
        for first, second, lats, lons, extra in chunks:
            lines = [f"{a},{b},{la:.7f},{lo:.7f}{e}" for a, b, la, lo, e in
                     zip(first, second, lats.tolist(), lons.tolist(), extra, strict=True)]
            out.write("\n".join(lines) + "\n")
            bar.update(len(lines))


@click.group()
def cli() -> None:
    """Make seeded synthetic datasets for the benchmarks."""


def _common(fn):
    fn = click.option("--seed", default=1, show_default=True)(fn)
    fn = click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True)(fn)
    fn = click.option("--layout", type=click.Choice(LAYOUTS), default="worldwide", show_default=True)(fn)
    return click.option("-n", "count", type=int, required=True, help="how many")(fn)


@cli.command(name="stores")
@_common
def stores_cmd(count: int, layout: str, out: Path, seed: int) -> None:
    """A store list CSV (id, store_id, lat, lon, radius_m): stores with a 150 m circle each."""
    out.parent.mkdir(parents=True, exist_ok=True)
    ids, lats, lons = stores(count, layout, seed)
    chunk = 500_000
    parts = ((["g" + s[1:] for s in ids[i:i + chunk]], ids[i:i + chunk], lats[i:i + chunk],
              lons[i:i + chunk], [",150"] * len(ids[i:i + chunk])) for i in range(0, count, chunk))
    _write_csv(out, "id,store_id,lat,lon,radius_m", parts, count)
    click.echo(f"wrote {count:,} stores to {out}")


@cli.command(name="fences")
@_common
def fences_cmd(count: int, layout: str, out: Path, seed: int) -> None:
    """A GeoJSON FeatureCollection of stores, each with a circle or polygon geofence."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        f.write('{"type": "FeatureCollection", "features": [\n')
        for i, feature in enumerate(tqdm(fence_features(count, layout, seed), total=2 * count,
                                         disable=not sys.stderr.isatty())):
            f.write((",\n" if i else "") + json.dumps(feature))
        f.write("\n]}\n")
    click.echo(f"wrote {count:,} stores and {count:,} geofences to {out}")


@cli.command(name="customers")
@_common
def customers_cmd(count: int, layout: str, out: Path, seed: int) -> None:
    """A customer CSV (customer_id, segment, lat, lon), written in chunks."""
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = ((ids.tolist(), ["retail"] * len(ids), lats, lons, [""] * len(ids))
             for ids, lats, lons in customer_chunks(count, layout, seed))
    _write_csv(out, "customer_id,segment,lat,lon", parts, count)
    click.echo(f"wrote {count:,} customers to {out}")


if __name__ == "__main__":
    cli()
