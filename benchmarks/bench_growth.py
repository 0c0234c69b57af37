"""Benchmark growth: the in-process ping as stores, campaigns and devices in state grow.

    python benchmarks/bench_growth.py            # 1k to 1M stores, 10 to 10k campaigns, 1k to 1M devices
    python benchmarks/bench_growth.py --quick    # a small look (the test runs this)

One dimension grows at a time from a base of 10k stores, 10 campaigns and 10k devices, so a
cliff shows where it is. The world and the walk are bench_ping's: stores packed around 50
cities, each with a circle geofence of 100 to 400 m; devices walking 0 to 500 m around their
home store. Past bench_ping's 10 chain-wide campaigns, each added campaign is a local one, as a
chain's many campaigns are: an enter or nearby (200 m) offer at 3 stores of its own. Each row
is a fresh database, served as ``serve`` serves it (synchronous=normal, so the disk's sync,
which group commit shares between pings, does not hide what grows). Printed: setup seconds,
the whole ping's p50 and p99 in microseconds, and the p50 of quiet and pushing pings.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ping  # noqa: E402

BASE = {"stores": 10_000, "campaigns": 10, "devices": 10_000}
GROWTH = {"stores": [1_000, 10_000, 100_000, 1_000_000],
          "campaigns": [10, 100, 1_000, 10_000],
          "devices": [1_000, 10_000, 100_000, 1_000_000]}
QUICK = {"stores": [1_000, 4_000], "campaigns": [10, 200], "devices": [1_000, 4_000]}


def campaigns(n: int, n_stores: int, seed: int = 21) -> list[dict]:
    """bench_ping's 10 chain-wide campaigns, then ``n - 10`` local ones of 3 stores each."""
    rng = np.random.default_rng(seed)
    out = list(bench_ping.CAMPAIGNS[:n])
    for k in range(max(0, n - len(out))):
        stores = [f"s{int(i):07d}" for i in rng.integers(0, n_stores, 3)]
        trigger = {"type": "nearby", "radius_m": 200} if k % 4 == 0 else {"type": "enter"}
        out.append({"id": f"local-{k}", "offer": {"title": f"local offer {k}"},
                    "targets": {"store_ids": stores}, "trigger": trigger, "priority": 30 + k % 7,
                    "caps": {"per_device_per_day": 1}})
    return out


def row(n_stores: int, n_campaigns: int, n_devices: int, pings: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        engine, home, where = bench_ping.build(str(Path(tmp) / "growth.db"), n_stores, n_devices,
                                               "normal", campaigns(n_campaigns, n_stores))
        setup = time.perf_counter() - t
        total, kind, _ = bench_ping.run_pings(engine, home, where, n_devices, pings)
        engine.db.close()

    def p50(name: str) -> float:
        t = total[kind == name]
        return float(np.percentile(t, 50)) if len(t) else float("nan")
    return {"setup": setup, "p50": float(np.percentile(total, 50)),
            "p99": float(np.percentile(total, 99)), "quiet": p50("quiet"), "push": p50("push"),
            "offers": int((kind == "push").sum()) / len(kind)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a look or a test")
    ap.add_argument("--pings", type=int, default=4_000, help="pings a row (200 of them warm-up)")
    ap.add_argument("--only", choices=sorted(GROWTH), help="grow this dimension only")
    args = ap.parse_args()
    growth = QUICK if args.quick else GROWTH
    base = {k: v[0] for k, v in QUICK.items()} if args.quick else BASE
    print(f"# bench_growth on {platform.node()} ({os.cpu_count()} cores), Python "
          f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# command: python benchmarks/bench_growth.py {' '.join(sys.argv[1:])}")
    print(f"# base: {base['stores']:,} stores, {base['campaigns']:,} campaigns, "
          f"{base['devices']:,} devices; one dimension grows at a time; {args.pings - 200:,} "
          "pings timed a row")
    print()
    print("| grows | stores | campaigns | devices | setup s | ping p50 us | ping p99 us | "
          "quiet p50 us | push p50 us | offers a ping | p50 vs the first row |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dim, sizes in growth.items():
        if args.only and dim != args.only:
            continue
        first = None
        for size in sizes:
            sizes_now = {**base, dim: size}
            r = row(sizes_now["stores"], sizes_now["campaigns"], sizes_now["devices"], args.pings)
            first = first or r["p50"]
            print(f"| {dim} | {sizes_now['stores']:,} | {sizes_now['campaigns']:,} | "
                  f"{sizes_now['devices']:,} | {r['setup']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                  f"{r['quiet']:.1f} | {r['push']:.1f} | {r['offers']:.2f} | "
                  f"{r['p50'] / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
