"""The README's tour, run as a user would: every command's output equals what the README shows.

Each ``$ geo-engine ...`` line of the tour runs as a subprocess in a fresh folder holding the
demo data; each ``$ curl ...`` line is sent to a real ``geo-engine serve --demo`` on a free
loopback port. The text printed must be the README's, byte for byte, except the one line that
reports how long scoring took.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil

import httpx
import pytest

from .conftest import ROOT
from .test_cli import run
from .test_serve import free_port, start

README = (ROOT / "README.md").read_text()
_START = README.index("## A five-minute tour")
TOUR = README[_START:README.index("\n## ", _START + 5)]


def _steps(kind: str) -> list[tuple[str, str]]:
    """(command, expected output) for every ``$ {kind} ...`` line in the tour's code blocks."""
    steps = []
    for block in re.findall(r"```\n(.*?)```", TOUR, flags=re.S):
        lines = block.splitlines()
        k = 0
        while k < len(lines):
            if not lines[k].startswith("$ "):
                k += 1
                continue
            command = lines[k][2:]
            while command.endswith("\\"):
                k += 1
                command = command[:-1] + " " + lines[k].strip()
            k += 1
            out = []
            while k < len(lines) and lines[k] and not lines[k].startswith("$ "):
                out.append(lines[k])
                k += 1
            command = command.split("  #")[0].strip()  # the README's comments are not arguments
            if command.split()[0] == kind:
                steps.append((command, "\n".join(out)))
    return steps


CLI_STEPS = _steps("geo-engine")
CURL_STEPS = _steps("curl")


def test_the_tour_has_the_steps_this_test_runs():
    assert len(CLI_STEPS) >= 8 and len(CURL_STEPS) >= 4


@pytest.fixture(scope="module")
def tour_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tour")
    shutil.copytree(ROOT / "data", folder / "data")
    # the README's broken file: a Point geofence without radius_m, written [lat, lon]
    (folder / "oops.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [37.7955, -122.3937]},
         "properties": {"id": "g9", "store_id": "fc-ferry"}}]}))
    return folder


def test_every_cli_step_prints_what_the_readme_shows(tour_dir):
    for command, expected in CLI_STEPS:  # in order: import comes before the queries
        args = shlex.split(command)[1:]
        r = run(*args, cwd=tour_dir)
        printed = (r.stdout + r.stderr).rstrip("\n")
        if args[0] == "score":  # how long it took differs run to run; the rest may not
            took = r"scored 2,000 rows in [\d.]+ s \([\d,]+ rows/s\) into scored.parquet"
            lines, shown = printed.splitlines(), expected.splitlines()
            k = next(i for i, line in enumerate(lines) if line.startswith("scored "))
            assert re.fullmatch(took, lines[k]), printed
            assert shown[k].startswith("scored ")
            printed = "\n".join(lines[:k] + lines[k + 1:])
            expected = "\n".join(shown[:k] + shown[k + 1:])
        assert printed == expected, f"$ {command}"


def test_every_http_step_answers_what_the_readme_shows(tmp_path):
    port = free_port()
    proc = start(tmp_path / "tour.db", port, keys={"GEO_ENGINE_ADMIN_KEY": "adm-demo",
                                                   "GEO_ENGINE_PUBLISHABLE_KEY": "pub-demo"},
                 min_offer_interval_s=None,
                 # as the README starts it: a new database, so device tokens are on
                 env_extra={"GEO_ENGINE_REQUIRE_DEVICE_TOKEN": "auto"})
    token = None
    try:
        for command, expected in CURL_STEPS:
            args = shlex.split(command.replace("$TOKEN", token or "$TOKEN"))
            headers = dict(args[k + 1].split(": ", 1) for k, a in enumerate(args) if a == "-H")
            path = next(a for a in args if a.startswith("localhost:8000"))[len("localhost:8000"):]
            body = args[args.index("--json") + 1]
            answer = httpx.post(f"http://127.0.0.1:{port}{path}", content=body.encode(),
                                headers={**headers, "Content-Type": "application/json",
                                         "Accept": "application/json"})
            if path == "/v1/devices":  # the token is new each time: its shape, then it is used
                token = answer.json()["device_token"]
                shown = re.sub(r'"dt_[\w-]{32}"', '"TOKEN"', expected)
                assert re.sub(r'"dt_[\w-]{32}"', '"TOKEN"', answer.text) == shown, f"$ {command}"
                assert "TOKEN" in shown
                continue
            assert answer.text == expected, f"$ {command}"
        assert token is not None
    finally:
        proc.kill()
        proc.wait()
