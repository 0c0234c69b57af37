"""The store index against a brute-force geodesic scan: same ids, same order, ties by id."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo_engine import StoreIndex

from .conftest import brute_nearest
from .spatial_worlds import (
    NAMED,
    assert_nearest_one,
    assert_same,
    lats,
    lons,
    near_city,
    points,
)


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


@settings(max_examples=300, deadline=None)
@given(near_city)
def test_nearest_one_equals_brute_force_in_dense_cities(dense, dense_listed, point):
    slats, slons, index, *_ = dense
    assert_nearest_one([index, dense_listed], *point, slats, slons)


@settings(max_examples=300, deadline=None)
@given(lats, lons)
def test_nearest_one_equals_brute_force_anywhere(world, world_listed, lat, lon):
    slats, slons, index = world
    assert_nearest_one([index, world_listed], lat, lon, slats, slons)
