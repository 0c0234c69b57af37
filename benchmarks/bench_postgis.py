"""geo-engine beside PostGIS on the same stores: nearest-1 and within 1 km, one query at a time
and in bulk, with the answers compared.

    python benchmarks/bench_postgis.py                                  # 100k and 1M stores
    python benchmarks/bench_postgis.py --stores 100000 --queries 500 --customers 100000

PostGIS is Debian's (``postgresql-<version>-postgis-3`` for the installed server), installed
here when missing, in a throwaway cluster on 127.0.0.1 (``tests/pgcluster.py``). The stores are
a chain packed around cities (``data/generate.py``), in ``stores(id, geog geography)`` with a
GiST index on ``geog``. For each store count:

* **per query**, the same random points near the stores: PostGIS's KNN
  (``ORDER BY geog <-> $1 LIMIT 1``, with ``ST_Distance``) and every store within 1 km with its
  ``ST_Distance``, nearest first (``ST_DWithin(geog, $1, 1000)``), as the engine answers, over
  one connection with prepared statements, against the engine's ``nearest_one`` and ``within``
  in process, and ``GET /v1/stores/nearest`` and ``/v1/stores/within`` of a ``geo-engine serve``
  over HTTP (one keep-alive client, one request at a time): the median microseconds of each;
* **in bulk**, customers around the same cities: ``CROSS JOIN LATERAL (... ORDER BY <-> LIMIT 1)``
  over a customers table against ``geo-engine score`` on the same customers (which also counts
  the stores in reach, finds the geofences and decides the offer), seconds each.

PostGIS ranks KNN candidates by distance on the sphere, the engine by the WGS84 geodesic: where
their nearest stores differ, the geodesic (``pyproj.Geod.inv``) says which is nearer; those
rows are counted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "data"))
sys.path.insert(0, str(ROOT / "tests"))

import generate  # noqa: E402
from pgcluster import Cluster, postgres_bin  # noqa: E402

from geo_engine import Engine, Settings, Store  # noqa: E402
from geo_engine.geodesy import GEOD  # noqa: E402


def ensure_postgis() -> None:
    """Debian's PostGIS for the installed server, installed when missing."""
    version = postgres_bin().parent.name
    if Path(f"/usr/share/postgresql/{version}/extension/postgis.control").exists():
        return
    print(f"# installing postgresql-{version}-postgis-3 from Debian (apt-get)", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", f"postgresql-{version}-postgis-3"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def load_postgis(conn, ids, lats, lons, table: str) -> float:
    """A table of points with a GiST index on geography; return the seconds it took."""
    t = time.perf_counter()
    conn.execute(f"CREATE TABLE {table} (id TEXT COLLATE \"C\" PRIMARY KEY, geog geography(Point, 4326))")
    with conn.cursor().copy(f"COPY {table} (id, geog) FROM STDIN") as copy:
        for i, la, lo in zip(ids, lats, lons, strict=True):
            copy.write_row((str(i), f"SRID=4326;POINT({float(lo)!r} {float(la)!r})"))
    conn.execute(f"CREATE INDEX {table}_geog ON {table} USING gist (geog)")
    conn.execute(f"ANALYZE {table}")
    return time.perf_counter() - t


def per_query(fn, points) -> tuple[float, list]:
    """The median microseconds of ``fn(lat, lon)`` over the points, and its answers."""
    times, answers = [], []
    for la, lo in points:
        t = time.perf_counter()
        answers.append(fn(la, lo))
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6, answers


def compare_nearest(points, ours: list, theirs: list, lats, lons, index_of) -> tuple[int, int]:
    """(rows where the nearest stores differ, of them those where the engine's is the nearer
    or as near by the geodesic)."""
    differ = right = 0
    for (la, lo), a, b in zip(points, ours, theirs, strict=True):
        if a == b:
            continue
        differ += 1
        ia, ib = index_of[a], index_of[b]
        da = GEOD.inv(lo, la, lons[ia], lats[ia])[2]
        db = GEOD.inv(lo, la, lons[ib], lats[ib])[2]
        right += da <= db
    return differ, right


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", default="100000,1000000", help="store counts, comma-separated")
    ap.add_argument("--queries", type=int, default=2000, help="points asked one at a time")
    ap.add_argument("--customers", type=int, default=1_000_000, help="rows of the bulk run")
    ap.add_argument("--http", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the engine over HTTP (geo-engine serve)")
    args = ap.parse_args()
    ensure_postgis()
    import psycopg

    print(f"# bench_postgis on {platform.node()} ({os.cpu_count()} cores), Python "
          f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# command: python benchmarks/bench_postgis.py {' '.join(sys.argv[1:])}")
    rows = []
    with Cluster() as cluster, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = cluster.new_database("gis")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
            print(f"# {conn.execute('SELECT postgis_full_version()').fetchone()[0][:60]}...")
        for n in (int(s) for s in args.stores.split(",")):
            rows += one_size(n, args, url, tmp)
    print()
    print("| stores | query | geo-engine in process | geo-engine over HTTP | PostGIS | PostGIS / in process "
          "| answers differ | of them the engine's nearer by the geodesic |")
    print("|---|---|---|---|---|---|---|---|")
    for n, what, ours, http, theirs, differ, right in rows:
        unit = "s" if "bulk" in what else "us"
        print(f"| {n:,} | {what} | {_fmt(ours, unit)} | {_fmt(http, unit)} | {_fmt(theirs, unit)} | "
              f"{theirs / ours:.1f}x | "
              f"{differ:,} | {'' if right is None else f'{right:,}'} |")


def _fmt(v: float, unit: str) -> str:
    if v != v:  # NaN: not measured
        return ""
    return f"{v:.1f} {unit}" if v >= 10 else f"{v:.3g} {unit}"


def one_size(n: int, args, url: str, tmp: Path) -> list[tuple]:
    """Every row of the table for ``n`` stores."""
    import httpx
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    ids, lats, lons = generate.stores(n, "city", seed=41)
    index_of = {i: k for k, i in enumerate(ids)}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS stores, customers, nearest")
        pg_load = load_postgis(conn, ids, lats, lons, "stores")
    t = time.perf_counter()
    db = tmp / f"stores{n}.db"
    engine = Engine(Settings(db=str(db)))
    engine.db.places.import_dataset([Store(id=i, lat=float(a), lon=float(o), timezone="UTC")
                                     for i, a, o in zip(ids, lats, lons, strict=True)], [])
    engine.reload()
    index = engine.snapshot.places.store_index
    index.prepare_point_queries()
    ours_load = time.perf_counter() - t
    rng = np.random.default_rng(43)
    k = rng.integers(0, n, args.queries)
    qlons, qlats, _ = GEOD.fwd(lons[k], lats[k], rng.uniform(0, 360, args.queries),
                               rng.uniform(0, 3000, args.queries))
    points = list(zip(qlats.tolist(), qlons.tolist(), strict=True))
    s_ids = engine.snapshot.places.stores.ids
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        q_near = ("SELECT id, ST_Distance(geog, ST_MakePoint(%s, %s)::geography) FROM stores "
                  "ORDER BY geog <-> ST_MakePoint(%s, %s)::geography LIMIT 1")
        # like the engine's answer: every store within 1 km with its distance, nearest first
        q_within = ("SELECT id, d FROM (SELECT id, ST_Distance(geog, ST_MakePoint(%s, %s)::geography) "
                    "AS d FROM stores WHERE ST_DWithin(geog, ST_MakePoint(%s, %s)::geography, 1000)) s "
                    "ORDER BY d, id")
        pg_near_us, pg_near = per_query(
            lambda la, lo: conn.execute(q_near, (lo, la, lo, la)).fetchone()[0], points)
        pg_within_us, pg_within = per_query(
            lambda la, lo: conn.execute(q_within, (lo, la, lo, la)).fetchall(), points)
    near_us, near = per_query(lambda la, lo: index.nearest_one(la, lo), points)
    within_us, within = per_query(lambda la, lo: index.within(la, lo, 1000.0), points)
    near = [str(s_ids[p]) for p, _ in near]  # compared after the clock
    differ, engine_right = compare_nearest(points, near, pg_near, lats, lons, index_of)
    within_differ = sum(sorted(str(s_ids[p]) for p in ours[0]) != sorted(r[0] for r in theirs)
                        for ours, theirs in zip(within, pg_within, strict=True))
    http_near_us = http_within_us = float("nan")
    if args.http:
        http_near_us, http_within_us = _over_http(db, tmp, points, httpx)
    rows.append((n, "nearest-1", near_us, http_near_us, pg_near_us, differ, engine_right))
    rows.append((n, "within 1 km", within_us, http_within_us, pg_within_us, within_differ, None))
    # bulk: the customers of the same cities
    cust_ids, cust_lats, cust_lons = next(generate.customer_chunks(args.customers, "city", seed=44,
                                                                   chunk=args.customers))
    parquet = tmp / f"customers{n}.parquet"
    pq.write_table(pa.table({"customer_id": cust_ids.astype(str), "lat": cust_lats, "lon": cust_lons}),
                   parquet)
    with psycopg.connect(url, autocommit=True) as conn:
        load_postgis(conn, cust_ids.astype(str), cust_lats, cust_lons, "customers")
        t = time.perf_counter()
        conn.execute("CREATE TABLE nearest AS SELECT c.id AS customer_id, s.id AS store_id, "
                     "ST_Distance(c.geog, s.geog) AS distance_m FROM customers c CROSS JOIN LATERAL "
                     "(SELECT id, geog FROM stores ORDER BY c.geog <-> geog LIMIT 1) s")
        pg_bulk = time.perf_counter() - t
        theirs = dict(conn.execute("SELECT customer_id, store_id FROM nearest").fetchall())
    # like for like: the nearest store of every customer, in process (StoreIndex.nearest_bulk,
    # the step of `score` that PostGIS's query does), with its exact geodesic distance
    t = time.perf_counter()
    slots, _ = index.nearest_bulk(cust_lats, cust_lons)
    ours_nearest_bulk = time.perf_counter() - t
    engine.db.close()
    out = tmp / f"scored{n}.parquet"
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(parquet), "--out", str(out),
                        "--db", str(db), "--at", "2026-11-24T17:00:00Z"], capture_output=True, text=True)
    ours_bulk = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(r.stderr)
    scored = pq.read_table(out, columns=["customer_id", "nearest_store_id"]).to_pydict()
    ours_near = dict(zip(scored["customer_id"], scored["nearest_store_id"], strict=True))
    bulk_points = list(zip(cust_lats.tolist(), cust_lons.tolist(), strict=True))
    keys = cust_ids.astype(str).tolist()
    b_differ, b_right = compare_nearest(bulk_points, [ours_near[c] for c in keys],
                                        [theirs[c] for c in keys], lats, lons, index_of)
    in_process = [str(s_ids[p]) for p in np.asarray(slots).reshape(len(keys), -1)[:, 0]]
    n_differ, n_right = compare_nearest(bulk_points, in_process, [theirs[c] for c in keys], lats, lons,
                                        index_of)
    rows.append((n, f"bulk nearest, {args.customers:,} customers, in process (s)", ours_nearest_bulk,
                 float("nan"), pg_bulk, n_differ, n_right))
    rows.append((n, f"bulk nearest, {args.customers:,} customers, `geo-engine score` (s)", ours_bulk,
                 float("nan"), pg_bulk, b_differ, b_right))
    print(f"# {n:,} stores: loaded into PostGIS (COPY + GiST) in {pg_load:.1f} s, into the engine "
          f"(SQLite + index) in {ours_load:.1f} s", flush=True)
    return rows


def _over_http(db: Path, tmp: Path, points, httpx) -> tuple[float, float]:
    """Median microseconds of /v1/stores/nearest and /v1/stores/within over HTTP (keep-alive)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_ENGINE_")}
    env.update(GEO_ENGINE_PUBLISHABLE_KEY="bench-pub", GEO_ENGINE_ADMIN_KEY="bench-admin",
               GEO_ENGINE_KEY_PINGS_PER_S="0")
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "geo_engine", "serve", "--db", str(db), "--port",
                             str(port)], env=env, stdout=log, stderr=log, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("serve did not come up") from None
                time.sleep(0.2)
        with httpx.Client(base_url=base, headers={"Authorization": "Bearer bench-pub"}) as client:
            near, _ = per_query(lambda la, lo: client.get(
                "/v1/stores/nearest", params={"lat": la, "lon": lo}).raise_for_status(), points)
            within, _ = per_query(lambda la, lo: client.get(
                "/v1/stores/within", params={"lat": la, "lon": lo, "radius_m": 1000}
            ).raise_for_status(), points)
        return near, within
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(tmp / "unused", ignore_errors=True)


if __name__ == "__main__":
    main()
