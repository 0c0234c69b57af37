"""Schemathesis over the OpenAPI document: whatever it sends, the API never answers 5xx."""

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
_engine = Engine(Settings(db=str(_dir / "fuzz.db"), admin_key="fuzz-admin", publishable_key="fuzz-pub"))
_engine.import_files([DEMO])
ensure_keys(_engine.db.apikeys, _engine.settings)
for _c in json.loads((DEMO.parent / "demo_campaigns.json").read_text()):
    _engine.put_campaign(_c["id"], _c)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_engine))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call(headers={"Authorization": "Bearer fuzz-admin"})
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
