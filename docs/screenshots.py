"""The README's pictures of the console: ``python docs/screenshots.py`` serves the demo with its
simulated week on a free port, opens /console in Debian's chromium, and saves the map and the
results pages, and a store's pickup board with a few trips, as PNG files beside this script."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
KEY = "screenshot-admin"


def trips(url: str) -> None:
    """Four customers of the Ferry Building: one handed over, one waiting three minutes, one
    driving in, one walking from across town."""
    from datetime import UTC, datetime, timedelta

    admin = {"Authorization": f"Bearer {KEY}"}
    now = datetime.now(UTC)
    plan = [("order-1040", "Dan", "car", (37.7955, -122.3937), 9, True),
            ("order-1042", "Ada", "car", (37.7955, -122.3937), 3, False),
            ("order-1043", "Ben", "car", (37.7900, -122.3905), 0, False),
            ("order-1044", "Chloe", "foot", (37.7800, -122.4100), 0, False)]
    for trip_id, name, mode, (lat, lon), minutes_ago, done in plan:
        device = f"phone-{name.lower()}"
        httpx.post(f"{url}/v1/trips", headers=admin, json={
            "trip_id": trip_id, "device_id": device, "store_id": "fc-ferry", "mode": mode,
            "metadata": {"name": name, "order": trip_id.split("-")[1]}}).raise_for_status()
        at = now - timedelta(minutes=minutes_ago)
        httpx.post(f"{url}/v1/pings", headers=admin, json={
            "device_id": device, "lat": lat, "lon": lon, "accuracy_m": 10,
            "timestamp": at.isoformat()}).raise_for_status()
        if done:
            httpx.patch(f"{url}/v1/trips/{trip_id}", headers=admin,
                        json={"status": "completed"}).raise_for_status()


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_ENGINE_")}
    env |= {"GEO_ENGINE_ADMIN_KEY": KEY, "GEO_ENGINE_PUBLISHABLE_KEY": "screenshot-pub",
            "GEO_ENGINE_TRUST_CLIENT_CLOCK": "true"}  # (the trips' pings below are back-dated)
    proc = subprocess.Popen([sys.executable, "-m", "geo_engine", "serve", "--demo", "--seed-week",
                             "--db", str(tmp / "demo.db"), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader",
                                              "--enable-unsafe-swiftshader"])
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(f"{url}/console")
            page.fill("#key", KEY)
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("body[data-ready=true]")
            page.wait_for_function("consoleState.map.loaded() && consoleState.map.areTilesLoaded()")
            page.screenshot(path=HERE / "console-map.png")
            page.goto(f"{url}/console#results")
            page.select_option("#results-campaign", "latte-trial")
            page.click("#results-form button[type=submit]")
            page.wait_for_selector("svg.interval-chart")
            page.screenshot(path=HERE / "console-results.png", full_page=True)
            trips(url)
            page.goto(f"{url}/console/stores/fc-ferry")
            page.wait_for_selector("body[data-ready=true]")
            page.screenshot(path=HERE / "console-board.png", full_page=True)
            browser.close()
    finally:
        proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
