"""The cell grids a ping's one-point queries use, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from geo_engine import StoreIndex

from .conftest import brute_nearest
from .spatial_worlds import CITIES, around_cities, assert_nearest_one, city_stores_and_fences, near_city


def test_the_candidate_lists_answer_city_pings_as_brute_force_does(dense, dense_listed):
    slats, slons, *_ = dense
    grid = dense_listed.point_grid
    listed = 0
    for la, lo in around_cities(10, 0.05, 60):
        listed += grid.has_list(la, lo)
        got = grid.nearest(la, lo)
        want_i, want_d = brute_nearest(la, lo, slats, slons, k=1)
        if got is not None:
            assert got[0] == want_i[0] and got[1] == pytest.approx(want_d[0], abs=1e-6)
    assert listed >= 120  # of 240: most city pings fall in a listed cell (160 when written)


def test_the_store_grid_answers_most_pings_in_a_city(dense):
    slats, slons, index, *_ = dense
    answered = 0
    for la, lo in around_cities(9, 0.03, 50):
        got = index.point_grid.nearest(la, lo)
        if got is not None:
            answered += 1
            want_i, want_d = brute_nearest(la, lo, slats, slons, k=1)
            assert got[0] == want_i[0] and got[1] == pytest.approx(want_d[0], abs=1e-6)
    assert answered >= 180  # of 200; the rest went to the tree


def test_a_serving_grid_of_stores_near_a_pole_leaves_them_to_the_tree():
    rng = np.random.default_rng(3)
    slats, slons = 89.9 + rng.random(2000) * 0.05, rng.random(2000) * 0.05
    index = StoreIndex(slats, slons)
    index.prepare_point_queries()  # no cell is listed there; building must not fail
    for la, lo in [(89.92, 0.01), (89.99, 120.0), (88.0, -45.0)]:
        assert_nearest_one([index], la, lo, slats, slons)


def _boxes_holding(boxes, owners, lat, lon):
    """Owners of every box holding the point, edges inclusive: a plain scan."""
    inside = (boxes[:, 0] <= lon) & (lon <= boxes[:, 2]) & (boxes[:, 1] <= lat) & (lat <= boxes[:, 3])
    return sorted(set(owners[inside].tolist()))


@pytest.fixture(scope="module")
def city_boxes():
    """Boxes covering geodesic disks around city stores (cut in two at ±180, as the fence index
    and a nearby campaign's reach make them), each owned by its store."""
    from geo_engine.geodesy import lonlat_boxes
    from geo_engine.spatial.grids import BoxGrid

    lats, lons, _ = city_stores_and_fences()
    rng = np.random.default_rng(21)
    boxes, owners = [], []
    for k, (la, lo) in enumerate(zip(lats.tolist(), lons.tolist(), strict=True)):
        for b in lonlat_boxes(la, lo, float(rng.uniform(20, 2000))):
            boxes.append(b)
            owners.append(k)
    boxes, owners = np.array(boxes), np.array(owners, dtype=np.int64)
    return boxes, owners, BoxGrid(boxes, owners)


@settings(max_examples=300, deadline=None)
@given(near_city)
def test_the_box_grid_finds_every_box_holding_a_point(city_boxes, point):
    boxes, owners, grid = city_boxes
    lat, lon = point
    got = grid.query([(lon, lat, lon, lat)])
    assert got is not None  # city-sized boxes: the grid answers, no tree needed
    # it proposes: every box holding the point is among the owners found
    assert set(_boxes_holding(boxes, owners, lat, lon)) <= got


def test_the_box_grid_answers_arrays_of_points_exactly(city_boxes):
    boxes, owners, grid = city_boxes
    rng = np.random.default_rng(22)
    city = rng.integers(0, len(CITIES), 500)
    qlats = np.array([CITIES[c][0] for c in city]) + rng.uniform(-0.05, 0.05, 500)
    qlons = (np.array([CITIES[c][1] for c in city]) + rng.uniform(-0.05, 0.05, 500) + 180) % 360 - 180
    pts, got = grid.query_points(qlats, qlons)
    want = [(k, o) for k, (la, lo) in enumerate(zip(qlats, qlons, strict=True))
            for o in _boxes_holding(boxes, owners, la, lo)]
    assert sorted(zip(pts.tolist(), got.tolist(), strict=True)) == want
    assert len(want) > 500  # most points are in several boxes


def test_a_box_over_a_pole_is_proposed_to_every_query():
    from geo_engine.spatial.grids import BoxGrid

    wide = np.array([[-180.0, 89.0, 180.0, 90.0], [10.0, 10.0, 10.1, 10.1]])
    grid = BoxGrid(wide, np.array([0, 1]))
    # a box spanning every longitude is in no cell: every query gets it to test exactly
    assert grid.query([(10.05, 10.05, 10.05, 10.05)]) == {0, 1}
    assert grid.query([(-100.0, 89.5, -100.0, 89.5)]) == {0}
    # arrays of points: the wide box is tested against each of them, the others by cell
    pts, owners = grid.query_points(np.array([10.05, 89.5, 89.5, 0.0]), np.array([10.05, -100.0, 10.05, 0.0]))
    assert list(zip(pts.tolist(), owners.tolist(), strict=True)) == [(0, 1), (1, 0), (2, 0)]
    many = BoxGrid(np.tile(wide[:1], (BoxGrid.MAX_WIDE + 1, 1)), np.arange(BoxGrid.MAX_WIDE + 1))
    assert many.query([(0.0, 89.5, 0.0, 89.5)]) is None  # too many wide boxes: the tree
    assert many.query_points(np.array([89.5]), np.array([0.0])) is None


@settings(max_examples=300, deadline=None)
@given(near_city)
def test_the_point_grid_nearest_is_brute_force_or_declines(dense, point):
    from geo_engine.spatial.grids import PointGrid

    slats, slons, *_ = dense
    lat, lon = point
    for grid in (PointGrid(slats, slons), PointGrid(slats, slons, listed=True)):
        got = grid.nearest(lat, lon)
        if got is not None:  # declining is allowed (the tree answers); a wrong answer is not
            want_i, want_d = brute_nearest(lat, lon, slats, slons, k=1)
            assert got[0] == want_i[0] and got[1] == pytest.approx(want_d[0], abs=1e-6)
