"""Several `geo-engine serve` instances on one PostgreSQL: the promises of one, kept by many.

Each instance is its own process with its own snapshot; the database holds the caps, the
budgets, the idempotency keys and the push log. Pings go to whichever instance, as a load
balancer with no stickiness sends them; one instance is SIGKILLed mid-stream.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from datetime import timedelta

import httpx

from geo_engine import Database

from .test_serve import ADMIN, AWAY, FERRY, PUB, T0, free_port, put_once_campaign, start


def _instances(tmp_path, url: str, n: int) -> list[tuple[object, str]]:
    out = []
    for k in range(n):  # one after the other: the first makes the schema and the demo chain
        port = free_port()
        proc = start(tmp_path / f"instance{k}.db", port, env_extra={"GEO_ENGINE_DATABASE_URL": url})
        out.append((proc, f"http://127.0.0.1:{port}"))
    return out


def test_three_instances_lose_no_answered_push_and_break_no_cap_or_budget(pg_cluster, tmp_path):
    url = pg_cluster.new_database("three_instances")
    instances = _instances(tmp_path, url, 3)
    try:
        put_once_campaign(instances[0][1], "fleet", 45)  # once per device, 45 in all
        answered: list[tuple[str, str]] = []
        failed: list[str] = []
        lock = threading.Lock()
        turn = itertools.count()
        killed = threading.Event()

        def send(body: dict) -> httpx.Response | None:
            """To the next instance; to another when that one is gone (same ping_id: the
            instance that committed it, if any, answers the same)."""
            for _ in range(6):
                k = next(turn) % 3
                if killed.is_set() and k == 2:
                    continue
                try:
                    r = httpx.post(f"{instances[k][1]}/v1/pings", json=body, headers=PUB, timeout=10)
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    return r
                with lock:
                    failed.append(f"{r.status_code} {r.text[:200]}")
                return None
            return None

        def walker(t: int) -> None:
            for i in range(10):
                device = f"w{i % 16}"  # the same 16 devices in every thread, at once
                walk = T0 + timedelta(minutes=20 * i)
                send({"device_id": device, "lat": AWAY[0], "lon": AWAY[1], "accuracy_m": 10,
                      "timestamp": walk.isoformat(), "ping_id": f"{t}-{i}-away"})
                r = send({"device_id": device, "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
                          "timestamp": (walk + timedelta(minutes=10)).isoformat(),
                          "ping_id": f"{t}-{i}-in"})
                if r is not None and (r.json()["offer"] or {}).get("campaign_id") == "fleet":
                    with lock:
                        answered.append((device, f"{t}-{i}-in"))
            for i in range(10):  # then new devices, one each: the budget runs out
                device = f"n{t}-{i}"
                r = send({"device_id": device, "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
                          "timestamp": (T0 + timedelta(hours=6, minutes=i)).isoformat(),
                          "ping_id": f"{t}-{i}-new"})
                if r is not None and (r.json()["offer"] or {}).get("campaign_id") == "fleet":
                    with lock:
                        answered.append((device, f"{t}-{i}-new"))
        threads = [threading.Thread(target=walker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        os.kill(instances[2][0].pid, signal.SIGKILL)  # mid-stream
        killed.set()
        for t in threads:
            t.join()
        assert failed == []  # no 5xx, no refusal: contention is waited out or run again
        db = Database(url)
        pushed = db.sql.query("SELECT device_id, ping_id FROM pushes WHERE campaign_id = 'fleet'")
        spend = db.devices.spend(None, ["fleet"])
        db.close()
        assert set(answered) <= set(pushed)  # every answered push is recorded
        devices = [d for d, _ in pushed]
        assert len(devices) == len(set(devices))  # once per device, though 8 threads at once
        assert len(pushed) == 45 == spend["fleet"]  # the budget spent exactly, never overshot
        assert len(answered) >= 30
    finally:
        for proc, _ in instances:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def test_a_change_through_one_instance_is_in_force_in_the_others_at_once(pg_cluster, tmp_path):
    """Instances poll for changes only every hour here: LISTEN/NOTIFY carries a new campaign to
    the others before their next ping, and a deletion answered by one is never pushed by
    another (the ping's transaction checks the change counters, share-locked)."""
    url = pg_cluster.new_database("follow")
    instances = []
    try:
        for k in range(2):
            port = free_port()
            proc = start(tmp_path / f"f{k}.db", port, env_extra={"GEO_ENGINE_DATABASE_URL": url,
                                                               "GEO_ENGINE_RELOAD_CHECK_S": "3600"})
            instances.append((proc, f"http://127.0.0.1:{port}"))
        (_, a), (_, b) = instances
        put_once_campaign(a, "told", 100)
        deadline = time.monotonic() + 5
        while not any(c["id"] == "told"
                      for c in httpx.get(f"{b}/v1/campaigns", headers=ADMIN).json()["campaigns"]):
            assert time.monotonic() < deadline, "instance b never heard of the campaign"
            time.sleep(0.05)
        r = httpx.post(f"{b}/v1/pings", headers=PUB, json={
            "device_id": "x", "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
            "timestamp": T0.isoformat()}).json()
        assert r["offer"]["campaign_id"] == "told"
        assert httpx.delete(f"{a}/v1/campaigns/told", headers=ADMIN).status_code == 200
        r = httpx.post(f"{b}/v1/pings", headers=PUB, json={
            "device_id": "y", "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
            "timestamp": T0.isoformat()}).json()
        assert r["offer"] is None or r["offer"]["campaign_id"] != "told"
    finally:
        for proc, _ in instances:
            proc.terminate()
            proc.wait(timeout=30)
