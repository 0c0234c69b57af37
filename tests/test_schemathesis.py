"""Schemathesis over the OpenAPI document, with each key: whatever it sends, the API never
answers 5xx, and every answer is one the document declares, in the shape it declares
(``call_and_validate``: every check schemathesis has)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from api.app import create_app
from geo_engine import Engine, Settings
from geo_engine.apikeys import ensure_keys

from .conftest import DEMO

_dir = Path(tempfile.mkdtemp(prefix="geo-schemathesis-"))
# the limits that count per client address or device are off: the fuzzer is one address sending
# thousands of requests, and a 429 would stand in for the answer it is checking
_engine = Engine(Settings(db=str(_dir / "fuzz.db"), admin_key="fuzz-admin", publishable_key="fuzz-pub",
                          failed_key_checks_per_min=0, device_pings_per_s=0, registrations_per_min=0))
_engine.import_files([DEMO])
ensure_keys(_engine.db.apikeys, _engine.settings)
for _c in json.loads((DEMO.parent / "demo_campaigns.json").read_text()):
    _engine.put_campaign(_c["id"], _c)
# Every check schemathesis has, as configured here. One exception, said where it applies: a body
# that fits its JSON Schema may still break a rule no JSON Schema can state (an import's polygon
# that crosses itself or a store id no feature defines, a dwell campaign without dwell_s, a
# webhook URL whose host or port is no host or port, a replay whose end comes before its start),
# so the import, campaign and webhook routes may answer such a body with the one error shape's
# 422, by field.
# The live event stream is left out: it never ends (tests/test_console.py reads it over HTTP).
_OPERATIONS = """
[[project.operations]]
include-path-regex = "^/v1/(geofences/import|campaigns/|webhooks/)"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[[project.operations]]
include-path = "/v1/events/stream"
enabled = false
"""


def _schema(key: str):
    """The document as schemathesis loads it, sending ``key`` through the HTTP bearer scheme
    the document declares (so its tests without a key are sent without one)."""
    config = schemathesis.config.SchemathesisConfig.from_str(f"""
[[project]]
title = "geo-engine"
[project.auth.openapi.HTTPBearer]
bearer = "{key}"
{_OPERATIONS}""")
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(_engine), config=config)


admin, publishable = _schema("fuzz-admin"), _schema("fuzz-pub")
_seen: dict[str, set[tuple[str, int]]] = {"admin": set(), "publishable": set()}


@admin.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_with_the_admin_key_every_answer_is_declared_and_none_is_a_5xx(case):
    response = case.call_and_validate()
    _seen["admin"].add((case.operation.label, response.status_code))


@publishable.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_with_the_publishable_key_every_answer_is_declared_and_none_is_a_5xx(case):
    response = case.call_and_validate()
    _seen["publishable"].add((case.operation.label, response.status_code))


def test_the_fuzzer_got_past_the_keys():
    """Each key's run reached the routes it may use (answers other than 401), and the
    publishable key was turned away from the admin's (403)."""
    ok = {kind: {label for label, status in seen if status < 300} for kind, seen in _seen.items()}
    assert {"GET /v1/campaigns", "POST /v1/geofences/import", "GET /v1/export"} <= ok["admin"]
    assert {"GET /v1/stores/nearest", "GET /v1/locate"} <= ok["publishable"]
    assert ("GET /v1/campaigns", 403) in _seen["publishable"]
