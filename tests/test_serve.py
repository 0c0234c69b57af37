"""`geo-engine serve` as a real process on a free loopback port: kill it, restart it, lose nothing."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

KEYS = {"GEO_ENGINE_ADMIN_KEY": "serve-admin", "GEO_ENGINE_PUBLISHABLE_KEY": "serve-pub"}
ADMIN = {"Authorization": "Bearer serve-admin"}
PUB = {"Authorization": "Bearer serve-pub"}
FERRY = (37.7955, -122.3937)
AWAY = (37.8050, -122.4100)
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(db, port, keys=None, min_offer_interval_s: str | None = "0",
          args: tuple[str, ...] = (), env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    """``geo-engine serve --demo`` on ``port`` (and ``args``), with these keys (and offer
    interval, unless None), once it answers /health. The pings' timestamps are taken as given
    (the tests replay fixed days), and their publishable key needs no device token and is not
    held to a rate a device, unless ``env_extra`` says otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_ENGINE_")} | (keys or KEYS)
    env |= {"GEO_ENGINE_TRUST_CLIENT_CLOCK": "true", "GEO_ENGINE_REQUIRE_DEVICE_TOKEN": "false",
            "GEO_ENGINE_DEVICE_PINGS_PER_S": "0", **(env_extra or {})}
    if min_offer_interval_s is not None:
        env["GEO_ENGINE_MIN_OFFER_INTERVAL_S"] = min_offer_interval_s
    # the access log goes to a file: a pipe nobody reads would fill and stall the server
    log = open(db.with_suffix(f".{port}.log"), "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "geo_engine", "serve", "--port", str(port),
                             "--db", str(db), "--demo", *args], env=env, stdout=log, stderr=log,
                            text=True)
    proc.log_path = log.name
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {Path(proc.log_path).read_text()}")
    proc.kill()
    raise AssertionError("serve did not come up in 60 s")


@pytest.fixture
def served(tmp_path):
    procs = []

    def run(*args):
        port = free_port()
        procs.append(start(tmp_path / "served.db", port, args=args))
        return procs[-1], f"http://127.0.0.1:{port}"
    yield run, tmp_path / "served.db"
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def put_once_campaign(url: str, campaign_id: str, budget_total: int) -> None:
    """An offer at the Ferry Building, once per device, within a budget, through the API."""
    campaign = {"id": campaign_id, "offer": {"title": "once"}, "targets": {"store_ids": ["fc-ferry"]},
                "trigger": {"type": "enter"}, "priority": 99,
                "caps": {"per_device_total": 1, "budget_total": budget_total}}
    assert httpx.put(f"{url}/v1/campaigns/{campaign_id}", json=campaign, headers=ADMIN).status_code == 200


def test_sigkill_mid_stream_loses_no_answered_offer_and_breaks_no_cap(served):
    run, db = served
    proc, url = run()
    put_once_campaign(url, "kill-test", 40)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def walker(t: int):
        with httpx.Client(base_url=url, headers=PUB, timeout=5) as c:
            for i in range(400):
                if stop.is_set():
                    return
                device = f"w{t}-{i % 60}"  # each device comes back: the per-device cap is tested
                walk = T0 + timedelta(minutes=20 * i)  # away, then ten minutes later inside
                try:
                    c.post("/v1/pings", json={"device_id": device, "lat": AWAY[0], "lon": AWAY[1],
                                              "accuracy_m": 10, "timestamp": walk.isoformat()})
                    r = c.post("/v1/pings", json={
                        "device_id": device, "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
                        "timestamp": (walk + timedelta(minutes=10)).isoformat()})
                except httpx.HTTPError:
                    return  # the server is gone
                offer = r.json()["offer"]
                if offer and offer["campaign_id"] == "kill-test":
                    with lock:
                        answered.append(device)
    threads = [threading.Thread(target=walker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it while offers are still being answered
        with lock:
            if len(answered) >= 12:
                break
        time.sleep(0.01)
    assert answered, "no offer was answered before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join()

    with sqlite3.connect(db) as conn:
        pushed = [d for (d,) in conn.execute("SELECT device_id FROM pushes WHERE campaign_id = 'kill-test'")]
    assert set(answered) <= set(pushed), "an answered offer is missing from the push log"
    assert len(pushed) == len(set(pushed)), "a device got more than per_device_total"
    assert len(pushed) <= 40

    # restarted on the same file, the caps still hold
    proc, url = run()
    later = T0 + timedelta(days=30)
    with httpx.Client(base_url=url, headers=PUB, timeout=5) as c:
        c.post("/v1/pings", json={"device_id": pushed[0], "lat": AWAY[0], "lon": AWAY[1],
                                  "timestamp": later.isoformat()})
        again = c.post("/v1/pings", json={
            "device_id": pushed[0], "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
            "timestamp": (later + timedelta(minutes=10)).isoformat()}).json()
        assert again["events"][0]["type"] == "enter"  # a real visit, turned down by the cap
        assert {"campaign_id": "kill-test", "reason": "frequency_cap"} in again["decision"]["rejected"]
        fresh = 0
        for i in range(60):
            r = c.post("/v1/pings", json={"device_id": f"new-{i}", "lat": FERRY[0], "lon": FERRY[1],
                                          "accuracy_m": 10}).json()
            fresh += bool(r["offer"] and r["offer"]["campaign_id"] == "kill-test")
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT count(*) FROM pushes WHERE campaign_id = 'kill-test'").fetchone()[0]
    assert total == 40 == len(pushed) + fresh  # the budget is spent exactly, never over


def test_sigterm_shuts_down_cleanly(served):
    run, _ = served
    proc, url = run()
    assert httpx.get(f"{url}/health").json()["stores"] == 32
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so a supervisor sees why it ended
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "Traceback" not in Path(proc.log_path).read_text()


def test_two_workers_on_one_database_keep_every_device_consistent(served):
    """Two `serve` processes on one file, each device's pings alternating between them: each
    process caches device state, so a stale copy must be caught (the row's version) every time."""
    run, db = served
    _, url_a = run()
    _, url_b = run()
    put_once_campaign(url_a, "two-workers", 30)
    deadline = time.monotonic() + 10  # worker B notices A's change within GEO_ENGINE_RELOAD_CHECK_S
    while time.monotonic() < deadline:
        if any(c["id"] == "two-workers" for c in
               httpx.get(f"{url_b}/v1/campaigns", headers=ADMIN).json()["campaigns"]):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("worker B never saw the campaign made through worker A")
    answered: list[str] = []
    lock = threading.Lock()

    def walker(t: int):
        clients = [httpx.Client(base_url=u, headers=PUB, timeout=10) for u in (url_a, url_b)]
        for i in range(24):
            device = f"t{t}-{i % 8}"
            walk = T0 + timedelta(minutes=20 * i)
            # away through one worker, in through the other, turn about
            clients[i % 2].post("/v1/pings", json={"device_id": device, "lat": AWAY[0], "lon": AWAY[1],
                                                   "accuracy_m": 10, "timestamp": walk.isoformat()})
            r = clients[(i + 1) % 2].post("/v1/pings", json={
                "device_id": device, "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
                "timestamp": (walk + timedelta(minutes=10)).isoformat()}).json()
            assert [e["type"] for e in r["events"]] == ["enter"], r  # a stale "inside" would hide it
            if r["offer"] and r["offer"]["campaign_id"] == "two-workers":
                with lock:
                    answered.append(device)
        for c in clients:
            c.close()
    threads = [threading.Thread(target=walker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sqlite3.connect(db) as conn:
        pushed = [d for (d,) in conn.execute(
            "SELECT device_id FROM pushes WHERE campaign_id = 'two-workers'")]
        events = conn.execute("SELECT device_id, type FROM events ORDER BY id").fetchall()
    assert sorted(answered) == sorted(pushed)
    assert len(pushed) == len(set(pushed)) == 30  # one each at most, and the budget spent exactly
    by_device: dict[str, list[str]] = {}
    for device, kind in events:
        by_device.setdefault(device, []).append(kind)
    assert len(by_device) == 32
    for device, kinds in by_device.items():  # 24 visits each way round: enter, exit, enter...
        assert kinds == ["enter", "exit"] * 2 + ["enter"], (device, kinds)


def _workers(parent: subprocess.Popen) -> list[int]:
    """The pids of a ``serve --workers N``'s worker processes."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent.pid and b"spawn_main" in cmd:
                out.append(int(entry.name))
    return out


def test_workers_on_one_port_break_no_cap_lose_no_push_and_follow_changes(served):
    """`serve --workers 2`: three pings at once of each device, walking in through whichever
    worker the kernel picks, one worker SIGKILLed mid-stream; then the campaign deleted through
    one worker is never pushed by either after the deletion was answered."""
    run, db = served
    proc, url = run("--workers", "2")
    assert len(_workers(proc)) == 2
    put_once_campaign(url, "w", 25)
    answered: list[str] = []
    lock = threading.Lock()

    def walker(t: int, rounds: int, prefix: str):
        with httpx.Client(base_url=url, headers=PUB, timeout=10) as client:
            for i in range(rounds):
                device = f"{prefix}{i % 12}"  # the same devices in every thread, at once
                walk = T0 + timedelta(minutes=20 * i)
                try:
                    client.post("/v1/pings", json={"device_id": device, "lat": AWAY[0],
                                                   "lon": AWAY[1], "accuracy_m": 10,
                                                   "timestamp": walk.isoformat()})
                    r = client.post("/v1/pings", json={
                        "device_id": device, "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
                        "timestamp": (walk + timedelta(minutes=10)).isoformat()})
                except httpx.HTTPError:  # the killed worker's connections
                    continue
                if r.status_code == 200 and (r.json()["offer"] or {}).get("campaign_id") == "w":
                    with lock:
                        answered.append(device)
    threads = [threading.Thread(target=walker, args=(t, 24, "d")) for t in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(_workers(proc)[0], signal.SIGKILL)  # mid-stream
    for t in threads:
        t.join()
    with sqlite3.connect(db) as conn:
        pushed = [d for (d,) in conn.execute("SELECT device_id FROM pushes WHERE campaign_id = 'w'")]
    assert set(answered) <= set(pushed)  # no answered push lost
    assert len(pushed) == len(set(pushed)) <= 12  # one per device at most, three pings at once
    assert len(answered) >= 1
    # a deletion answered by one worker is in force in both before their next decision
    deadline = time.monotonic() + 30
    while True:  # the surviving worker, or a new one in the killed one's place, answers
        try:
            if httpx.delete(f"{url}/v1/campaigns/w", headers=ADMIN, timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "no worker answered"
        time.sleep(0.2)
    answered.clear()
    threads = [threading.Thread(target=walker, args=(t, 12, "after-")) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sqlite3.connect(db) as conn:
        after = conn.execute("SELECT count(*) FROM pushes WHERE campaign_id = 'w' AND "
                             "device_id LIKE 'after-%'").fetchone()[0]
    assert answered == [] and after == 0
