"""Benchmark batch scoring beside geopandas' sjoin_nearest in a projected CRS, in the same run.

    python benchmarks/bench_score.py                          # 1M customers over 10k stores
    python benchmarks/bench_score.py --sizes 1000000,10000000 # and 10M (minutes, GBs for sjoin)
    python benchmarks/bench_score.py --sizes 50000000 --impls ours  # memory stays bounded

Customers and stores are packed around 50 cities (``data/generate.py``, city layout), written
to Parquet. Each implementation runs in its own process, so its peak memory (max RSS) is its
own: geo-engine's ``score`` command run in that process (chunked read, exact WGS84 geodesics,
all SPEC 7 columns, Parquet out; imports before the clock starts, as for the baseline) and the
approach an analyst would otherwise take: read everything with geopandas, project to Web
Mercator and ``sjoin_nearest`` (planar, nearest only). ``differs %`` is how often the
baseline's nearest store is not the geodesic nearest.
"""

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "data"))


def make_inputs(tmp: Path, n_customers: int, n_stores: int) -> tuple[Path, Path, Path]:
    import generate
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geo_engine import Engine, Geofence, Settings, Store

    ids, lats, lons = generate.stores(n_stores, "city", seed=21)
    db = tmp / "stores.db"
    engine = Engine(Settings(db=str(db)))
    engine.db.places.import_dataset(
        [Store(id=i, lat=float(a), lon=float(o), timezone="UTC")
         for i, a, o in zip(ids, lats, lons, strict=True)],
        [Geofence(id=f"g{i[1:]}", store_id=i, lat=float(a), lon=float(o), radius_m=150.0)
         for i, a, o in zip(ids, lats, lons, strict=True)])
    stores = tmp / "stores.parquet"
    gpd.GeoDataFrame({"store_id": ids.astype(str)}, geometry=gpd.points_from_xy(lons, lats),
                     crs="EPSG:4326").to_parquet(stores)
    customers = tmp / f"customers_{n_customers}.parquet"
    writer = None
    for cid, clat, clon in generate.customer_chunks(n_customers, "city", seed=22, chunk=1_000_000):
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


def run_sjoin(stores: str, customers: str, out: str) -> dict:
    import geopandas as gpd
    import pandas as pd

    t = time.perf_counter()
    df = pd.read_parquet(customers)
    cust = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs="EPSG:4326")
    shops = gpd.read_parquet(stores)
    joined = gpd.sjoin_nearest(cust.to_crs(3857), shops.to_crs(3857), distance_col="distance_m")
    joined = joined[~joined.index.duplicated()]
    joined[["customer_id", "store_id", "distance_m"]].to_parquet(out)
    return {"seconds": time.perf_counter() - t}


def child(args) -> None:
    """Run one implementation and print its time and peak memory as JSON."""
    result = run_ours(args.db, args.customers, args.out) if args.child == "ours" else \
        run_sjoin(args.stores, args.customers, args.out)
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
    for name in ("db", "stores-file", "customers", "out"):
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
    print("| customers | implementation | seconds | rows/s | peak memory MB | differs % |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in (int(s) for s in args.sizes.split(",")):
            db, stores, customers = make_inputs(tmp, n, args.stores)
            results = {}
            for impl in args.impls.split(","):
                out = tmp / f"{impl}_{n}.parquet"
                r = subprocess.run([sys.executable, __file__, "--child", impl, "--db", str(db),
                                    "--stores-file", str(stores), "--customers", str(customers),
                                    "--out", str(out)], capture_output=True, text=True)
                if r.returncode:
                    print(f"| {n:,} | {impl} | failed: {r.stderr.strip().splitlines()[-1][:80]} | | | |")
                    continue
                results[impl] = json.loads(r.stdout) | {"out": out}
            if "ours" in results:
                ours = pd.read_parquet(results["ours"]["out"], columns=["nearest_store_id"])
            for impl, name in (("ours", "geo-engine score (exact, all SPEC 7 columns)"),
                               ("sjoin", "geopandas sjoin_nearest, EPSG:3857 (nearest only)")):
                if impl not in results:
                    continue
                r = results[impl]
                differs = ""
                if impl == "sjoin" and "ours" in results:
                    theirs = pd.read_parquet(r["out"], columns=["store_id"])["store_id"].to_numpy()
                    differs = f"{100 * (theirs != ours['nearest_store_id'].to_numpy()).mean():.2f}"
                print(f"| {n:,} | {name} | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | "
                      f"{r['peak_mb']:,.0f} | {differs} |", flush=True)


if __name__ == "__main__":
    main()
