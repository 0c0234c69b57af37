"""The geo-engine command end to end, as a subprocess: exit codes, output, and stderr sentences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geo_engine import Engine, Settings

from .conftest import DEMO

GEO_ENGINE = [sys.executable, "-m", "geo_engine"]


def run(*args, cwd=None, env=None):
    # the test's own settings only: nothing leaks in from the developer's GEO_ENGINE_* variables
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_ENGINE_")}
    full_env.update(env or {})
    return subprocess.run([*GEO_ENGINE, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=120)


@pytest.fixture
def loaded_db(tmp_path):
    db = tmp_path / "demo.db"
    r = run("import", DEMO, "--db", db)
    assert r.returncode == 0, r.stderr
    return db


def test_validate_a_clean_file():
    r = run("validate", DEMO)
    assert r.returncode == 0
    assert r.stdout.startswith("ok: 32 stores, 33 geofences in 1 file")


def test_validate_prints_every_problem_and_exits_1(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
         "properties": {"id": "g1", "store_id": "nowhere"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [37.7, -122.4]},
         "properties": {"id": "g2", "store_id": "nowhere", "radius_m": 50}}]}))
    assert run("keys", "--db", tmp_path / "empty.db").returncode == 0  # a database, no stores
    r = run("validate", bad, "--db", tmp_path / "empty.db")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0] == (f"error: {bad}, feature 0, id 'g1': a Point geofence needs radius_m, the "
                        "circle's radius in metres (1 to 50,000)")
    assert lines[1].startswith(f"error: {bad}, feature 1, id 'g2': Point, position 0: [37.7, -122.4]")
    assert "looks like [lat, lon]" in lines[1]
    assert lines[-1] == "2 problems found; nothing was changed"
    assert "Traceback" not in r.stderr


def test_import_then_nearest_json_matches_the_library(loaded_db):
    r = run("nearest", "--lat", 37.7793, "--lon", -122.4193, "-k", 3, "--db", loaded_db, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = [h.as_dict() for h in Engine(Settings(db=str(loaded_db))).nearest(37.7793, -122.4193, 3)]
    assert got == {"stores": want}
    assert [s["store_id"] for s in got["stores"]][0] == "fc-civic"
    assert got["stores"][0]["distance_m"] < got["stores"][1]["distance_m"]


def test_nearest_within_radius_and_text_table(loaded_db):
    r = run("nearest", "--lat", 37.7955, "--lon", -122.3937, "--radius-m", 1000, "--db", loaded_db)
    assert r.returncode == 0
    rows = r.stdout.strip().splitlines()
    assert rows[0].split()[1] == "fc-ferry"
    distances = [float(line.split()[2].replace(",", "")) for line in rows]
    assert distances == sorted(distances) and distances[-1] <= 1000


def test_locate_json_reports_confidence(loaded_db):
    r = run("locate", "--lat", 37.7955, "--lon", -122.3937, "--accuracy-m", 15, "--db", loaded_db,
            "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["geofences"] == [{"geofence_id": "fc-ferry-hall", "store_id": "fc-ferry",
                                 "confidence": "high"}]
    assert got["nearest_store"]["store_id"] == "fc-ferry"


def test_geo_engine_db_variable_chooses_the_database(loaded_db, tmp_path):
    r = run("nearest", "--lat", 37.78, "--lon", -122.41, cwd=tmp_path,
            env={"GEO_ENGINE_DB": str(loaded_db)})
    assert r.returncode == 0 and "fc-" in r.stdout


@pytest.mark.parametrize(("args", "sentence"), [
    (["nearest", "--lat", "91", "--lon", "0"], "error: lat 91.0 is outside [-90, 90]"),
    (["nearest", "--lat", "nan", "--lon", "0"], "error: lat and lon must be finite numbers"),
    (["nearest", "--lat", "1", "--lon", "0", "-k", "0"], "error: k must be at least 1, got 0"),
    (["locate", "--lat", "1", "--lon", "0", "--accuracy-m", "-5"],
     "error: accuracy_m must be a number of metres >= 0, got -5.0"),
    (["import", "missing.geojson"], "error: missing.geojson: cannot be read"),
])
def test_errors_are_one_sentence_on_stderr(tmp_path, args, sentence):
    r = run(*args, "--db", tmp_path / "x.db", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith(sentence), r.stderr
    assert "Traceback" not in r.stderr


def test_a_bad_flag_is_a_usage_error_not_a_traceback(tmp_path):
    r = run("nearest", "--lat", "north", "--lon", "0", cwd=tmp_path)
    assert r.returncode == 2
    assert "'north' is not a valid float" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_unreadable_database_is_one_sentence(tmp_path):
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("this is not a database\n" * 100)
    r = run("nearest", "--lat", "1", "--lon", "1", "--db", not_a_db)
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: cannot open the database {not_a_db}")
    assert Path(not_a_db).read_text().startswith("this is not")


def test_campaigns_go_in_come_out_and_go_away_without_curl(tmp_path, loaded_db):
    from .conftest import DEMO

    campaigns_file = DEMO.parent / "demo_campaigns.json"
    r = run("campaigns", "put", campaigns_file, "--db", loaded_db)
    assert r.returncode == 0, r.stderr
    given = json.loads(campaigns_file.read_text())
    assert r.stdout.startswith(f"put {len(given)} campaigns: ")
    listed = run("campaigns", "list", "--db", loaded_db).stdout.splitlines()
    assert [line.split()[0] for line in listed[1:]] == sorted(c["id"] for c in given)
    one = given[0]
    got = run("campaigns", "get", one["id"], "--db", loaded_db)
    assert json.loads(got.stdout) == one
    # a file with one bad campaign changes nothing, and says which and where
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**one, "id": "fine-one"}, {"id": "broken", "offer": {}}]))
    r = run("campaigns", "put", bad, "--db", loaded_db)
    assert r.returncode == 1 and "campaign 1" in r.stderr and "offer.title" in r.stderr
    assert "fine-one" not in run("campaigns", "list", "--db", loaded_db).stdout
    assert run("campaigns", "delete", one["id"], "--db", loaded_db).returncode == 0
    gone = run("campaigns", "get", one["id"], "--db", loaded_db)
    assert gone.returncode == 1 and gone.stderr == f"error: no campaign {one['id']!r}\n"


def test_stores_are_listed_a_page_at_a_time(loaded_db):
    first = run("stores", "list", "--limit", "20", "--db", loaded_db).stdout.splitlines()
    assert len(first) == 21 and first[-1].startswith("(more: --after ")
    after = first[-1].split("--after ")[1].rstrip(")")
    rest = run("stores", "list", "--limit", "20", "--after", after, "--db", loaded_db).stdout.splitlines()
    ids = [line.split()[0] for line in first[:-1] + rest]
    assert len(ids) == 32 and ids == sorted(ids) and not rest[-1].startswith("(more")
