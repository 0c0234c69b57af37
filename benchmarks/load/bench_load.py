"""Load benchmark: a walking fleet of phones against `geo-engine serve` and a bare FastAPI app.

    python benchmarks/load/bench_load.py                  # 20k stores, 20k phones, 32 connections
    python benchmarks/load/bench_load.py --duration 5     # a quick look
    python benchmarks/load/bench_load.py --backends sqlite,postgresql --workers 1,2,3
    make bench-load

wrk (Debian's, installed here when missing) runs ``fleet.lua``: each request is one phone's next
ping, the phones walking circles of 40 to 400 m around their home stores, in and out of 150 m
geofences, with 5 campaigns live (enter, dwell, nearby; caps and a budget). The same wrk, with
the same connections and duration, then runs against ``bare_app.py``, which only parses the same
body with the same schema: the baseline, measured in the same run. Everything listens on
127.0.0.1 only, in a temporary folder.

With ``--backends postgresql`` the same server runs on a throwaway PostgreSQL cluster on
127.0.0.1 (Debian's, as the tests start it: ``tests/pgcluster.py``), each ``--workers`` count
being that many instances on one database; the PostgreSQL server's own CPU time during the
measured run is read from /proc, so a user can size it: milliseconds of database CPU a ping,
and pings/s a database core would serve.

With ``--webhook slow`` each geo-engine target runs with a webhook subscribed to every event,
posted to a receiver here that takes ``--receiver-ms`` (200) to answer each delivery (``both``:
each target without and then with it): the pings must not slow down for it (the outbox is
written in the ping's transaction; the delivery worker is a thread that waits on the receiver,
not on the pings). The events delivered and left waiting at the end of each run are printed.

Printed: one row per target with requests/s, p50 and p99 latency, errors (non-2xx answers and
socket errors) and the ratios to the bare app.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "data"))

import generate  # noqa: E402

from geo_engine import Engine, Geofence, Settings, Store  # noqa: E402
from geo_engine.tokens import new_token, token_hash  # noqa: E402

KEY = "bench-load-publishable"
CAMPAIGNS = [
    {"id": "coffee-enter", "offer": {"title": "a coffee"}, "targets": {"tags": ["coffee"]},
     "trigger": {"type": "enter"}, "priority": 5, "caps": {"per_device_per_day": 1, "cooldown_s": 3600}},
    {"id": "grocery-enter", "offer": {"title": "groceries"}, "targets": {"tags": ["grocery"]},
     "trigger": {"type": "enter"}, "priority": 4, "caps": {"per_device_total": 3}},
    {"id": "fashion-dwell", "offer": {"title": "stay"}, "targets": {"tags": ["fashion"]},
     "trigger": {"type": "dwell", "dwell_s": 120}, "priority": 8, "holdout_pct": 10},
    {"id": "books-nearby", "offer": {"title": "books"}, "targets": {"tags": ["books"]},
     "trigger": {"type": "nearby", "radius_m": 200}, "priority": 2, "caps": {"budget_total": 1000000}},
    {"id": "all-enter", "offer": {"title": "welcome"}, "targets": {"tags": ["coffee", "grocery", "fashion"]},
     "trigger": {"type": "enter"}, "priority": 1},
]
TAGS = ["coffee", "grocery", "fashion", "books"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    """The wrk binary: Debian's, installed when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("# installing wrk from Debian (apt-get)", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("wrk") or "wrk"


def build_world(tmp: Path, n_stores: int, n_devices: int, url: str | None = None,
                tokens_from: Path | None = None) -> tuple[Path, Path, Path]:
    """A database of stores with 150 m circle geofences, the campaigns and the phones
    registered (device tokens are on, as for any new database); the stores' CSV and the
    phones' tokens, a line each. With ``url``, the same world in that PostgreSQL database
    (the phones' tokens those of ``tokens_from``)."""
    ids, lats, lons = generate.stores(n_stores, "city", seed=31)
    db = tmp / "load.db"
    engine = Engine(Settings(db=url or str(db)))
    engine.db.places.import_dataset(
        [Store(id=i, lat=float(a), lon=float(o), tags=(TAGS[k % 4],), timezone="UTC")
         for k, (i, a, o) in enumerate(zip(ids, lats, lons, strict=True))],
        [Geofence(id=f"g{i[1:]}", store_id=i, lat=float(a), lon=float(o), radius_m=150.0)
         for i, a, o in zip(ids, lats, lons, strict=True)])
    for c in CAMPAIGNS:
        engine.put_campaign(c["id"], c)
    assert engine.tokens_required
    tokens = tokens_from.read_text().split() if tokens_from else [new_token() for _ in range(n_devices)]
    with engine.db.atomic() as tx:  # as POST /v1/devices would, in one transaction
        tx.executemany("INSERT INTO device_tokens (device_id, token_hash, created_ts) "
                       "VALUES (?, ?, 0)", [(f"phone-{k}", token_hash(t)) for k, t in enumerate(tokens)])
    engine.db.close()
    stores_csv, tokens_txt = tmp / "stores.csv", tmp / "tokens.txt"
    if url is not None:
        return db, stores_csv, tokens_txt
    np.savetxt(stores_csv, np.column_stack([lats, lons]), fmt="%.7f", delimiter=",")
    tokens_txt.write_text("\n".join(tokens) + "\n")
    return db, stores_csv, tokens_txt


def start(cmd: list[str], port: int, env: dict, log: Path) -> subprocess.Popen:
    out = log.open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise SystemExit(f"{cmd} exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{cmd} did not come up in 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cluster_cpu_s(cluster) -> float:
    """CPU seconds the PostgreSQL server has used: the postmaster with the children it reaped,
    plus its live children (the backends, the writers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pm = int((cluster.data / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == pm:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif ppid == pm:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def run_wrk(wrk: str, port: int, stores_csv: Path, tokens_txt: Path, tmp: Path, args, label: str,
            cluster=None) -> dict:
    out = tmp / f"{label}.json"
    now = int(time.time())
    env = {**os.environ, "FLEET_STORES": str(stores_csv), "FLEET_DEVICES": str(args.devices),
           "FLEET_TOKENS": str(tokens_txt),
           "FLEET_KEY": KEY, "FLEET_OUT": str(out), "FLEET_THREADS": str(args.threads)}
    base = [wrk, "-t", str(args.threads), "-c", str(args.connections), "--latency",
            "-s", str(HERE / "fleet.lua"), f"http://127.0.0.1:{port}"]
    # each wrk run walks the phones from their first step: the warm-up's walk happens a day
    # before the measured one, so that no measured ping is older than a phone's last (out of
    # order pings are cheap, and would flatter the figures)
    subprocess.run([*base[:6], "-d", "3s", *base[6:]], env={**env, "FLEET_T0": str(now - 86400)},
                   check=True, capture_output=True)
    cpu = cluster_cpu_s(cluster) if cluster is not None else 0.0
    subprocess.run([*base[:6], "-d", f"{args.duration}s", *base[6:]],
                   env={**env, "FLEET_T0": str(now)}, check=True, capture_output=True)
    cpu = cluster_cpu_s(cluster) - cpu if cluster is not None else None
    result = json.loads(out.read_text())
    result["db_cpu_s"] = cpu
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def _median(results: list[dict]) -> dict:
    """The median run's figures, key by key; errors summed over every run."""
    out = dict(results[len(results) // 2])
    for key in ("rps", "p50_us", "p99_us"):
        out[key] = float(np.median([r[key] for r in results]))
    if results[0].get("db_cpu_s") is not None:  # database CPU ms a ping, the median run's
        out["db_ms"] = float(np.median([1000 * r["db_cpu_s"] / max(r["requests"], 1) for r in results]))
    out["errors"] = sum(r["errors"] for r in results)
    out["each"] = ", ".join(f"{r['rps']:,.0f}" for r in results)
    out["each_p99"] = ", ".join(f"{r['p99_us'] / 1000:.0f}" for r in results)
    return out


def slow_receiver(delay_s: float) -> ThreadingHTTPServer:
    """A webhook receiver on a free loopback port answering 200 to each post after ``delay_s``."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["content-length"]))
            time.sleep(delay_s)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def webhook_figures(port: int) -> str:
    """Events delivered and waiting, from the server's /metrics."""
    got = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith("geo_engine_webhook"):
            name, value = line.split()
            got[name] = float(value)
    return (f"webhook: {got.get('geo_engine_webhook_events_delivered_total', 0):,.0f} events "
            f"delivered, {got.get('geo_engine_webhook_events_waiting', 0):,.0f} waiting, lag "
            f"{got.get('geo_engine_webhook_lag_seconds', 0):,.0f} s at the end")


def what_pings_did(port: int) -> str:
    """Events and offers per ping, from the server's /metrics: the fleet must be realistic."""
    totals: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        for name in ("geo_engine_pings_total", "geo_engine_events_total",
                     "geo_engine_offers_pushed_total"):
            if line.startswith(name):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    pings = totals.get("geo_engine_pings_total", 0.0) or 1.0
    events = totals.get("geo_engine_events_total", 0.0)
    offers = totals.get("geo_engine_offers_pushed_total", 0.0)
    return (f"{pings:,.0f} pings, {events:,.0f} events, {offers:,.0f} offers "
            f"({events / pings:.3f} events and {offers / pings:.3f} offers a ping; one worker's "
            "/metrics)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=20_000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", type=int, default=15, help="seconds of load per target")
    ap.add_argument("--rounds", type=int, default=3,
                    help="each target this many times, in turn; the table gives the medians")
    ap.add_argument("--workers", default="1,2",
                    help="run geo-engine serve with each of these --workers counts")
    ap.add_argument("--synchronous", choices=["full", "normal"], default="full",
                    help="geo-engine's GEO_ENGINE_SYNCHRONOUS (what a commit survives)")
    ap.add_argument("--backends", default="sqlite",
                    help="sqlite, postgresql or both: each --workers count on each (PostgreSQL: a "
                         "throwaway cluster here, each worker an instance on one database)")
    ap.add_argument("--webhook", choices=["none", "slow", "both"], default="none",
                    help="slow: with a webhook subscribed to every event and a slow receiver; "
                         "both: each geo-engine target without and with one")
    ap.add_argument("--receiver-ms", type=float, default=200.0,
                    help="how long the webhook receiver takes to answer a delivery")
    args = ap.parse_args()
    backends = args.backends.split(",")
    wrk = ensure_wrk()
    print(f"# bench_load on {platform.node()} ({os.cpu_count()} cores), Python "
          f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# command: python benchmarks/load/bench_load.py {' '.join(sys.argv[1:])}")
    print(f"# {args.stores:,} stores with 150 m geofences, {len(CAMPAIGNS)} campaigns, "
          f"{args.devices:,} walking phones, wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration}s after a 3 s warm-up, {args.rounds} rounds; geo-engine with "
          f"synchronous={args.synchronous}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_ENGINE_")}
    # the fleet replays a walk: its phones' 30 s steps are sent as fast as wrk can, so their
    # timestamps are taken as given and no phone is held to a real phone's rate (the limit per
    # publishable key, the device tokens and the body limits stay on)
    env.update(GEO_ENGINE_PUBLISHABLE_KEY=KEY, GEO_ENGINE_ADMIN_KEY="bench-load-admin",
               GEO_ENGINE_SYNCHRONOUS=args.synchronous, GEO_ENGINE_TRUST_CLIENT_CLOCK="true",
               GEO_ENGINE_DEVICE_PINGS_PER_S="0")
    runs: dict[str, list[dict]] = {}
    cluster = None
    receiver = slow_receiver(args.receiver_ms / 1000) if args.webhook != "none" else None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db, stores_csv, tokens_txt = build_world(tmp, args.stores, args.devices)
        if "postgresql" in backends:
            sys.path.insert(0, str(ROOT / "tests"))
            from pgcluster import Cluster

            cluster = Cluster().start()
            build_world(tmp, args.stores, args.devices, cluster.new_database("world"), tokens_txt)
        try:
            for k in range(args.rounds):  # in turn, so the machine's drift hits every target alike
                targets = []
                for backend in backends:
                    for n in (int(w) for w in args.workers.split(",")):
                        # every run's phones start from the same state
                        if backend == "sqlite":
                            where = str(tmp / f"round{k}-{n}.db")
                            shutil.copy(db, where)
                        else:
                            where = cluster.new_database(f"round{k}_{n}", template="world")
                        hooks = {"none": [False], "slow": [True], "both": [False, True]}[args.webhook]
                        for hooked in hooks:
                            if hooked:  # a copy of its own: every run's phones start alike
                                if backend == "sqlite":
                                    where = str(tmp / f"round{k}-{n}-hooked.db")
                                    shutil.copy(db, where)
                                else:
                                    where = cluster.new_database(f"round{k}_{n}_h", template="world")
                            suffix = ", slow webhook" if hooked else ""
                            targets.append((f"geo-engine serve --workers {n} ({backend}{suffix})",
                                            [sys.executable, "-m", "geo_engine", "serve", "--db",
                                             where, "--workers", str(n)], backend))
                targets.append(("bare FastAPI app (parse only)",
                                [sys.executable, str(HERE / "bare_app.py")], None))
                for label, cmd, backend in targets:
                    port = free_port()
                    proc = start([*cmd, "--port", str(port)], port, env, tmp / f"{port}.log")
                    if "slow webhook" in label:
                        r = httpx.put(f"http://127.0.0.1:{port}/v1/webhooks/bench",
                                      headers={"Authorization": "Bearer bench-load-admin"},
                                      json={"url": f"http://127.0.0.1:{receiver.server_port}/in"})
                        assert r.status_code == 201, r.text
                    try:
                        result = run_wrk(wrk, port, stores_csv, tokens_txt, tmp, args, str(port),
                                         cluster if backend == "postgresql" else None)
                        if label.startswith("geo-engine"):
                            result["did"] = what_pings_did(port)
                        if "slow webhook" in label:
                            result["did"] += "; " + webhook_figures(port)
                        runs.setdefault(label, []).append(result)
                    finally:
                        stop(proc)
        finally:
            if cluster is not None:
                cluster.stop()
    results = {label: _median(rs) for label, rs in runs.items()}
    bare = results["bare FastAPI app (parse only)"]
    print()
    print(f"| target | requests/s (median of {args.rounds}) | p50 ms | p99 ms | errors | "
          "requests/s vs bare | p99 vs bare | requests/s of each run | p99 ms of each run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.1f} | {r['p99_us'] / 1000:.1f} | "
              f"{r['errors']:,} | {r['rps'] / bare['rps']:.2f}x | {r['p99_us'] / bare['p99_us']:.2f}x | "
              f"{r['each']} | {r['each_p99']} |")
    for label, r in results.items():
        if "did" in r:
            print(f"\n# {label}: {r['did']}")
        backend = label.rsplit("(", 1)[-1].rstrip(")")
        if backend.endswith(", slow webhook"):
            plain = results.get(label.replace(", slow webhook", ""))
            if plain is not None:
                print(f"# {label}: {r['rps'] / plain['rps']:.2f}x the requests/s without the webhook, "
                      f"p99 {r['p99_us'] / plain['p99_us']:.2f}x")
            continue
        one = results.get(f"geo-engine serve --workers 1 ({backend})")
        if one is not None and label.startswith("geo-engine") and r is not one:
            print(f"# {label}: {r['rps'] / one['rps']:.2f}x the requests/s of one worker on {backend}")
        if "db_ms" in r:
            print(f"# {label}: the database used {r['db_ms']:.3f} ms of CPU a ping: "
                  f"{1000 / r['db_ms']:,.0f} pings/s a database core")
    lite = results.get("geo-engine serve --workers 1 (sqlite)")
    pg = results.get("geo-engine serve --workers 1 (postgresql)")
    if lite and pg:
        print(f"# one instance on PostgreSQL: {pg['rps'] / lite['rps']:.2f}x the requests/s of one on SQLite")


if __name__ == "__main__":
    main()
