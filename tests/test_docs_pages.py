"""``/docs`` and ``/redoc`` work with no network: Debian's chromium, headless, with every host
but 127.0.0.1 unresolvable, renders both from a real ``geo-engine serve``."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .test_serve import free_port, start

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    port = free_port()
    proc = start(tmp / "docs.db", port)
    yield port, tmp
    proc.kill()
    proc.wait()


def rendered(port: int, tmp, page: str) -> str:
    """The page's DOM once its scripts have run, with no network but the loopback."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update",
                        f"--user-data-dir={tmp / page}",
                        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                        "--virtual-time-budget=15000", "--dump-dom", f"http://127.0.0.1:{port}/{page}"],
                       capture_output=True, text=True, timeout=120, check=True)
    return r.stdout


def test_swagger_ui_renders_every_route_and_an_authorize_button(server):
    port, tmp = server
    dom = rendered(port, tmp, "docs")
    assert 'class="swagger-ui' in dom and "opblock" in dom  # the operations were drawn
    for path in ("/v1/pings", "/v1/devices", "/v1/export", "/v1/geofences/import"):
        assert path in dom
    assert "authorize" in dom.lower()  # the bearer scheme's button


def test_redoc_renders_the_document(server):
    port, tmp = server
    dom = rendered(port, tmp, "redoc")
    # the routes, a declared header of a 429 and a field of a response body were drawn
    assert "/v1/pings" in dom and "Retry-After" in dom and "device_token" in dom
