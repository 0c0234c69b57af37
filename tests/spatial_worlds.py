"""Shared worlds for the spatial tests: stores and geofences where geography is hardest, and
the brute-force answers the indexes must equal."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import strategies as st

from geo_engine import Geofence
from geo_engine.io.shapes import geofence_from_geometry

from .conftest import WGS84, brute_nearest

lats = st.floats(-90, 90)
lons = st.floats(-180, 180)
points = st.tuples(lats, lons)

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

CITIES = [(-16.5, 179.99), (70.0, 25.0), (37.77, -122.42), (-33.9, 18.4)]  # Fiji spans ±180


def wrap(lon):
    return (lon + 180.0) % 360.0 - 180.0


def around_cities(seed: int, spread: float, n: int):
    """``n`` points uniformly within ``spread`` degrees of each of :data:`CITIES` (wrapped)."""
    rng = np.random.default_rng(seed)
    for clat, clon in CITIES:
        for la, lo in zip(clat + rng.uniform(-spread, spread, n), clon + rng.uniform(-spread, spread, n),
                          strict=True):
            yield float(la), wrap(float(lo))


near_city = st.tuples(st.sampled_from(CITIES), st.floats(-0.06, 0.06), st.floats(-0.06, 0.06)).map(
    lambda t: (t[0][0] + t[1], wrap(t[0][1] + t[2])))


def assert_same(got, want):
    """Same ids in the same order, and the same geodesic metres."""
    assert got[0].tolist() == want[0].tolist()
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-6)


def square(fid, lon, lat, half, **kw):
    """A square as GeoJSON writes it: longitudes wrapped into [-180, 180)."""
    ring = [[wrap(lon - half), lat - half], [wrap(lon + half), lat - half],
            [wrap(lon + half), lat + half], [wrap(lon - half), lat + half],
            [wrap(lon - half), lat - half]]
    return geofence_from_geometry({"type": "Polygon", "coordinates": [ring]}, id=fid,
                                  store_id="s", **kw)


def circle(fid, lat, lon, radius_m, **kw):
    return Geofence(id=fid, store_id="s", lat=lat, lon=lon, radius_m=radius_m, **kw)


def brute_contains(fences, lat, lon):
    out = []
    for i, f in enumerate(fences):
        if f.is_circle:
            inside = WGS84.inv(f.lon, f.lat, lon, lat)[2] <= f.radius_m
        else:
            inside = any(shapely.intersects_xy(p, lon, lat) for p in f.parts)
        if inside:
            out.append(i)
    return out


def assert_nearest_one(indexes, lat, lon, slats, slons):
    """Each index's nearest_one is the brute-force nearest store (ties by position)."""
    want_i, want_d = brute_nearest(lat, lon, slats, slons, k=1)
    for index in indexes:
        pos, d = index.nearest_one(lat, lon)
        assert pos == want_i[0] and d == pytest.approx(want_d[0], abs=1e-6)


def city_stores_and_fences():
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
            fences.append(circle(f"c{i:04d}", la, lo, float(rng.uniform(50, 400))))
        else:
            fences.append(square(f"p{i:04d}", lo, la, float(rng.uniform(0.0005, 0.003))))
    fences.sort(key=lambda f: f.id)
    return np.array(lats), np.array(lons), fences
