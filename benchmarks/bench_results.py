"""Benchmark campaign results on a year of events: indexed reads, no roll-up.

    python benchmarks/bench_results.py                 # 10M events in a SQLite file
    python benchmarks/bench_results.py --events 200000 # a small look (the test runs this)

A chain of 2,000 stores (each with one geofence) and 200,000 phones; a year of visits, each an
enter and an exit (so ``--events`` / 2 visits, spread evenly over 365 days), and one campaign
at 200 stores with a 20 % holdout whose pushes and holdouts (one a device a day it visits one
of those stores) fall in the year too. Then ``Engine.results`` for that campaign over 30 days,
7 and 1 (each the median of 3 runs), beside the baseline a reader without the indexes would pay:
one full scan of the event log (``SELECT count(*), sum(ts) FROM events``), measured in the
same run. Printed: a table of seconds and the ratio to the scan.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geo_engine import Engine, Settings  # noqa: E402

YEAR_START = datetime(2025, 12, 1, tzinfo=UTC)


def build(path: Path, n_events: int, n_stores: int = 2000, n_devices: int = 200_000,
          seed: int = 4) -> tuple[Engine, int]:
    """The database; returns the engine and the campaign's pushes + holdouts written."""
    rng = np.random.default_rng(seed)
    lats = rng.uniform(30, 45, n_stores)
    lons = rng.uniform(-120, -75, n_stores)
    feats = []
    for k in range(n_stores):
        point = {"type": "Point", "coordinates": [float(lons[k]), float(lats[k])]}
        feats.append({"type": "Feature", "properties": {"kind": "store", "id": f"s{k:05d}"},
                      "geometry": point})
        feats.append({"type": "Feature", "properties": {"id": f"g{k:05d}", "store_id": f"s{k:05d}",
                                                        "radius_m": 120}, "geometry": point})
    places = path.parent / "places.geojson"
    places.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    engine = Engine(Settings(db=str(path), synchronous="normal"))
    engine.import_files([places])
    targets = [f"s{k:05d}" for k in range(0, n_stores, 10)]
    engine.put_campaign("bench", {"id": "bench", "offer": {"title": "x"}, "trigger": {"type": "enter"},
                                  "targets": {"store_ids": targets}, "holdout_pct": 20})
    camp = engine.campaign("bench")
    n_visits = n_events // 2
    t0 = YEAR_START.timestamp()
    written = 0
    chunk = 500_000
    for start in range(0, n_visits, chunk):
        m = min(chunk, n_visits - start)
        dev = rng.integers(0, n_devices, m)
        store = rng.integers(0, n_stores, m)
        ts = t0 + rng.uniform(0, 365 * 86400, m)
        stay = rng.uniform(30, 3600, m)
        events, pushes, holds = [], [], []
        for d, s, t, dur in zip(dev.tolist(), store.tolist(), ts.tolist(), stay.tolist(), strict=True):
            device, sid = f"p{d:06d}", f"s{s:05d}"
            events.append((device, t, "enter", f"g{s:05d}", sid, "high", None, None))
            events.append((device, t + dur, "exit", f"g{s:05d}", sid, None, dur, None))
            if s % 10 == 0 and d % 7 == 0:  # the campaign: on some visits to its stores
                if camp.in_holdout(device):
                    holds.append((device, t, "held_out", f"g{s:05d}", sid, "bench"))
                else:
                    pushes.append((device, "bench", sid, f"g{s:05d}", t, "2026-01-01", 10.0))
        with engine.db.atomic() as tx:
            tx.executemany("INSERT INTO events (device_id, ts, type, geofence_id, store_id, "
                           "confidence, duration_s, ping_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", events)
            tx.executemany("INSERT INTO events (device_id, ts, type, geofence_id, store_id, "
                           "campaign_id) VALUES (?, ?, ?, ?, ?, ?)", holds)
            tx.executemany("INSERT INTO pushes (device_id, campaign_id, store_id, geofence_id, ts, "
                           "local_day, distance_m) VALUES (?, ?, ?, ?, ?, ?, ?)", pushes)
        written += len(pushes) + len(holds)
        print(f"# {start + m:,} of {n_visits:,} visits written", file=sys.stderr)
    return engine, written


def timed(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    args = ap.parse_args()
    print(f"# bench_results on {platform.node()} ({os.cpu_count()} cores), Python "
          f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# command: python benchmarks/bench_results.py {' '.join(sys.argv[1:])}")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        engine, moments = build(Path(tmp) / "results.db", args.events)
        events = engine.db.sql.query("SELECT count(*) FROM events")[0][0]
        size = os.path.getsize(Path(tmp) / "results.db") / 2**20
        print(f"# {events:,} events and {moments:,} pushes and holdouts written in "
              f"{time.perf_counter() - t:.0f} s; SQLite file {size:,.0f} MB")
        scan = timed(lambda: engine.db.sql.query("SELECT count(*), sum(ts) FROM events"))
        end = YEAR_START + timedelta(days=200)
        print("\n| query | seconds (median of 3) | exposed devices | control devices "
              "| vs one scan of the log |")
        print("|---|---|---|---|---|")
        print(f"| baseline: one full scan of the event log | {scan:.3f} | | | 1.00x |")
        for days in (30, 7, 1):
            out = {}

            def run(days=days, out=out):
                out.update(engine.results("bench", end - timedelta(days=days), end, by="store"))
            s = timed(run)
            print(f"| results, {days} days, by store | {s:.3f} | {out['exposed']['devices']:,} | "
                  f"{out['control']['devices']:,} | {s / scan:.2f}x |")
        engine.db.close()


if __name__ == "__main__":
    main()
