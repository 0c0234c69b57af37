"""Targeting on plain values: which campaigns a geofence, store, tag or nearby reach brings in,
the same for a ping and for a scored place."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from geo_engine import Engine, Settings
from geo_engine.campaigns import parse_campaign
from geo_engine.geodesy import GEOD
from geo_engine.model import Confidence, Event, EventType, Geofence, Store, StoreArrays
from geo_engine.snapshot import Places
from geo_engine.targeting import Targeting

from .conftest import WGS84


def feature(props, lon, lat):
    return {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


def places_of(stores: list[Store], fences: list[Geofence]) -> Places:
    """Places from values alone, as the snapshot holds them (no database)."""
    stores = sorted(stores, key=lambda s: s.id)
    arrays = StoreArrays(np.array([s.id for s in stores], dtype=object),
                         np.array([s.lat for s in stores]), np.array([s.lon for s in stores]),
                         np.array([s.name for s in stores], dtype=object))
    return Places(arrays, sorted(fences, key=lambda f: f.id), {s.id: s for s in stores})


def camp(cid, trigger, **targets):
    return parse_campaign({"id": cid, "offer": {"title": cid}, "targets": targets, "trigger": trigger})


def test_the_campaigns_on_a_geofence_are_those_that_target_it(tmp_path):
    """The per-geofence lookup the ping uses agrees with Campaign.targets_fence, whether a
    campaign names the geofence, its store, a tag of either, or an id that is also a tag."""

    rng = random.Random(5)
    tags = ["coffee", "tea", "g3", "s4", "late"]
    features = []
    for k in range(12):
        lon, lat = -122.4 + k * 0.01, 37.7
        features.append(feature({"kind": "store", "id": f"s{k}", "tags": rng.sample(tags, 2)}, lon, lat))
        features.append(feature({"id": f"g{k}", "store_id": f"s{k}", "radius_m": 50,
                                 "tags": rng.sample(tags, rng.randint(0, 2))}, lon, lat))
    path = tmp_path / "places.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    e = Engine(Settings(db=str(tmp_path / "geo.db")))
    e.import_files([path])
    for n in range(15):
        targets = {"geofence_ids": rng.sample([f"g{k}" for k in range(12)], rng.randint(0, 2)),
                   "store_ids": rng.sample([f"s{k}" for k in range(12)], rng.randint(0, 2)),
                   "tags": rng.sample(tags, rng.randint(0, 2))}
        if not any(targets.values()):
            targets["tags"] = ["coffee"]
        trigger = rng.choice([{"type": "enter"}, {"type": "exit"},
                              {"type": "dwell", "dwell_s": 60 * (n + 1)}])
        e.put_campaign(f"c{n}", {"id": f"c{n}", "offer": {"title": "x"}, "targets": targets,
                                  "trigger": trigger})
    for k in range(12):
        fence = e.snapshot.places.geofence(f"g{k}")
        store = e.snapshot.places.store(f"s{k}")
        want: dict[str, list[str]] = {}
        for c in sorted(e.snapshot.targeting.active, key=lambda c: c.id):
            if c.targets_fence(fence, store):
                want.setdefault(c.trigger, []).append(c.id)
        on = e.snapshot.targeting.on_fence(f"g{k}")
        assert {t: [c.id for c in cs] for t, cs in on.by_trigger.items()} == want
        dwell = [c.dwell_s for c in e.snapshot.targeting.active if c.id in want.get("dwell", [])]
        assert on.dwell_s == (min(dwell) if dwell else None)


ORIGIN = (48.8566, 2.3522)


def spot(bearing, metres):
    lon, lat, _ = GEOD.fwd(ORIGIN[1], ORIGIN[0], bearing, metres)
    return lat, lon


@pytest.fixture
def paris():
    rng = np.random.default_rng(4)
    stores = [Store(id=f"s{k:02d}", lat=la, lon=lo, tags=("books",) if k % 3 else ("coffee",))
              for k, (la, lo) in enumerate(spot(b, m) for b, m in
                                           zip(rng.uniform(0, 360, 60), rng.uniform(0, 3000, 60),
                                               strict=True))]
    fences = [Geofence(id=f"g{s.id}", store_id=s.id, lat=s.lat, lon=s.lon, radius_m=80.0)
              for s in stores]
    return stores, places_of(stores, fences)


def test_nearby_stores_are_the_targeted_stores_within_the_radius_by_brute_force(paris):
    stores, places = paris
    near = camp("near", {"type": "nearby", "radius_m": 700}, tags=["books"])
    targeting = Targeting([near], places)
    rng = np.random.default_rng(5)
    for bearing, metres in zip(rng.uniform(0, 360, 50), rng.uniform(0, 3500, 50), strict=True):
        lat, lon = spot(bearing, metres)
        want = sorted((WGS84.inv(lon, lat, s.lon, s.lat)[2], k) for k, s in enumerate(stores)
                      if "books" in s.tags and WGS84.inv(lon, lat, s.lon, s.lat)[2] <= 700)
        got = targeting.nearby_stores(near, lat, lon)
        assert [p for _, p in got] == [p for _, p in want]
        np.testing.assert_allclose([d for d, _ in got], [d for d, _ in want], atol=1e-6)


def test_many_nearby_campaigns_are_found_in_one_lookup_as_one_by_one(paris):
    """The one grid over every nearby campaign's reach (owners: campaign and store pairs) finds
    what each campaign's own lookup finds, in campaign order; campaigns by store id find their
    stores without reading any store's details, and an unknown id finds nothing."""
    stores, places = paris
    rng = np.random.default_rng(8)
    ids = [s.id for s in stores]
    near = [camp(f"n{k:03d}", {"type": "nearby", "radius_m": float(rng.choice([150, 400, 900]))},
                 store_ids=list(rng.choice(ids, 3)) + (["s-none"] if k % 5 == 0 else []))
            for k in range(120)]
    near.append(camp("tagged", {"type": "nearby", "radius_m": 300}, tags=["coffee"]))
    targeting = Targeting(near, places)
    for c in near[:-1]:
        pos, _ = targeting.stores_targeted_by(c)
        assert sorted(places.stores.ids[pos].tolist()) == sorted(c.store_ids - {"s-none"})
    looked = 0
    for bearing, metres in zip(rng.uniform(0, 360, 60), rng.uniform(0, 3500, 60), strict=True):
        lat, lon = spot(bearing, metres)
        one_by_one = [(c.id, targeting.nearby_stores(c, lat, lon)) for c in targeting.nearby]
        got = [(c.id, found) for c, found in targeting.nearby_reach(lat, lon)]
        assert got == [(cid, found) for cid, found in one_by_one if found]
        looked += len(got)
    assert looked > 60


def test_a_ping_and_a_scored_place_bring_in_the_same_campaigns(paris):
    stores, places = paris
    enter = camp("enter", {"type": "enter"}, tags=["coffee"])
    dwell = camp("dwell", {"type": "dwell", "dwell_s": 60}, tags=["coffee"])
    near = camp("near", {"type": "nearby", "radius_m": 500}, tags=["books"])
    targeting = Targeting([enter, dwell, near], places)
    for s in stores[:20]:
        hits = places.hits(s.lat, s.lon, 0.0, None)
        nearest = places.nearest_one(s.lat, s.lon)
        events = [Event(EventType.ENTER, fid, sid, conf) for fid, (sid, conf) in hits.items()]
        ping = targeting.ping_candidates(events, hits, s.lat, s.lon, 0.0, nearest)
        reach = [(near, p, d) for d, p in targeting.nearby_stores(near, s.lat, s.lon)]
        place = targeting.place_candidates(hits, s.lat, s.lon, reach)
        assert sorted((c.campaign.id, c.store.id, c.distance_m) for c in ping) == \
            sorted((c.campaign.id, c.store.id, c.distance_m) for c in place)
        # entering a coffee shop's geofence brings in the enter campaign there, not the dwell one
        coffee = "coffee" in s.tags
        assert any(c.campaign.id == "enter" and c.store.id == s.id for c in ping) == coffee
        assert not any(c.campaign.id == "dwell" for c in ping)


def test_a_dwell_candidate_needs_its_own_dwell_s(paris):
    stores, places = paris
    short = camp("short", {"type": "dwell", "dwell_s": 60}, tags=["coffee"])
    long = camp("long", {"type": "dwell", "dwell_s": 600}, tags=["coffee"])
    targeting = Targeting([long, short], places)
    s = next(s for s in stores if "coffee" in s.tags)
    fid = f"g{s.id}"
    assert targeting.dwell_thresholds([fid, "g-unknown"]) == {fid: 60}
    for lasted, want in ((60.0, ["short"]), (600.0, ["long", "short"])):
        event = Event(EventType.DWELL, fid, s.id, Confidence.HIGH, duration_s=lasted)
        got = targeting.ping_candidates([event], {}, s.lat, s.lon, 0.0, None)
        assert sorted(c.campaign.id for c in got) == want


def test_disabled_campaigns_target_nothing(paris):
    _, places = paris
    off = parse_campaign({"id": "off", "enabled": False, "offer": {"title": "x"},
                          "targets": {"tags": ["coffee", "books"]}, "trigger": {"type": "enter"}})
    targeting = Targeting([off], places)
    assert targeting.campaigns == [off] and targeting.active == []
    assert targeting.on_fence("gs00").by_trigger == {}
