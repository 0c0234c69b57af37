"""The snapshot a ping reads: whole, whatever an import or a reload does meanwhile (SPEC 8)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import httpx

from geo_engine import Engine, Settings
from geo_engine.snapshot import Snapshot

from .conftest import DEMO, WGS84
from .test_serve import ADMIN, FERRY, PUB, T0, free_port, start


def far_stores(k: int, n: int = 50) -> dict:
    """``n`` stores (with circles) in Europe whose ids sort before every demo store's, so each
    import moves every demo store to a new position in the sorted store arrays."""
    features = []
    for j in range(n):
        lon, lat = 2.0 + 0.01 * j, 48.0 + 0.01 * k
        features.append({"type": "Feature", "properties": {"kind": "store", "id": f"aa-{k:03d}-{j:02d}"},
                         "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        features.append({"type": "Feature", "properties": {"id": f"aa-g-{k:03d}-{j:02d}",
                                                           "store_id": f"aa-{k:03d}-{j:02d}",
                                                           "radius_m": 50},
                         "geometry": {"type": "Point", "coordinates": [lon, lat]}})
    return {"type": "FeatureCollection", "features": features}


def test_pings_beside_a_store_stay_right_while_far_stores_are_imported(tmp_path):
    """Before the snapshot, a reload assigned the stores, then their index, one by one while
    requests read them: a ping beside the Ferry Building was answered with a store in Europe."""
    port = free_port()
    proc = start(tmp_path / "race.db", port)
    url = f"http://127.0.0.1:{port}"
    ferry = next(f["geometry"]["coordinates"] for f in json.loads(DEMO.read_text())["features"]
                 if f["properties"].get("id") == "fc-ferry")
    want = WGS84.inv(FERRY[1], FERRY[0], ferry[0], ferry[1])[2]
    wrong: list[str] = []
    answered = 0
    lock = threading.Lock()
    importing = threading.Event()
    importing.set()

    def importer():
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
            for k in range(40):
                r = client.post("/v1/geofences/import", json=far_stores(k))
                if r.status_code != 200:
                    with lock:
                        wrong.append(f"import {k}: {r.status_code} {r.text}")
        importing.clear()

    def pinger(t: int):
        nonlocal answered
        with httpx.Client(base_url=url, headers=PUB, timeout=30) as client:
            i = 0
            while importing.is_set() or i < 20:
                r = client.post("/v1/pings", json={
                    "device_id": f"racer-{t}", "lat": FERRY[0], "lon": FERRY[1], "accuracy_m": 10,
                    "timestamp": (T0 + timedelta(seconds=i)).isoformat()})
                i += 1
                body = r.json() if r.status_code == 200 else None
                near = body and body["nearest_store"]
                ok = near is not None and near["store_id"] == "fc-ferry" and \
                    abs(near["distance_m"] - round(want, 3)) < 1e-3
                # inside the hall all along: entered on the first ping, never left
                ok = ok and [e["type"] for e in body["events"]] == (["enter"] if i == 1 else [])
                with lock:
                    answered += 1
                    if not ok:
                        wrong.append(f"ping {t}/{i}: {r.status_code} {r.text}")
    threads = [threading.Thread(target=pinger, args=(t,)) for t in range(4)]
    threads.append(threading.Thread(target=importer))
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert proc.poll() is None, (proc.returncode, Path(proc.log_path).read_text()[-500:])
        stores = httpx.get(f"{url}/health").json()["stores"]
    finally:
        proc.kill()
        proc.wait()
    assert wrong == [], f"{len(wrong)} of {answered} answers wrong, first: {wrong[:3]}"
    assert answered >= 80 and stores == 32 + 40 * 50


def test_a_snapshot_taken_is_unchanged_by_a_reload(tmp_path):
    engine = Engine(Settings(db=str(tmp_path / "s.db")))
    engine.import_files([DEMO])
    before = engine.snapshot
    n = len(before.places.stores)
    path = tmp_path / "far.geojson"
    path.write_text(json.dumps(far_stores(0, 5)))
    engine.import_files([path])
    assert engine.snapshot is not before and len(engine.snapshot.places.stores) == n + 5
    # what a ping holding the old snapshot reads is all of the old world
    assert len(before.places.stores) == n and len(before.places.store_index) == n
    assert before.places.geofence("aa-g-000-00") is None
    assert engine.snapshot.places.geofence("aa-g-000-00") is not None


def test_a_campaign_change_keeps_the_places_and_swaps_the_targeting(tmp_path):
    engine = Engine(Settings(db=str(tmp_path / "s.db")))
    engine.import_files([DEMO])
    before: Snapshot = engine.snapshot
    engine.put_campaign("c", {"id": "c", "offer": {"title": "x"}, "targets": {"tags": ["coffee"]},
                              "trigger": {"type": "enter"}})
    after = engine.snapshot
    assert after.places is before.places and after.targeting is not before.targeting
    assert [c.id for c in after.campaigns] == ["c"] and before.campaigns == []
    assert after.generations["campaigns"] == before.generations["campaigns"] + 1
    assert after.generations["places"] == before.generations["places"]
