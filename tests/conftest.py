"""Shared fixtures: the demo chain, fresh databases, and a worldwide store set for brute force."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from pyproj import Geod

from geo_engine import Database, Engine, Settings

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "data" / "demo_stores.geojson"
WGS84 = Geod(ellps="WGS84")  # the reference every answer is checked against


def loopback_http(answer: Callable[[BaseHTTPRequestHandler], tuple[str, bytes]]) -> ThreadingHTTPServer:
    """An HTTP server on a free loopback port, serving in a thread; ``answer(request)`` gives
    each GET's content type and body. ``shutdown()`` it when done."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            kind, body = answer(self)
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def brute_nearest(lat, lon, lats, lons, k=None, radius_m=None):
    """Every store ranked by a plain geodesic scan: (positions, metres), ties by position."""
    n = len(lats)
    d = np.asarray(WGS84.inv(np.full(n, lon), np.full(n, lat), lons, lats)[2], dtype=float)
    order = np.lexsort((np.arange(n), d))
    if radius_m is not None:
        order = order[d[order] <= radius_m]
    if k is not None:
        order = order[:k]
    return order, d[order]


def worldwide_stores(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Stores all over the globe, with clusters where geography is hardest."""
    rng = np.random.default_rng(seed)
    parts = [
        # uniform on the sphere
        (np.degrees(np.arcsin(rng.uniform(-1, 1, 1500))), rng.uniform(-180, 180, 1500)),
        # the antimeridian
        (rng.uniform(-5, 5, 200), np.where(rng.random(200) < 0.5, 1, -1) * rng.uniform(179.9, 180, 200)),
        # both poles
        (rng.uniform(89.9, 90, 100), rng.uniform(-180, 180, 100)),
        (rng.uniform(-90, -89.9, 100), rng.uniform(-180, 180, 100)),
        # lat 60-75: a degree of longitude is half a degree of latitude or less
        (rng.uniform(60, 75, 300), rng.uniform(20, 30, 300)),
        # exact duplicates: ties that only the id can break
        (np.full(5, 48.8566), np.full(5, 2.3522)),
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.fixture(scope="session")
def world():
    from geo_engine import StoreIndex

    lats, lons = worldwide_stores()
    return lats, lons, StoreIndex(lats, lons)


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL server for the whole run (tests/pgcluster.py)."""
    from .pgcluster import Cluster

    with Cluster() as cluster:
        yield cluster


_databases = itertools.count()


@pytest.fixture(autouse=True)
def _close_postgres_pools():
    """Close the PostgreSQL pools a test left open (engines are seldom closed in tests): the
    run's server has a limited number of connections."""
    yield
    import sys

    postgres = sys.modules.get("geo_engine.db.postgres")
    if postgres is not None:
        for db in list(postgres.PostgreSQL.opened):
            db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    """A new, empty database on each backend in turn: a SQLite file's path, or a PostgreSQL
    database's URL on the run's server. ``Settings(db=database)`` opens either."""
    if request.param == "sqlite":
        return str(tmp_path / "geo.db")
    return request.getfixturevalue("pg_cluster").new_database(f"t{next(_databases)}")


@pytest.fixture
def fresh_db():
    db = Database(":memory:")
    yield db
    db.close()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "geo.db"


@pytest.fixture
def demo_engine(tmp_path):
    engine = Engine(Settings(db=str(tmp_path / "demo.db")))
    engine.import_files([DEMO])
    return engine


@pytest.fixture(scope="module")
def dense():
    """Stores and geofences packed in cities (``spatial_worlds.city_stores_and_fences``), with
    a store index, a fence index, and a fence index forced onto its R-tree."""
    from geo_engine import FenceIndex, StoreIndex

    from .spatial_worlds import city_stores_and_fences

    lats, lons, fences = city_stores_and_fences()
    tree = FenceIndex(fences)
    tree.box_grid.usable = False  # the R-tree path, proven against brute force
    return lats, lons, StoreIndex(lats, lons), fences, FenceIndex(fences), tree


@pytest.fixture(scope="module")
def dense_listed(dense):
    """The same stores, with the candidate lists a server builds (prepare_point_queries)."""
    from geo_engine import StoreIndex

    index = StoreIndex(dense[0], dense[1])
    index.prepare_point_queries()
    return index


@pytest.fixture(scope="module")
def world_listed(world):
    from geo_engine import StoreIndex

    index = StoreIndex(world[0], world[1])
    index.prepare_point_queries()
    return index
