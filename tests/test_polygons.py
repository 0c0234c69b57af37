"""Polygons: the antimeridian split, validity in words, distance to a boundary, containment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo_engine import InvalidGeometry
from geo_engine.polygons import boundary_distance_m, polygon_parts

from .conftest import WGS84


def _ring(*pts):
    return np.array([*pts, pts[0]], dtype=float)


def test_polygon_across_antimeridian_is_split_and_keeps_its_real_edges():
    ring = _ring((179.5, -1), (-179.5, -1), (-179.5, 1), (179.5, 1))
    parts, edges = polygon_parts([ring])
    assert len(parts) == 2
    assert {round(p.bounds[0], 6) for p in parts} == {179.5, -180.0}
    assert sum(p.area for p in parts) == pytest.approx(2.0)
    # the cut along ±180 is not a boundary: on the equator at 180, the nearest edges are the
    # east and west ones half a degree of longitude away (nearer than a degree of latitude)
    d = boundary_distance_m(0.0, 180.0, edges)
    assert d == pytest.approx(WGS84.inv(180, 0, 179.5, 0)[2], rel=1e-4)


def test_polygon_wider_than_180_degrees_is_refused():
    # no edge jumps more than 180 degrees, so this is not an antimeridian crossing: it is wide
    wide = _ring((-100, 0), (0, 0), (100, 0), (100, 10), (0, 10), (-100, 10))
    with pytest.raises(InvalidGeometry, match="spans 200.0 degrees of longitude"):
        polygon_parts([wide])


def test_an_edge_jumping_more_than_180_degrees_crosses_the_antimeridian():
    # SPEC 2: the -100 -> 100 edge is taken the short way, across ±180: 160 degrees wide
    parts, _ = polygon_parts([_ring((-100, 0), (100, 0), (100, 10), (-100, 10))])
    assert sum(p.area for p in parts) == pytest.approx(160 * 10)
    assert not any(shapely.intersects_xy(p, 0.0, 5.0) for p in parts)
    assert any(shapely.intersects_xy(p, 179.0, 5.0) for p in parts)


def test_self_intersection_says_where():
    bowtie = _ring((0, 0), (1, 1), (1, 0), (0, 1))
    with pytest.raises(InvalidGeometry, match=r"crosses itself near lon 0.500000, lat 0.500000"):
        polygon_parts([bowtie])


def _dense_boundary_distance(lat, lon, edges, per_edge=4000):
    t = np.linspace(0, 1, per_edge)
    out = math.inf
    for lon0, lat0, lon1, lat1 in edges:
        ln, lt = lon0 + (lon1 - lon0) * t, lat0 + (lat1 - lat0) * t
        out = min(out, float(np.min(WGS84.inv(np.full_like(ln, lon), np.full_like(lt, lat), ln, lt)[2])))
    return out


@pytest.mark.parametrize(("ring", "point"), [
    # a city block, point just outside
    (_ring((-122.42, 37.77), (-122.41, 37.77), (-122.41, 37.78), (-122.42, 37.78)), (37.775, -122.405)),
    # a long edge along lat 80: straight in lon/lat, strongly curved on the ellipsoid
    (_ring((0, 80), (60, 80), (60, 81), (0, 81)), (79.5, 30.0)),
    # near the south pole
    (_ring((10, -89.5), (100, -89.5), (100, -89), (10, -89)), (-89.9, 50.0)),
    # across the antimeridian
    (_ring((179.9, 10), (-179.9, 10), (-179.9, 10.1), (179.9, 10.1)), (10.05, -179.5)),
])
def test_boundary_distance_matches_dense_sampling(ring, point):
    _, edges = polygon_parts([ring])
    got = boundary_distance_m(*point, edges)
    want = _dense_boundary_distance(*point, edges)
    # within SPEC's 0.1 % or 0.5 m; the dense sampling itself is only an upper bound
    assert got <= want + 0.05
    assert got == pytest.approx(want, rel=1e-3, abs=0.5)


@settings(max_examples=60, deadline=None)
@given(st.floats(-60, 60), st.floats(-170, 170), st.floats(0.001, 0.05), st.floats(0, 360),
       st.floats(0, 3))
def test_boundary_distance_is_exact_for_a_square(lat, lon, half, az, k):
    ring = _ring((lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half),
                 (lon - half, lat + half))
    _, edges = polygon_parts([ring])
    plon, plat, _ = WGS84.fwd(lon, lat, az, k * half * 111_000)
    got = boundary_distance_m(plat, plon, edges)
    want = _dense_boundary_distance(plat, plon, edges, per_edge=3000)
    assert got <= want + 0.05  # the search's own tolerance
    assert got == pytest.approx(want, rel=1e-3, abs=0.5)
    # the threshold form answers on the right side of it
    assert (boundary_distance_m(plat, plon, edges, threshold_m=want * 0.9) > want * 0.9) is True


def test_polygon_contains_is_planar_lonlat_with_boundary_inside():
    parts, _ = polygon_parts([_ring((0, 0), (2, 0), (2, 2), (0, 2))])
    assert shapely.intersects_xy(parts[0], 2.0, 1.0)  # on the boundary: inside
    assert not shapely.intersects_xy(parts[0], 2.0000001, 1.0)
