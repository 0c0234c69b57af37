"""The indexes against a brute-force geodesic scan: same ids, same order, ties by id."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo_engine import Confidence, FenceIndex, Geofence, StoreIndex
from geo_engine.io.places import geofence_from_geometry

from .conftest import WGS84, brute_nearest

lats = st.floats(-90, 90)
lons = st.floats(-180, 180)

def assert_same(got, want):
    """Same ids in the same order, and the same geodesic metres."""
    assert got[0].tolist() == want[0].tolist()
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-6)


# Places where a planar or careless index goes wrong (SPEC section 2).
NAMED = [
    pytest.param(0.0, 179.99999, id="antimeridian-east"),
    pytest.param(0.0, -179.99999, id="antimeridian-west"),
    pytest.param(3.0, 180.0, id="on-the-antimeridian"),
    pytest.param(90.0, 0.0, id="north-pole"),
    pytest.param(-90.0, 123.0, id="south-pole"),
    pytest.param(89.95, -45.0, id="near-north-pole"),
    pytest.param(-89.99, 170.0, id="near-south-pole"),
    pytest.param(70.0, 25.0, id="lat-70"),
    pytest.param(65.0, -150.0, id="lat-65-empty-region"),
    pytest.param(48.8566, 2.3522, id="on-five-duplicates"),
]


@pytest.mark.parametrize(("lat", "lon"), NAMED)
@pytest.mark.parametrize("k", [1, 5, 12])
def test_nearest_named_places(world, lat, lon, k):
    slats, slons, index = world
    assert_same(index.nearest(lat, lon, k), brute_nearest(lat, lon, slats, slons, k=k))


@pytest.mark.parametrize(("lat", "lon"), NAMED)
@pytest.mark.parametrize("radius_m", [0.0, 50.0, 5_000.0, 200_000.0])
def test_within_named_places(world, lat, lon, radius_m):
    slats, slons, index = world
    assert_same(index.within(lat, lon, radius_m), brute_nearest(lat, lon, slats, slons, radius_m=radius_m))


def test_across_the_antimeridian_the_store_on_the_other_side_is_nearest():
    # SPEC 2: a store at lon 179.9999 is about 22 m from a phone at lon -179.9999
    index = StoreIndex([0.0, 0.0], [179.9999, -179.0])
    idx, dist = index.nearest(0.0, -179.9999, 1)
    assert idx.tolist() == [0]
    assert dist[0] == pytest.approx(22.26, abs=0.05)


def test_ties_are_broken_by_id_order():
    index = StoreIndex([10.0] * 4, [20.0] * 4)
    assert index.nearest(10.001, 20.0, 3)[0].tolist() == [0, 1, 2]
    assert index.within(10.0, 20.0, 0.0)[0].tolist() == [0, 1, 2, 3]


@settings(max_examples=400, deadline=None)
@given(lats, lons, st.integers(1, 8))
def test_nearest_equals_brute_force_anywhere(world, lat, lon, k):
    slats, slons, index = world
    assert_same(index.nearest(lat, lon, k), brute_nearest(lat, lon, slats, slons, k=k))


@settings(max_examples=300, deadline=None)
@given(lats, lons, st.floats(0, 2_000_000))
def test_within_equals_brute_force_anywhere(world, lat, lon, radius_m):
    slats, slons, index = world
    assert_same(index.within(lat, lon, radius_m), brute_nearest(lat, lon, slats, slons, radius_m=radius_m))


points = st.tuples(lats, lons)


@settings(max_examples=200, deadline=None)
@given(st.lists(points, min_size=1, max_size=40), points, st.integers(1, 6))
def test_small_random_store_sets(stores, query, k):
    """Tiny and degenerate sets (duplicates, one store, k beyond the size)."""
    slats = np.array([p[0] for p in stores] * 2)  # every store twice: ties everywhere
    slons = np.array([p[1] for p in stores] * 2)
    index = StoreIndex(slats, slons)
    got_i, _ = index.nearest(*query, k)
    want_i, _ = brute_nearest(*query, slats, slons, k=k)
    assert got_i.tolist() == want_i.tolist()
    bulk_i, _ = index.nearest_bulk([query[0]], [query[1]], k)
    assert bulk_i[0][: len(want_i)].tolist() == want_i.tolist()


def test_nearest_bulk_equals_single_queries(world):
    slats, slons, index = world
    rng = np.random.default_rng(3)
    qlats = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 400))), slats[:300] + 1e-4])
    qlons = np.concatenate([rng.uniform(-180, 180, 400), slons[:300]])
    for k in (1, 4):
        bi, bd = index.nearest_bulk(qlats, qlons, k)
        for r in range(len(qlats)):
            want_i, want_d = brute_nearest(qlats[r], qlons[r], slats, slons, k=k)
            assert bi[r].tolist() == want_i.tolist()
            np.testing.assert_allclose(bd[r], want_d, atol=1e-6)


def test_bulk_pads_when_fewer_stores_than_k():
    index = StoreIndex([1.0], [2.0])
    idx, dist = index.nearest_bulk([0.0, 5.0], [0.0, 5.0], 3)
    assert idx.tolist() == [[0, -1, -1], [0, -1, -1]]
    assert np.isinf(dist[:, 1:]).all()
    assert StoreIndex([], []).nearest(0, 0, 3)[0].tolist() == []


def test_count_within_bulk_equals_brute_force(world):
    slats, slons, index = world
    rng = np.random.default_rng(5)
    qlats = np.concatenate([rng.uniform(-90, 90, 200), [90.0, -90.0, 0.0, 48.8566]])
    qlons = np.concatenate([rng.uniform(-180, 180, 200), [0.0, 0.0, 180.0, 2.3522]])
    for radius in (0.0, 10_000.0, 500_000.0):
        got = index.count_within_bulk(qlats, qlons, radius)
        want = [len(brute_nearest(a, o, slats, slons, radius_m=radius)[0])
                for a, o in zip(qlats, qlons, strict=True)]
        assert got.tolist() == want


# --- geofences -----------------------------------------------------------------------------

def _wrap(lon):
    return (lon + 180.0) % 360.0 - 180.0


def _square(fid, lon, lat, half, **kw):
    """A square as GeoJSON writes it: longitudes wrapped into [-180, 180)."""
    ring = [[_wrap(lon - half), lat - half], [_wrap(lon + half), lat - half],
            [_wrap(lon + half), lat + half], [_wrap(lon - half), lat + half],
            [_wrap(lon - half), lat - half]]
    return geofence_from_geometry({"type": "Polygon", "coordinates": [ring]}, id=fid,
                                  store_id="s", **kw)


def _circle(fid, lat, lon, radius_m, **kw):
    return Geofence(id=fid, store_id="s", lat=lat, lon=lon, radius_m=radius_m, **kw)


@pytest.fixture(scope="module")
def fence_world():
    rng = np.random.default_rng(11)
    fences = []
    for i in range(300):
        lat = float(np.degrees(np.arcsin(rng.uniform(-0.99, 0.99))))
        lon = float(rng.uniform(-180, 180))
        if i % 2:
            fences.append(_circle(f"c{i:04d}", lat, lon, float(rng.uniform(1, 50_000))))
        else:
            fences.append(_square(f"p{i:04d}", lon, lat, float(rng.uniform(0.001, 0.5))))
    # the hard places: a circle over each pole, fences across the antimeridian, lat 70
    fences += [
        _circle("pole-n", 89.99, 0.0, 5_000.0),
        _circle("pole-s", -89.995, 45.0, 2_000.0),
        _circle("dateline-circle", 0.0, 179.999, 800.0),
        _square("dateline-square", 180.0, -10.0, 0.2),  # runs 179.8 .. 180.2 = -179.8
        _square("lat70", 25.0, 70.0, 0.3),
    ]
    fences.sort(key=lambda f: f.id)
    return fences, FenceIndex(fences)


def _brute_contains(fences, lat, lon):
    out = []
    for i, f in enumerate(fences):
        if f.is_circle:
            inside = WGS84.inv(f.lon, f.lat, lon, lat)[2] <= f.radius_m
        else:
            inside = any(shapely.intersects_xy(p, lon, lat) for p in f.parts)
        if inside:
            out.append(i)
    return out


@settings(max_examples=300, deadline=None)
@given(lats, lons)
def test_contains_equals_brute_force(fence_world, lat, lon):
    fences, index = fence_world
    got = [i for i, _ in index.containing(lat, lon)]
    assert got == _brute_contains(fences, lat, lon)


@pytest.mark.parametrize(("lat", "lon", "fid"), [
    (90.0, 0.0, "pole-n"),  # the pole itself, inside a circle centred 1.1 km from it
    (89.995, 180.0, "pole-n"),  # across the pole
    (-90.0, -170.0, "pole-s"),
    (0.0, -179.9985, "dateline-circle"),  # the centre is on the other side of ±180
    (-10.0, -179.9, "dateline-square"),
    (-10.0, 179.9, "dateline-square"),
    (70.25, 25.25, "lat70"),
])
def test_contains_named_places(fence_world, lat, lon, fid):
    fences, index = fence_world
    got = {fences[i].id for i, _ in index.containing(lat, lon)}
    assert fid in got
    assert [i for i, _ in index.containing(lat, lon)] == _brute_contains(fences, lat, lon)


def test_containing_bulk_equals_single(fence_world):
    fences, index = fence_world
    rng = np.random.default_rng(2)
    qlats = np.concatenate([rng.uniform(-90, 90, 2000),
                            [f.lat for f in fences if f.is_circle]])
    qlons = np.concatenate([rng.uniform(-180, 180, 2000),
                            [f.lon for f in fences if f.is_circle]])
    pts, fs = index.containing_bulk(qlats, qlons)
    got = sorted(zip(pts.tolist(), fs.tolist(), strict=True))
    want = sorted((r, i) for r in range(len(qlats)) for i in _brute_contains(fences, qlats[r], qlons[r]))
    assert got == want
    assert len(want) > 150  # the check is not vacuous


def test_confidence_for_a_circle():
    index = FenceIndex([_circle("c", 45.0, 7.0, 100.0)])
    lon_at = lambda d: WGS84.fwd(7.0, 45.0, 90.0, d)[0]  # noqa: E731 - a point d metres east
    assert index.containing(45.0, lon_at(50), accuracy_m=30) == [(0, Confidence.HIGH)]
    assert index.containing(45.0, lon_at(90), accuracy_m=30) == [(0, Confidence.MEDIUM)]
    assert index.containing(45.0, lon_at(120), accuracy_m=30) == [(0, Confidence.LOW)]
    assert index.containing(45.0, lon_at(140), accuracy_m=30) == []


def test_confidence_for_a_polygon_with_a_hole():
    outer = [[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]
    hole = [[0.004, 0.004], [0.006, 0.004], [0.006, 0.006], [0.004, 0.006], [0.004, 0.004]]
    f = geofence_from_geometry({"type": "Polygon", "coordinates": [outer, hole]}, id="h",
                               store_id="s")
    index = FenceIndex([f])
    # the hole is 0.002 degrees wide: its middle is about 111 m from its edge
    assert index.containing(0.005, 0.005, accuracy_m=0) == []
    assert index.containing(0.005, 0.005, accuracy_m=100) == []
    assert index.containing(0.005, 0.005, accuracy_m=120) == [(0, Confidence.LOW)]
    # halfway between the hole and the outer edge (~221 m from both), and near one edge
    assert index.containing(0.002, 0.005, accuracy_m=200) == [(0, Confidence.HIGH)]
    assert index.containing(0.002, 0.005, accuracy_m=240) == [(0, Confidence.MEDIUM)]
    assert index.containing(0.0001, 0.005, accuracy_m=5) == [(0, Confidence.HIGH)]
    assert index.containing(0.0001, 0.005, accuracy_m=20) == [(0, Confidence.MEDIUM)]
    assert index.containing(-0.0001, 0.005, accuracy_m=20) == [(0, Confidence.LOW)]


def test_distance_to_a_fence(fence_world):
    fences, index = fence_world
    i = next(j for j, f in enumerate(fences) if f.id == "dateline-square")
    # 0.2 degrees of latitude south of the square's south edge, across the antimeridian
    d = index.distance_m(i, -10.4, 179.95)
    assert d == pytest.approx(WGS84.inv(179.95, -10.4, 179.95, -10.2)[2], rel=1e-4)
    assert index.distance_m(i, -10.0, -179.9) == 0.0
    j = next(j for j, f in enumerate(fences) if f.id == "pole-n")
    assert index.distance_m(j, 89.0, 0.0) == pytest.approx(
        WGS84.inv(0, 89.0, 0, 89.99)[2] - 5_000.0, abs=1e-6)


def test_disabled_and_expired_fences_never_match():
    now = datetime(2026, 11, 23, tzinfo=UTC)
    fences = [_circle("a", 0, 0, 100, enabled=False),
              _circle("b", 0, 0, 100, expires_at=datetime(2026, 11, 1, tzinfo=UTC)),
              _circle("c", 0, 0, 100, expires_at=datetime(2027, 1, 1, tzinfo=UTC))]
    index = FenceIndex(fences)
    assert [i for i, _ in index.containing(0, 0, at=now)] == [2]
    pts, fs = index.containing_bulk([0.0], [0.0], at=now)
    assert fs.tolist() == [2]


# --- the grids that answer one-point queries (a ping) without a tree call ---------------------

CITIES = [(-16.5, 179.99), (70.0, 25.0), (37.77, -122.42), (-33.9, 18.4)]  # Fiji spans ±180
near_city = st.tuples(st.sampled_from(CITIES), st.floats(-0.06, 0.06), st.floats(-0.06, 0.06)).map(
    lambda t: (t[0][0] + t[1], _wrap(t[0][1] + t[2])))


@pytest.fixture(scope="module")
def dense():
    """Stores and geofences packed in cities, one across the antimeridian, one at lat 70."""
    rng = np.random.default_rng(5)
    lats, lons, fences = [], [], []
    for clat, clon in CITIES:
        la = clat + rng.normal(0, 0.02, 300)
        lo = (clon + rng.normal(0, 0.02, 300) + 180) % 360 - 180
        lats += la.tolist()
        lons += lo.tolist()
    for i, (la, lo) in enumerate(zip(lats, lons, strict=True)):
        if i % 5:
            fences.append(_circle(f"c{i:04d}", la, lo, float(rng.uniform(50, 400))))
        else:
            fences.append(_square(f"p{i:04d}", lo, la, float(rng.uniform(0.0005, 0.003))))
    fences.sort(key=lambda f: f.id)
    tree = FenceIndex(fences)
    tree._grid.usable = False  # the R-tree path, proven against brute force above
    return np.array(lats), np.array(lons), StoreIndex(lats, lons), fences, FenceIndex(fences), tree


def _assert_nearest_one(indexes, lat, lon, slats, slons):
    """Each index's nearest_one is the brute-force nearest store (ties by position)."""
    want_i, want_d = brute_nearest(lat, lon, slats, slons, k=1)
    for index in indexes:
        pos, d = index.nearest_one(lat, lon)
        assert pos == want_i[0] and d == pytest.approx(want_d[0], abs=1e-6)


@pytest.fixture(scope="module")
def dense_listed(dense):
    """The same stores, with the candidate lists a server builds (prepare_point_queries)."""
    index = StoreIndex(dense[0], dense[1])
    index.prepare_point_queries()
    return index


@pytest.fixture(scope="module")
def world_listed(world):
    index = StoreIndex(world[0], world[1])
    index.prepare_point_queries()
    return index


@settings(max_examples=300, deadline=None)
@given(near_city)
def test_nearest_one_equals_brute_force_in_dense_cities(dense, dense_listed, point):
    slats, slons, index, *_ = dense
    _assert_nearest_one([index, dense_listed], *point, slats, slons)


def test_the_candidate_lists_answer_city_pings_as_brute_force_does(dense, dense_listed):
    slats, slons, *_ = dense
    grid = dense_listed._grid
    rng = np.random.default_rng(10)
    listed = 0
    for clat, clon in CITIES:
        for la, lo in zip(clat + rng.uniform(-0.05, 0.05, 60), clon + rng.uniform(-0.05, 0.05, 60),
                          strict=True):
            lo = _wrap(lo)
            row, col = math.floor((la + 90) / grid.cell), math.floor((lo + 180) / grid.cell)
            listed += row * grid.ncol + col % grid.ncol in grid._near
            got = grid.nearest(la, lo)
            want_i, want_d = brute_nearest(la, lo, slats, slons, k=1)
            if got is not None:
                assert got[0] == want_i[0] and got[1] == pytest.approx(want_d[0], abs=1e-6)
    assert listed >= 120  # of 240: most city pings fall in a listed cell (160 when written)


def test_the_store_grid_answers_most_pings_in_a_city(dense):
    slats, slons, index, *_ = dense
    rng = np.random.default_rng(9)
    answered = 0
    for clat, clon in CITIES:
        for la, lo in zip(clat + rng.uniform(-0.03, 0.03, 50), clon + rng.uniform(-0.03, 0.03, 50),
                          strict=True):
            lo = _wrap(lo)
            got = index._grid.nearest(la, lo)
            if got is not None:
                answered += 1
                want_i, want_d = brute_nearest(la, lo, slats, slons, k=1)
                assert got[0] == want_i[0] and got[1] == pytest.approx(want_d[0], abs=1e-6)
    assert answered >= 180  # of 200; the rest went to the tree


@settings(max_examples=300, deadline=None)
@given(lats, lons)
def test_nearest_one_equals_brute_force_anywhere(world, world_listed, lat, lon):
    slats, slons, index = world
    _assert_nearest_one([index, world_listed], lat, lon, slats, slons)


@settings(max_examples=300, deadline=None)
@given(near_city, st.floats(0, 400))
def test_containing_from_the_grid_equals_the_tree_and_brute_force(dense, point, acc):
    *_, fences, index, tree = dense
    lat, lon = point
    got = index.containing(lat, lon, acc)
    inside = [i for i, conf in got if conf is not Confidence.LOW]
    assert inside == _brute_contains(fences, lat, lon)
    assert index._grid.query([(lon, lat, lon, lat)]) is not None  # the grid answered
    assert got == tree.containing(lat, lon, acc)


def test_containing_bulk_from_the_grid_equals_brute_force(dense):
    *_, fences, index, _ = dense
    rng = np.random.default_rng(8)
    city = rng.integers(0, len(CITIES), 1000)
    qlats = np.array([CITIES[c][0] for c in city]) + rng.uniform(-0.05, 0.05, 1000)
    qlons = (np.array([CITIES[c][1] for c in city]) + rng.uniform(-0.05, 0.05, 1000) + 180) % 360 - 180
    assert index._grid.query_points(qlats, qlons) is not None  # the grid, not the R-tree
    pts, got = index.containing_bulk(qlats, qlons)
    want = [(k, i) for k, (la, lo) in enumerate(zip(qlats, qlons, strict=True))
            for i in _brute_contains(fences, la, lo)]
    assert list(zip(pts.tolist(), got.tolist(), strict=True)) == want
    assert len(want) > 150  # plenty of points inside something


@settings(max_examples=40, deadline=None)
@given(st.floats(0, 20_000), st.integers(0, 2**32 - 1))
def test_counts_within_a_radius_in_dense_cities_equal_brute_force(dense, radius, seed):
    """CapGrid counts whole cells inside the radius; checked both ways round (per query and,
    with the roles swapped, per store) against a geodesic scan, at lat 70 and by ±180 too."""
    slats, slons, index, *_ = dense
    rng = np.random.default_rng(seed)
    city = rng.integers(0, len(CITIES), 60)
    qlats = np.array([CITIES[c][0] for c in city]) + rng.normal(0, 0.03, 60)
    qlons = (np.array([CITIES[c][1] for c in city]) + rng.normal(0, 0.03, 60) + 180) % 360 - 180
    per_store = np.zeros(len(slats), dtype=np.int64)
    got = index.count_within_bulk(qlats, qlons, radius)  # few points: they query the stores
    both = index.count_within_bulk(qlats, qlons, radius, per_store)  # the stores query them
    d = np.array([WGS84.inv(np.full(len(slats), lo), np.full(len(slats), la), slons, slats)[2]
                  for la, lo in zip(qlats, qlons, strict=True)])  # (queries, stores)
    assert got.tolist() == both.tolist() == (d <= radius).sum(axis=1).tolist()
    assert per_store.tolist() == (d <= radius).sum(axis=0).tolist()


def test_the_count_grid_answers_all_but_the_hard_places(dense):
    from geo_engine.spatial.counting import CapGrid

    slats, slons, *_ = dense
    grid = CapGrid(slats, slons, 5000.0)
    _, handled = grid.count(np.array([37.77, 70.0, -16.5, -16.5, 84.99, -33.9]),
                            np.array([-122.42, 25.0, 179.99, 179.0, 0.0, 18.4]))
    # by ±180 (5 km reaches across) and near a pole the caller's k-d tree answers
    assert handled.tolist() == [True, True, False, True, False, True]


@settings(max_examples=4, deadline=None)
@given(st.floats(0, 20_000), st.integers(0, 2**32 - 1))
def test_counts_with_more_points_than_stores_equal_brute_force(dense, radius, seed):
    """The stores query a grid of the points and one pass gives both counts (the batch
    scoring case: a chunk of customers over the stores); stores by ±180 use the k-d tree."""
    slats, slons, index, *_ = dense
    rng = np.random.default_rng(seed)
    n = 2 * len(slats)
    city = rng.integers(0, len(CITIES), n)
    qlats = np.array([CITIES[c][0] for c in city]) + rng.normal(0, 0.03, n)
    qlons = (np.array([CITIES[c][1] for c in city]) + rng.normal(0, 0.03, n) + 180) % 360 - 180
    per_store = np.zeros(len(slats), dtype=np.int64)
    got = index.count_within_bulk(qlats, qlons, radius, per_store)
    d = np.array([WGS84.inv(np.full(n, lo), np.full(n, la), qlons, qlats)[2]
                  for la, lo in zip(slats, slons, strict=True)])  # (stores, points)
    assert got.tolist() == (d <= radius).sum(axis=0).tolist()
    assert per_store.tolist() == (d <= radius).sum(axis=1).tolist()


def test_a_serving_grid_of_stores_near_a_pole_leaves_them_to_the_tree():
    rng = np.random.default_rng(3)
    slats, slons = 89.9 + rng.random(2000) * 0.05, rng.random(2000) * 0.05
    index = StoreIndex(slats, slons)
    index.prepare_point_queries()  # no cell is listed there; building must not fail
    for la, lo in [(89.92, 0.01), (89.99, 120.0), (88.0, -45.0)]:
        _assert_nearest_one([index], la, lo, slats, slons)
