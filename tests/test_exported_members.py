"""The public names: what `from geo_engine import *` gives is a promise; pin it."""

import geo_engine


def test_exported_members():
    assert sorted(geo_engine.__all__) == sorted([
        "SETTINGS", "Confidence", "Conflict", "Database", "Dataset", "Engine", "FenceHit",
        "FenceIndex", "GeoEngineError", "Geofence", "InvalidCampaign", "InvalidCoordinate",
        "InvalidGeometry", "InvalidInput", "Location", "NotFound", "Ping", "PingAnswer", "Problem", "Setting",
        "Settings", "StorageError", "Store", "StoreHit", "StoreIndex", "ValidationFailed",
        "__version__", "boundary_distance_m", "check_lat_lon", "distance_m", "distances_m",
        "load_files", "parse_csv", "parse_geojson", "score_frame",
    ])
    for name in geo_engine.__all__:
        assert getattr(geo_engine, name) is not None


def test_every_error_is_a_geo_engine_error():
    for name in geo_engine.__all__:
        obj = getattr(geo_engine, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, geo_engine.GeoEngineError), name
