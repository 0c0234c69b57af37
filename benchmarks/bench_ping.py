"""Benchmark the in-process offer decision (no HTTP): what one ping costs, step by step.

    python benchmarks/bench_ping.py                   # 100k stores, 10 campaigns, 100k devices
    python benchmarks/bench_ping.py --stores 10000 --devices 10000 --pings 2000   # a quick look

A world of stores packed around 50 cities, each with a circle geofence (100 to 400 m); 10
campaigns (enter, exit, dwell and nearby triggers, schedules, caps, a holdout); devices already
in state. Each ping moves a device by a few hundred metres near a store, with time moving on, so
enters, exits, dwells, pushes and rejections all happen. Timed: Engine.handle_ping, split into
index (geofences and nearest store), state (device read), rules (events and decision), record
(writes) and commit. Printed as one row per step: p50, p99 microseconds; then the whole
ping by outcome (nothing happened, events only, an offer pushed), which write different amounts.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "data"))

import generate  # noqa: E402

from geo_engine import Engine, Geofence, Settings, Store  # noqa: E402
from geo_engine.geodesy import GEOD  # noqa: E402
from geo_engine.io.places import Dataset  # noqa: E402
from geo_engine.model import Ping  # noqa: E402

CAMPAIGNS = [
    {"id": f"enter-{k}", "offer": {"title": f"offer {k}"}, "targets": {"tags": [tag]},
     "trigger": {"type": "enter"}, "priority": k, "caps": {"per_device_per_day": 1, "cooldown_s": 3600}}
    for k, tag in enumerate(["coffee", "grocery", "fashion", "coffee", "books", "grocery"])
] + [
    {"id": "dwell-1", "offer": {"title": "stay"}, "targets": {"tags": ["grocery"]},
     "trigger": {"type": "dwell", "dwell_s": 300}, "priority": 20, "holdout_pct": 10},
    {"id": "dwell-2", "offer": {"title": "stay longer"}, "targets": {"tags": ["fashion"]},
     "trigger": {"type": "dwell", "dwell_s": 900}, "priority": 21},
    {"id": "exit-1", "offer": {"title": "come back"}, "targets": {"tags": ["coffee"]},
     "trigger": {"type": "exit"}, "schedule": {"hours": [["06:00", "23:00"]]}, "priority": 3},
    {"id": "nearby-1", "offer": {"title": "nearby"}, "targets": {"tags": ["books"]},
     "trigger": {"type": "nearby", "radius_m": 150}, "priority": 1, "caps": {"budget_total": 5000}},
]
TAGS = ["coffee", "grocery", "fashion", "books"]


def build(db_path: str, n_stores: int, n_devices: int, synchronous: str,
          campaigns: list[dict] | None = None) -> tuple[Engine, np.ndarray, np.ndarray]:
    """A served engine on a new file at ``db_path``: the stores and their geofences, the
    campaigns (:data:`CAMPAIGNS` unless given; written at once, read in one reload) and the
    devices in state. Returns it, each device's home store and the stores' positions."""
    ids, lats, lons = generate.stores(n_stores, "city", seed=11)
    rng = np.random.default_rng(12)
    radius = rng.uniform(100, 400, n_stores)
    data = Dataset(
        stores=[Store(id=i, lat=float(a), lon=float(o), tags=(TAGS[k % 4],), timezone="UTC")
                for k, (i, a, o) in enumerate(zip(ids, lats, lons, strict=True))],
        geofences=[Geofence(id=f"g{i[1:]}", store_id=i, lat=float(a), lon=float(o), radius_m=float(r),
                            tags=())
                   for i, a, o, r in zip(ids, lats, lons, radius, strict=True)])
    engine = Engine(Settings(db=db_path))
    engine.db.places.import_dataset(data.stores, data.geofences)
    engine.reload()
    for c in CAMPAIGNS if campaigns is None else campaigns:
        engine.db.campaigns.put(c["id"], c)
    engine.reload_campaigns()
    # devices already in state: a last position near a store, some of them in a visit
    home = rng.integers(0, n_stores, n_devices)
    with engine.db.atomic() as conn:
        conn.executemany(
            "INSERT INTO devices (device_id, last_ts, last_lat, last_lon, last_accuracy_m, visits, "
            "version) VALUES (?, 0.0, ?, ?, 20, ?, 1)",
            [(f"dev{k}", float(lats[h]), float(lons[h]),
              f'{{"g{ids[h][1:]}": ["{ids[h]}", 0.0, 0]}}' if k % 3 == 0 else "{}")
             for k, h in enumerate(home)])
    engine.db.close()
    # as a server starts: device state read at start
    engine = Engine(Settings(db=db_path, synchronous=synchronous, trust_client_clock=True))
    engine.start_serving()  # as `geo-engine serve` does: checkpointer, devices read, gc.freeze
    return engine, home, np.column_stack([lats, lons])


def run_pings(engine: Engine, home: np.ndarray, where: np.ndarray, n_devices: int, n_pings: int,
              seed: int = 13) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk devices around their home stores (0 to 500 m away, time moving on 1 to 20 minutes a
    ping), 200 pings of warm-up, then ``n_pings - 200`` timed. Returns each timed ping's
    microseconds, its outcome (``push``, ``event`` or ``quiet``) and its steps' microseconds."""
    rng = np.random.default_rng(seed)
    devices = rng.integers(0, n_devices, n_pings)
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    clock: dict[int, float] = {}
    pings = []
    for d in devices.tolist():
        clock[d] = clock.get(d, 0.0) + float(rng.uniform(60, 1200))
        lat, lon = where[home[d]]
        plon, plat, _ = GEOD.fwd(lon, lat, float(rng.uniform(0, 360)), float(rng.uniform(0, 500)))
        pings.append(Ping(f"dev{d}", plat, plon, float(rng.uniform(5, 60)),
                          t0 + timedelta(seconds=clock[d])))
    for p in pings[:200]:  # warm-up
        engine.handle_ping(p)
    engine.stage_times = []
    total = np.empty(len(pings) - 200)
    kind = np.empty(len(pings) - 200, dtype=object)
    for k, p in enumerate(pings[200:]):
        s = time.perf_counter()
        body = engine.handle_ping(p).body
        total[k] = time.perf_counter() - s
        kind[k] = "push" if b'"offer":{' in body else "quiet" if b'"events":[]' in body else "event"
    stages = np.array(engine.stage_times) * 1e6
    engine.stage_times = None
    return total * 1e6, kind, stages


def standing_fleet(engine: Engine, home: np.ndarray, where: np.ndarray, n_devices: int = 2000,
                   rounds: int = 6) -> np.ndarray:
    """Devices standing 45 m north of their home store, pinging every 10 minutes: after two
    rounds nearly every ping is quiet (what most of a real fleet's pings are). Returns the
    microseconds of the quiet pings of the later rounds (a day after :func:`run_pings`)."""
    t0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    out = []
    for step in range(rounds):
        for k in range(n_devices):
            lat, lon = where[home[k]]
            p = Ping(f"dev{k}", float(lat) + 0.0004, float(lon), 10.0,
                     t0 + timedelta(minutes=10 * step))
            s = time.perf_counter()
            body = engine.handle_ping(p).body
            took = time.perf_counter() - s
            if step >= 2 and b'"events":[],"offer":null' in body:
                out.append(took)
    return np.array(out) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--pings", type=int, default=20_000)
    ap.add_argument("--synchronous", choices=["full", "normal"], default="full",
                    help="what a commit survives (GEO_ENGINE_SYNCHRONOUS): full syncs the disk "
                         "at each ping's commit here, where a server groups them")
    args = ap.parse_args()
    print(f"# bench_ping on {platform.node()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# command: python benchmarks/bench_ping.py {' '.join(sys.argv[1:])}")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        engine, home, where = build(str(Path(tmp) / "bench.db"), args.stores, args.devices,
                                     args.synchronous)
        print(f"# setup: {args.stores:,} stores and geofences, {len(CAMPAIGNS)} campaigns, "
              f"{args.devices:,} devices in state ({time.perf_counter() - t:.1f} s), "
              f"synchronous={args.synchronous}")
        total, kind, stages = run_pings(engine, home, where, args.devices, args.pings)
        offers = int((kind == "push").sum())
        standing = standing_fleet(engine, home, where, min(2000, args.devices))
        rng = np.random.default_rng(14)
        # the floor in the same run: the one durable write every ping makes, and nothing else
        floor = np.empty(5000)
        for k, d in enumerate(rng.integers(0, args.devices, len(floor)).tolist()):
            s = time.perf_counter()
            with engine.db.atomic() as conn:
                conn.execute("UPDATE devices SET last_ts = last_ts WHERE device_id = ?", (f"dev{d}",))
            floor[k] = time.perf_counter() - s
        floor *= 1e6
    print(f"# {len(total):,} pings timed, {offers:,} offers pushed")
    print()
    print("| step | p50 us | p99 us | mean us |")
    print("|---|---|---|---|")
    for name, col in zip(["index (geofences + nearest store)", "state (device read)",
                          "rules (events + decision)", "record (writes)", "commit"], stages.T, strict=True):
        print(f"| {name} | {np.percentile(col, 50):.1f} | {np.percentile(col, 99):.1f} | {col.mean():.1f} |")
    print(f"| **whole ping** | {np.percentile(total, 50):.1f} | {np.percentile(total, 99):.1f} | "
          f"{total.mean():.1f} |")
    print()
    print("| whole ping, by outcome | pings | p50 us | p99 us |")
    print("|---|---|---|---|")
    for name, label in [("quiet", "quiet (no event, no offer)"), ("event", "events, no offer"),
                        ("push", "an offer pushed")]:
        t = total[kind == name]
        if len(t):
            print(f"| {label} | {len(t):,} | {np.percentile(t, 50):.1f} | {np.percentile(t, 99):.1f} |")
        if name == "push" and len(stages) == len(total) and len(t):
            before = t - stages[kind == "push", 4]
            print(f"| *an offer pushed, before its commit* | | {np.percentile(before, 50):.1f} | "
                  f"{np.percentile(before, 99):.1f} |")
        if name == "quiet" and len(stages) == len(total) and len(t):  # one row of steps a ping
            for step, col in [("index step", 0), ("the rest (state, short cut or rules, checks)", 2)]:
                q = stages[kind == "quiet", col]
                print(f"| *quiet: {step}* | | {np.percentile(q, 50):.1f} | {np.percentile(q, 99):.1f} |")
    if len(standing):
        print(f"| *a standing fleet: its quiet pings* | {len(standing):,} | "
              f"{np.percentile(standing, 50):.1f} | {np.percentile(standing, 99):.1f} |")
    print(f"| *floor: one durable write (BEGIN IMMEDIATE, UPDATE a device row, COMMIT)* | "
          f"{len(floor):,} | {np.percentile(floor, 50):.1f} | {np.percentile(floor, 99):.1f} |")


if __name__ == "__main__":
    main()
