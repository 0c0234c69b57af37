"""Counts within a geodesic radius by whole cells, against a geodesic scan both ways round."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import WGS84
from .spatial_worlds import (
    CITIES,
)


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


@settings(max_examples=30, deadline=None)
@given(st.floats(1, 20_000), st.integers(0, 2**32 - 1))
def test_the_count_grid_alone_counts_both_ways_as_a_geodesic_scan(dense, radius, seed):
    """CapGrid on its own: for every query it handles, the points within the radius; and per
    point, how many handled queries have it within the radius (boundary inclusive)."""
    from geo_engine.spatial.counting import CapGrid

    slats, slons, *_ = dense
    rng = np.random.default_rng(seed)
    city = rng.integers(0, len(CITIES), 40)
    qlats = np.array([CITIES[c][0] for c in city]) + rng.normal(0, 0.03, 40)
    qlons = (np.array([CITIES[c][1] for c in city]) + rng.normal(0, 0.03, 40) + 180) % 360 - 180
    counts, handled, per_point = CapGrid(slats, slons, radius).count(qlats, qlons, per_point=True)
    d = np.array([WGS84.inv(np.full(len(slats), lo), np.full(len(slats), la), slons, slats)[2]
                  for la, lo in zip(qlats, qlons, strict=True)])  # (queries, points)
    within = d <= radius
    assert handled.sum() >= 20  # by ±180 the caller answers; elsewhere the grid does
    assert counts[handled].tolist() == within[handled].sum(axis=1).tolist()
    assert (counts[~handled] == 0).all()
    assert per_point.tolist() == within[handled].sum(axis=0).tolist()


def test_a_dense_city_gets_finer_cells_and_the_same_exact_counts():
    """Where the points are dense, the grid's cells shrink (fewer points tested one by one at the
    edge of each disk); the counts, both ways, still equal a geodesic scan."""
    from geo_engine.spatial.counting import PER_RADIUS, CapGrid

    rng = np.random.default_rng(9)
    n = 20_000
    az, dist = rng.uniform(0, 360, n), 3000 * np.sqrt(rng.uniform(0, 1, n))
    lons, lats, _ = WGS84.fwd(np.full(n, 2.35), np.full(n, 48.85), az, dist)
    grid = CapGrid(lats, lons, 800.0)
    assert grid.per_radius > PER_RADIUS  # finer than the default
    q_lat, q_lon = lats[:300] + 1e-4, lons[:300]
    counts, handled, per_point = grid.count(q_lat, q_lon, per_point=True)
    assert handled.all()
    d = np.array([WGS84.inv(np.full(n, lo), np.full(n, la), lons, lats)[2]
                  for la, lo in zip(q_lat, q_lon, strict=True)])
    within = d <= 800.0
    assert (counts == within.sum(axis=1)).all()
    assert (per_point == within.sum(axis=0)).all()


@pytest.mark.parametrize("hard", [20, 60])
def test_stores_by_the_poles_and_the_antimeridian_count_both_ways_as_a_geodesic_scan(hard):
    """The stores the grid leaves (a pole or ±180 within reach) ask an index of the points in
    their reach (a few stores) or of all points (more than 64); the counts, per point and per
    store, equal a scan."""
    from geo_engine.spatial.stores import StoreIndex

    rng = np.random.default_rng(3)
    s_lat = np.r_[rng.uniform(-60, 60, 200), rng.uniform(86, 89.9, hard), rng.uniform(-10, 10, hard)]
    s_lon = np.r_[rng.uniform(-180, 180, 200), rng.uniform(-180, 180, hard),
                  rng.choice([-179.99, 179.99], hard)]
    k = rng.integers(0, len(s_lat), 3000)
    p_lon, p_lat, _ = WGS84.fwd(s_lon[k], s_lat[k], rng.uniform(0, 360, 3000), rng.uniform(0, 8000, 3000))
    per_store = np.zeros(len(s_lat), dtype=np.int64)
    counts = StoreIndex(s_lat, s_lon).count_within_bulk(p_lat, p_lon, 5000.0, per_store)
    d = np.array([WGS84.inv(np.full(len(s_lat), lo), np.full(len(s_lat), la), s_lon, s_lat)[2]
                  for la, lo in zip(p_lat, p_lon, strict=True)])
    within = d <= 5000.0
    assert (counts == within.sum(axis=1)).all() and (per_store == within.sum(axis=0)).all()
    assert per_store[200:].sum() > 0  # the hard places had points to count


def test_a_count_split_over_the_cores_equals_one_pass_and_a_geodesic_scan(monkeypatch):
    """Many queries over many points are split by queries across threads; the counts both
    ways equal one pass in this thread, and a geodesic scan for a sample of queries."""
    from geo_engine.spatial import counting

    rng = np.random.default_rng(4)
    n, nq = 30_000, 3_000
    lons, lats, _ = WGS84.fwd(np.full(n, -73.98), np.full(n, 40.75), rng.uniform(0, 360, n),
                              9000 * np.sqrt(rng.uniform(0, 1, n)))
    q_lons, q_lats, _ = WGS84.fwd(np.full(nq, -73.98), np.full(nq, 40.75), rng.uniform(0, 360, nq),
                                  9000 * np.sqrt(rng.uniform(0, 1, nq)))
    grid = counting.CapGrid(lats, lons, 1500.0)
    monkeypatch.setattr(counting.os, "cpu_count", lambda: 3)  # three parts, whatever this machine has
    calls = []
    one_part = grid._count
    monkeypatch.setattr(grid, "_count", lambda *a: calls.append(len(a[0])) or one_part(*a))
    counts, handled, per_point = grid.count(q_lats, q_lons, per_point=True)
    assert calls == [1000, 1000, 1000]
    serial = one_part(q_lats, q_lons, True)
    assert counts.tolist() == serial[0].tolist() and per_point.tolist() == serial[2].tolist()
    assert handled.all()
    for k in rng.choice(nq, 25, replace=False):
        d = WGS84.inv(np.full(n, q_lons[k]), np.full(n, q_lats[k]), lons, lats)[2]
        assert counts[k] == (d <= 1500.0).sum()
    for k in rng.choice(n, 10, replace=False):
        d = WGS84.inv(np.full(nq, lons[k]), np.full(nq, lats[k]), q_lons, q_lats)[2]
        assert per_point[k] == (d <= 1500.0).sum()
