"""The geofence index against brute force: containment, confidence, distance to a boundary."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo_engine import Confidence, FenceIndex
from geo_engine.io.shapes import geofence_from_geometry

from .conftest import WGS84
from .spatial_worlds import (
    CITIES,
    brute_contains,
    circle,
    lats,
    lons,
    near_city,
    square,
)


@pytest.fixture(scope="module")
def fence_world():
    rng = np.random.default_rng(11)
    fences = []
    for i in range(300):
        lat = float(np.degrees(np.arcsin(rng.uniform(-0.99, 0.99))))
        lon = float(rng.uniform(-180, 180))
        if i % 2:
            fences.append(circle(f"c{i:04d}", lat, lon, float(rng.uniform(1, 50_000))))
        else:
            fences.append(square(f"p{i:04d}", lon, lat, float(rng.uniform(0.001, 0.5))))
    # the hard places: a circle over each pole, fences across the antimeridian, lat 70
    fences += [
        circle("pole-n", 89.99, 0.0, 5_000.0),
        circle("pole-s", -89.995, 45.0, 2_000.0),
        circle("dateline-circle", 0.0, 179.999, 800.0),
        square("dateline-square", 180.0, -10.0, 0.2),  # runs 179.8 .. 180.2 = -179.8
        square("lat70", 25.0, 70.0, 0.3),
    ]
    fences.sort(key=lambda f: f.id)
    return fences, FenceIndex(fences)


@settings(max_examples=300, deadline=None)
@given(lats, lons)
def test_contains_equals_brute_force(fence_world, lat, lon):
    fences, index = fence_world
    got = [i for i, _ in index.containing(lat, lon)]
    assert got == brute_contains(fences, lat, lon)


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
    assert [i for i, _ in index.containing(lat, lon)] == brute_contains(fences, lat, lon)


def test_containing_bulk_equals_single(fence_world):
    fences, index = fence_world
    rng = np.random.default_rng(2)
    qlats = np.concatenate([rng.uniform(-90, 90, 2000),
                            [f.lat for f in fences if f.is_circle]])
    qlons = np.concatenate([rng.uniform(-180, 180, 2000),
                            [f.lon for f in fences if f.is_circle]])
    pts, fs = index.containing_bulk(qlats, qlons)
    got = sorted(zip(pts.tolist(), fs.tolist(), strict=True))
    want = sorted((r, i) for r in range(len(qlats)) for i in brute_contains(fences, qlats[r], qlons[r]))
    assert got == want
    assert len(want) > 150  # the check is not vacuous


def test_confidence_for_acircle():
    index = FenceIndex([circle("c", 45.0, 7.0, 100.0)])
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
    fences = [circle("a", 0, 0, 100, enabled=False),
              circle("b", 0, 0, 100, expires_at=datetime(2026, 11, 1, tzinfo=UTC)),
              circle("c", 0, 0, 100, expires_at=datetime(2027, 1, 1, tzinfo=UTC))]
    index = FenceIndex(fences)
    assert [i for i, _ in index.containing(0, 0, at=now)] == [2]
    pts, fs = index.containing_bulk([0.0], [0.0], at=now)
    assert fs.tolist() == [2]


@settings(max_examples=300, deadline=None)
@given(near_city, st.floats(0, 400))
def test_containing_from_the_grid_equals_the_tree_and_brute_force(dense, point, acc):
    *_, fences, index, tree = dense
    lat, lon = point
    got = index.containing(lat, lon, acc)
    inside = [i for i, conf in got if conf is not Confidence.LOW]
    assert inside == brute_contains(fences, lat, lon)
    assert index.box_grid.query([(lon, lat, lon, lat)]) is not None  # the grid answered
    assert got == tree.containing(lat, lon, acc)


def test_containing_bulk_from_the_grid_equals_brute_force(dense):
    *_, fences, index, _ = dense
    rng = np.random.default_rng(8)
    city = rng.integers(0, len(CITIES), 1000)
    qlats = np.array([CITIES[c][0] for c in city]) + rng.uniform(-0.05, 0.05, 1000)
    qlons = (np.array([CITIES[c][1] for c in city]) + rng.uniform(-0.05, 0.05, 1000) + 180) % 360 - 180
    assert index.box_grid.query_points(qlats, qlons) is not None  # the grid, not the R-tree
    pts, got = index.containing_bulk(qlats, qlons)
    want = [(k, i) for k, (la, lo) in enumerate(zip(qlats, qlons, strict=True))
            for i in brute_contains(fences, la, lo)]
    assert list(zip(pts.tolist(), got.tolist(), strict=True)) == want
    assert len(want) > 150  # plenty of points inside something
