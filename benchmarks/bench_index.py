"""Benchmark the geo core's indexes beside brute force, plain rtree and shapely's STRtree.

    python benchmarks/bench_index.py                       # 10k, 100k, 1M stores; 100k geofences
    python benchmarks/bench_index.py --sizes 10000 --queries 500 --fences 10000   # a quick look

Everything is measured in one run on the same seeded data, so compare ratios (this machine is
shared and noisy). Single queries are timed one by one (p50/p99 in microseconds); geodesic metres
are included for every implementation (a baseline computes them for the answer it picked).
``wrong %`` is how often an answer's ids differ from the exact one (ours, itself checked against a
brute-force geodesic scan in the same run: the ``exact check`` line). Baselines on raw lon/lat:
STRtree and rtree rank by planar degrees, which is what a hand-rolled index does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rtree
import shapely
from shapely import STRtree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "data"))

import generate  # noqa: E402

from geo_engine import FenceIndex, StoreIndex, parse_geojson  # noqa: E402
from geo_engine.geodesy import GEOD, distances_m  # noqa: E402

M_PER_DEG = 111_320.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed(fn, args) -> tuple[np.ndarray, list]:
    """Run fn(*a) for each a; return microseconds per call and the answers (after a warm-up)."""
    for a in args[:20]:
        fn(*a)
    out, ts = [], np.empty(len(args))
    clock = time.perf_counter_ns
    for i, a in enumerate(args):
        t = clock()
        out.append(fn(*a))
        ts[i] = clock() - t
    return ts / 1000.0, out


class Table:
    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def add(self, section, n, op, impl, us=None, ops=None, ratio=None, wrong=None, note=""):
        p50 = f"{np.percentile(us, 50):.1f}" if us is not None else "-"
        p99 = f"{np.percentile(us, 99):.1f}" if us is not None else "-"
        if ops is None and us is not None:
            ops = 1e6 / float(np.mean(us))
        self.rows.append([section, f"{n:,}", op, impl, p50, p99,
                          f"{ops:,.0f}" if ops is not None else "-",
                          f"{ratio:.2f}x" if ratio is not None else "-",
                          f"{wrong:.1f}" if wrong is not None else "-", note])
        print(" | ".join(self.rows[-1]), flush=True)

    def markdown(self) -> str:
        head = ["section", "n", "operation", "implementation", "p50 us", "p99 us", "ops/s",
                "p50 vs ours", "wrong %", "note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def wrong_pct(got: list, want: list) -> float:
    bad = sum(list(map(int, g)) != list(map(int, w)) for g, w in zip(got, want, strict=True))
    return 100.0 * bad / max(1, len(want))


# --- baselines ---------------------------------------------------------------------------------

def brute_rank(lats, lons, lat, lon):
    d = np.asarray(GEOD.inv(np.full(len(lats), lon), np.full(len(lats), lat), lons, lats)[2])
    return d


def brute_nearest(lats, lons, k):
    def q(lat, lon):
        d = brute_rank(lats, lons, lat, lon)
        part = np.argpartition(d, k)[: k + 8] if len(d) > k + 8 else np.arange(len(d))
        # exact ties by id: take every store at the k-th distance, then sort (distance, id)
        kth = np.sort(d[part])[k - 1]
        cand = np.flatnonzero(d <= kth)
        order = np.lexsort((cand, d[cand]))[:k]
        return cand[order]
    return q


def brute_within(lats, lons, r):
    def q(lat, lon):
        d = brute_rank(lats, lons, lat, lon)
        cand = np.flatnonzero(d <= r)
        return cand[np.lexsort((cand, d[cand]))]
    return q


def geod_to(lats, lons, lat, lon, idx):
    return [GEOD.inv(lon, lat, lons[i], lats[i])[2] for i in idx]


# --- stores ------------------------------------------------------------------------------------

def bench_stores(table: Table, n: int, n_queries: int, layout: str, builds: list) -> None:
    gc.collect()
    base = rss_mb()
    ids, lats, lons = generate.stores(n, layout, seed=1)
    arrays_mb = rss_mb() - base
    mark = rss_mb()
    t0 = time.perf_counter()
    ours = StoreIndex(lats, lons)
    builds.append((n, "geo-engine StoreIndex (pykdtree, unit sphere, Morton order)",
                   time.perf_counter() - t0, rss_mb() - mark, arrays_mb))
    mark = rss_mb()
    t0 = time.perf_counter()
    st = STRtree(shapely.points(lons, lats))
    builds.append((n, "shapely STRtree (raw lon/lat)", time.perf_counter() - t0, rss_mb() - mark, None))
    mark = rss_mb()
    t0 = time.perf_counter()
    pts = np.column_stack([lons, lats])
    rt = rtree.index.Index((np.arange(n, dtype=np.int64), pts, pts))
    builds.append((n, "rtree (libspatialindex, raw lon/lat)", time.perf_counter() - t0,
                   rss_mb() - mark, None))

    rng = np.random.default_rng(2)
    qlats, qlons = generate.points(n_queries, layout, rng)
    queries = list(zip(qlats.tolist(), qlons.tolist(), strict=True))
    brute_reps = max(10, min(n_queries, 2_000_000 // n))
    bq = queries[:brute_reps]

    for k in (1, 5):
        op = f"nearest-{k}"
        us_ours, ans = timed(lambda a, o, k=k: ours.nearest(a, o, k), queries)
        exact = [a[0] for a in ans]
        table.add("stores", n, op, "geo-engine", us_ours, wrong=None)
        us_b, b_ans = timed(brute_nearest(lats, lons, k), bq)
        table.add("stores", n, op, "brute-force numpy (Geod.inv over all)", us_b,
                  ratio=np.median(us_b) / np.median(us_ours), wrong=wrong_pct(b_ans, exact[:len(bq)]))
        # the exact check: ours equals the brute-force scan on these queries
        check = wrong_pct(exact[:len(bq)], b_ans)
        table.add("stores", n, op, "exact check: geo-engine vs brute force", None, wrong=check,
                  note=f"{len(bq)} queries")

        def rt_q(lat, lon, k=k):
            idx = list(rt.nearest((lon, lat, lon, lat), k))[:k]
            geod_to(lats, lons, lat, lon, idx)
            return idx
        us_r, r_ans = timed(rt_q, queries)
        table.add("stores", n, op, "rtree nearest (raw lon/lat) + geodesic", us_r,
                  ratio=np.median(us_r) / np.median(us_ours), wrong=wrong_pct(r_ans, exact))
        if k == 1:
            def st_q(lat, lon):
                idx = st.query_nearest(shapely.Point(lon, lat))[:1]
                geod_to(lats, lons, lat, lon, idx)
                return idx
            us_s, s_ans = timed(st_q, queries)
            table.add("stores", n, op, "STRtree query_nearest (raw lon/lat) + geodesic", us_s,
                      ratio=np.median(us_s) / np.median(us_ours), wrong=wrong_pct(s_ans, exact))

    radius = 1000.0
    op = "within 1 km"
    # around a random store (up to 800 m off), so there is something to find
    near = rng.integers(0, n, n_queries)
    wlon, wlat, _ = GEOD.fwd(lons[near], lats[near], rng.uniform(0, 360, n_queries),
                             rng.uniform(0, 800, n_queries))
    queries = list(zip(wlat.tolist(), wlon.tolist(), strict=True))
    bq = queries[:brute_reps]
    us_ours, ans = timed(lambda a, o: ours.within(a, o, radius), queries)
    exact = [a[0] for a in ans]
    table.add("stores", n, op, "geo-engine", us_ours, note=f"{np.mean([len(e) for e in exact]):.1f} found")
    us_b, b_ans = timed(brute_within(lats, lons, radius), bq)
    table.add("stores", n, op, "brute-force numpy", us_b, ratio=np.median(us_b) / np.median(us_ours),
              wrong=wrong_pct(b_ans, exact[:len(bq)]))
    deg = radius / M_PER_DEG

    def st_w(lat, lon):
        idx = st.query(shapely.Point(lon, lat), predicate="dwithin", distance=deg)
        d = np.array(geod_to(lats, lons, lat, lon, idx))
        keep = idx[d <= radius]
        return keep[np.lexsort((keep, d[d <= radius]))]
    us_s, s_ans = timed(st_w, queries)
    table.add("stores", n, op, "STRtree dwithin 1 km in degrees + geodesic", us_s,
              ratio=np.median(us_s) / np.median(us_ours), wrong=wrong_pct(s_ans, exact))

    def rt_w(lat, lon):
        dlon = deg / max(np.cos(np.radians(lat)), 1e-6)
        idx = np.fromiter(rt.intersection((lon - dlon, lat - deg, lon + dlon, lat + deg)), dtype=np.intp)
        d = np.array(geod_to(lats, lons, lat, lon, idx))
        keep = idx[d <= radius] if len(idx) else idx
        return keep[np.lexsort((keep, d[d <= radius]))] if len(idx) else idx
    us_r, r_ans = timed(rt_w, queries)
    table.add("stores", n, op, "rtree box (no antimeridian wrap) + geodesic", us_r,
              ratio=np.median(us_r) / np.median(us_ours), wrong=wrong_pct(r_ans, exact))

    # bulk nearest-1: as many points as stores (at most 1M)
    nb = min(max(n, 100_000), 1_000_000)
    blats, blons = generate.points(nb, layout, np.random.default_rng(3))
    t0 = time.perf_counter()
    bi, _ = ours.nearest_bulk(blats, blons, 1)
    t_ours = time.perf_counter() - t0
    table.add("stores", n, f"bulk nearest-1 ({nb:,} points)", "geo-engine nearest_bulk", ops=nb / t_ours,
              note=f"{t_ours:.2f} s")
    pts_q = shapely.points(blons, blats)
    t0 = time.perf_counter()
    inp, tree_i = st.query_nearest(pts_q)
    first = np.unique(inp, return_index=True)[1]
    s_i = tree_i[first]
    distances_m(blats, blons, lats[s_i], lons[s_i])
    t_s = time.perf_counter() - t0
    table.add("stores", n, f"bulk nearest-1 ({nb:,} points)", "STRtree query_nearest + geodesic",
              ops=nb / t_s, ratio=t_s / t_ours, wrong=100.0 * np.mean(s_i != bi[:, 0]))
    qb = np.column_stack([blons, blats])
    t0 = time.perf_counter()
    r_ids, r_counts = rt.nearest_v(qb, qb, num_results=1)
    r_first = r_ids[np.concatenate([[0], np.cumsum(r_counts)[:-1]]).astype(np.intp)]
    distances_m(blats, blons, lats[r_first], lons[r_first])
    t_r = time.perf_counter() - t0
    table.add("stores", n, f"bulk nearest-1 ({nb:,} points)", "rtree nearest_v + geodesic",
              ops=nb / t_r, ratio=t_r / t_ours, wrong=100.0 * np.mean(r_first != bi[:, 0]))
    sample = min(len(bq), 50)
    t0 = time.perf_counter()
    for lat, lon in zip(blats[:sample], blons[:sample], strict=True):
        brute_nearest(lats, lons, 1)(lat, lon)
    t_b = (time.perf_counter() - t0) / sample
    table.add("stores", n, f"bulk nearest-1 ({nb:,} points)", "brute-force numpy", ops=1 / t_b,
              ratio=(t_b * nb) / t_ours, note=f"timed on {sample} points")


# --- geofences ---------------------------------------------------------------------------------

def bench_fences(table: Table, n: int, n_queries: int, layout: str, builds: list) -> None:
    text = json.dumps({"type": "FeatureCollection",
                       "features": list(generate.fence_features(n, layout, seed=4))})
    gc.collect()
    t0 = time.perf_counter()
    data, problems = parse_geojson(text, "bench")
    t_parse = time.perf_counter() - t0
    assert not problems, problems[:3]
    table.add("files", 2 * n, f"validate a {2 * n:,}-feature GeoJSON ({n:,} stores + {n:,} fences)",
              "geo-engine parse_geojson", ops=2 * n / t_parse,
              note=f"{t_parse:.2f} s, {len(text) / 2**20:.0f} MiB")
    fences = sorted(data.geofences, key=lambda g: g.id)
    mark = rss_mb()
    t0 = time.perf_counter()
    ours = FenceIndex(fences)
    builds.append((len(fences), "geo-engine FenceIndex (box grid and STRtree of boxes + prepared polygons)",
                   time.perf_counter() - t0, rss_mb() - mark, None))
    boxes = np.array(shapely.bounds(ours._tree.geometries))
    t0 = time.perf_counter()
    rt = rtree.index.Index((np.arange(len(boxes), dtype=np.int64), boxes[:, :2], boxes[:, 2:]))
    builds.append((len(fences), "rtree of the same boxes", time.perf_counter() - t0, None, None))

    # queries where fences are: near a random store, within 300 m
    rng = np.random.default_rng(5)
    pick = rng.integers(0, len(data.stores), n_queries)
    lat0 = np.array([data.stores[i].lat for i in pick])
    lon0 = np.array([data.stores[i].lon for i in pick])
    qlon, qlat, _ = GEOD.fwd(lon0, lat0, rng.uniform(0, 360, n_queries), rng.uniform(0, 300, n_queries))
    queries = list(zip(qlat.tolist(), qlon.tolist(), strict=True))
    at = datetime.now(UTC)

    us_ours, ans = timed(lambda a, o: [i for i, _ in ours.containing(a, o, 0.0, at)], queries)
    hit = np.mean([bool(a) for a in ans]) * 100
    table.add("fences", len(fences), "contains", "geo-engine (box grid + exact)", us_ours,
              note=f"{hit:.0f}% of points in a fence")
    us_acc, _ = timed(lambda a, o: ours.containing(a, o, 20.0, at), queries)
    table.add("fences", len(fences), "contains, accuracy 20 m (confidence)", "geo-engine", us_acc)

    owners = np.asarray(ours._owners)

    def rt_contains(lat, lon):
        cand = np.unique(owners[np.fromiter(rt.intersection((lon, lat, lon, lat)), dtype=np.intp)])
        return [i for i in cand.tolist() if fences[i].active(at) and ours._confidence(i, lat, lon, 0.0)]
    us_r, r_ans = timed(rt_contains, queries)
    table.add("fences", len(fences), "contains", "rtree + the same exact test", us_r,
              ratio=np.median(us_r) / np.median(us_ours), wrong=wrong_pct(r_ans, ans))

    circ = ours._circle
    shapes = ours._shapes[~circ]
    poly_pos = np.flatnonzero(~circ)
    circ_pos = np.flatnonzero(circ)

    def brute_contains(lat, lon):
        inside_p = poly_pos[shapely.intersects_xy(shapes, lon, lat)]
        d = distances_m(lat, lon, ours._c_lat[circ_pos], ours._c_lon[circ_pos])
        inside_c = circ_pos[d <= ours._c_r[circ_pos]]
        return sorted(np.concatenate([inside_p, inside_c]).tolist())
    bq = queries[: max(20, min(n_queries, 2_000_000 // len(fences)))]
    us_b, b_ans = timed(brute_contains, bq)
    table.add("fences", len(fences), "contains", "brute-force (contains_xy + geodesic over all)", us_b,
              ratio=np.median(us_b) / np.median(us_ours), wrong=wrong_pct(b_ans, ans[:len(bq)]))

    t0 = time.perf_counter()
    ours.containing_bulk(qlat, qlon, at)
    t_bulk = time.perf_counter() - t0
    table.add("fences", len(fences), f"bulk contains ({n_queries:,} points)", "geo-engine containing_bulk",
              ops=n_queries / t_bulk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="store counts, comma-separated")
    ap.add_argument("--queries", type=int, default=2000, help="single queries per operation")
    ap.add_argument("--fences", type=int, default=100_000,
                    help="geofences (half circles, half polygons, each with its store)")
    ap.add_argument("--layout", default="worldwide", choices=generate.LAYOUTS, help="store layout")
    ap.add_argument("--markdown", type=Path, help="also write the tables here as Markdown")
    args = ap.parse_args()

    cpu = platform.processor() or platform.machine()
    print(f"# bench_index on {platform.node()} ({os.cpu_count()} cores, {cpu}), "
          f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# command: python benchmarks/bench_index.py {' '.join(sys.argv[1:])}")
    table, builds = Table(), []
    for n in (int(s) for s in args.sizes.split(",")):
        bench_stores(table, n, args.queries, args.layout, builds)
    if args.fences:
        bench_fences(table, args.fences, args.queries, "city", builds)
    print()
    print(table.markdown())
    print()
    build_md = ["| n | index | build s | index MB | + store arrays MB |", "|---|---|---|---|---|"]
    def mb_text(mb):
        return "-" if mb is None else f"{mb:.0f}"
    for n, name, secs, mb, arrays_mb in builds:
        build_md.append(f"| {n:,} | {name} | {secs:.2f} | {mb_text(mb)} | {mb_text(arrays_mb)} |")
    print("\n".join(build_md))
    if args.markdown:
        args.markdown.write_text(table.markdown() + "\n\n" + "\n".join(build_md) + "\n")


if __name__ == "__main__":
    main()
