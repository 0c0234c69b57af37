"""The console (/console) in a real browser: Playwright driving Debian's chromium against
``geo-engine serve --demo`` on a loopback port. Nothing may leave 127.0.0.1."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from .test_serve import free_port, start

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KEY = "console-admin"
KEYS = {"GEO_ENGINE_ADMIN_KEY": KEY, "GEO_ENGINE_PUBLISHABLE_KEY": "console-pub"}
ADMIN = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """A served demo, a browser page signed in to its console, and every URL the page asked for."""
    tmp = tmp_path_factory.mktemp("console")
    port = free_port()
    proc = start(tmp / "console.db", port, keys=KEYS, args=("--seed-week",))
    url = f"http://127.0.0.1:{port}"
    asked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("request", lambda r: asked.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/console")
        page.fill("#key", KEY)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.wait_for_function("consoleState.map.loaded() && consoleState.map.areTilesLoaded()")
        yield page, url, asked, errors
        browser.close()
    proc.kill()
    proc.wait()


def _fence_ids(url: str) -> set[str]:
    return {f["properties"]["id"] for f in httpx.get(f"{url}/v1/geofences", headers=ADMIN).json()["features"]}


def test_the_console_shows_every_demo_geofence_and_asks_nothing_of_the_internet(console):
    page, url, asked, errors = console
    shown = set(page.evaluate(
        "() => [...new Set(consoleState.map.queryRenderedFeatures({layers: ['fences-fill']})"
        ".map((f) => f.properties.id))]"))
    assert shown == _fence_ids(url) and len(shown) == 33  # the demo chain's
    stores = page.evaluate("() => consoleState.map.queryRenderedFeatures({layers: ['stores']}).length")
    assert stores >= 30
    assert asked and all(u.startswith(f"{url}/") or u.startswith(("data:", "blob:")) for u in asked), \
        [u for u in asked if not u.startswith(url)]
    assert errors == []


def _draw(page, points):
    box = page.locator("#map canvas").bounding_box()
    for x, y in points:
        page.mouse.click(box["x"] + x, box["y"] + y)
        page.wait_for_timeout(250)  # (not a double click)
    page.mouse.click(box["x"] + points[0][0], box["y"] + points[0][1])  # back at the start: closed
    page.wait_for_timeout(300)


def test_a_polygon_drawn_and_saved_is_a_geofence_and_an_invalid_one_shows_why(console):
    page, url, _, _ = console
    page.goto(f"{url}/console#map")
    page.wait_for_selector("body[data-ready=true]")
    page.click("[data-draw=polygon]")
    _draw(page, [(300, 300), (420, 300), (420, 400), (300, 400)])
    expect(page.locator("#fence-form")).to_be_visible()
    page.fill("#fence-id", "g-drawn")
    page.select_option("#fence-store", index=0)
    page.click("#fence-form button[type=submit]")
    page.wait_for_function("document.getElementById('map-status').textContent.includes('Saved') || "
                           "document.querySelector('#fence-problems li')")
    assert page.locator("#fence-problems li").all_inner_texts() == []
    expect(page.locator("#map-status")).to_contain_text("Saved geofence g-drawn")
    fences = httpx.get(f"{url}/v1/geofences", headers=ADMIN).json()["features"]
    drawn = next(f for f in fences if f["properties"]["id"] == "g-drawn")
    assert drawn["geometry"]["type"] == "Polygon" and len(drawn["geometry"]["coordinates"][0]) == 5
    # a circle a hundred kilometres wide: more than a geofence may be, and the server says so
    page.evaluate("() => consoleState.map.jumpTo({center: [-122.4, 37.77], zoom: 6})")
    page.wait_for_timeout(300)
    page.click("[data-draw=circle]")
    box = page.locator("#map canvas").bounding_box()
    page.mouse.click(box["x"] + 400, box["y"] + 400)
    page.mouse.move(box["x"] + 500, box["y"] + 400, steps=5)
    page.mouse.move(box["x"] + 600, box["y"] + 400, steps=5)
    page.mouse.click(box["x"] + 600, box["y"] + 400)
    page.wait_for_timeout(300)
    expect(page.locator("#fence-form")).to_be_visible()
    page.fill("#fence-id", "g-too-big")
    page.click("#fence-form button[type=submit]")
    problem = page.locator("#fence-problems li").first
    expect(problem).to_contain_text("radius_m must be")
    expect(page.locator(".popup-problem")).to_contain_text("radius_m must be")  # next to the shape
    assert "g-too-big" not in _fence_ids(url)


def test_a_campaign_edited_in_the_form_changes_the_api_answer(console):
    page, url, _, _ = console
    page.goto(f"{url}/console#campaigns")
    page.wait_for_selector("body[data-ready=true]")
    first = httpx.get(f"{url}/v1/campaigns", headers=ADMIN).json()["campaigns"][0]
    page.click(f"#campaign-table tr[data-id='{first['id']}'] button")
    page.fill("#campaign-form input[name=priority]", "7")
    page.fill("#campaign-form input[name=title]", "Edited in the console")
    page.click("#campaign-form button[type=submit]")
    expect(page.locator("#campaign-status")).to_contain_text(f"Saved campaign {first['id']}")
    now = httpx.get(f"{url}/v1/campaigns/{first['id']}", headers=ADMIN).json()
    assert now["priority"] == 7 and now["offer"]["title"] == "Edited in the console"
    # a wrong value shows the server's message next to the field
    page.click(f"#campaign-table tr[data-id='{first['id']}'] button")
    page.fill("#campaign-form input[name=holdout_pct]", "150")
    page.click("#campaign-form button[type=submit]")
    expect(page.locator("#campaign-problems li").first).to_contain_text("holdout_pct")
    expect(page.locator("#campaign-form input[name=holdout_pct]")).to_have_class("invalid")


def test_the_results_chart_renders(console):
    page, url, _, _ = console
    page.goto(f"{url}/console#results")
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#results-campaign", "latte-trial")
    page.fill("#results-from", "2026-01-01")
    page.fill("#results-to", "2027-12-31")
    page.click("#results-form button[type=submit]")
    chart = page.locator("svg.interval-chart")
    expect(chart).to_be_visible()
    expect(chart).to_contain_text("exposed")
    expect(chart).to_contain_text("control")
    expect(chart.locator("rect.bar")).to_have_count(2)  # the seeded week: both groups have a rate
    expect(chart.locator("line.whisker")).to_have_count(2)
    expect(page.locator("#results-verdict")).to_be_visible()
    # the same figures as the API's, by store: the offer works at one shop and not the other
    api = httpx.get(f"{url}/v1/campaigns/latte-trial/results", headers=ADMIN, params={
        "from": "2026-01-01T00:00:00Z", "to": "2027-12-31T00:00:00Z", "by": "store"}).json()
    rows = page.locator("#results-by-store tbody tr")
    expect(rows).to_have_count(len(api["by_store"]))
    verdicts = {s["store"]: s["lift"]["verdict"] for s in api["by_store"]}
    assert verdicts == {"fc-union": "lift", "fc-civic": "no_detectable_lift"}
    for k, s in enumerate(api["by_store"]):
        expect(rows.nth(k)).to_contain_text(s["lift"]["verdict"].replace("_", " "))


def test_the_live_feed_shows_a_ping_s_events(console):
    page, url, _, _ = console
    page.goto(f"{url}/console#live")
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#live-status")).to_contain_text("Connected")
    pub = {"Authorization": "Bearer console-pub"}
    walk = (("2026-11-30T10:00:00Z", (37.80, -122.40)), ("2026-11-30T10:05:00Z", (37.78797, -122.40745)))
    for t, (lat, lon) in walk:
        r = httpx.post(f"{url}/v1/pings", headers=pub, json={
            "device_id": "live-phone", "lat": lat, "lon": lon, "timestamp": t, "accuracy_m": 5})
        assert r.status_code == 200, r.text
    row = page.locator("#live-table tbody tr", has_text="live-phone").first
    expect(row).to_contain_text("enter", timeout=10_000)
    expect(row).to_contain_text("fc-union")


def test_the_base_map_is_a_tile_template_or_a_local_archive_served_here(tmp_path):
    import subprocess
    import sys

    port = free_port()
    proc = start(tmp_path / "b.db", port, keys=KEYS, args=("--basemap", "http://127.0.0.1:9/{z}/{x}/{y}.png"))
    try:
        got = httpx.get(f"http://127.0.0.1:{port}/console/config").json()
        assert got == {"basemap": {"tiles": "http://127.0.0.1:9/{z}/{x}/{y}.png"}}
        assert httpx.get(f"http://127.0.0.1:{port}/console/basemap.pmtiles").status_code == 404
    finally:
        proc.kill()
        proc.wait()
    archive = tmp_path / "base.pmtiles"
    archive.write_bytes(b"PMTiles" + bytes(200))
    port = free_port()
    proc = start(tmp_path / "c.db", port, keys=KEYS, args=("--basemap", str(archive)))
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/console/config").json() == {
            "basemap": {"pmtiles": "/console/basemap.pmtiles"}}
        served = httpx.get(f"http://127.0.0.1:{port}/console/basemap.pmtiles", headers={"Range": "bytes=0-6"})
        assert served.status_code == 206 and served.content == b"PMTiles"  # ranges, as PMTiles reads
    finally:
        proc.kill()
        proc.wait()
    bad = subprocess.run([sys.executable, "-m", "geo_engine", "serve", "--db", str(tmp_path / "d.db"),
                          "--basemap", str(tmp_path / "missing.pmtiles")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "--basemap" in bad.stderr


def test_the_event_stream_needs_the_admin_key_and_resumes_after_the_last_id(tmp_path):
    port = free_port()
    proc = start(tmp_path / "s.db", port, keys=KEYS)
    url = f"http://127.0.0.1:{port}"
    try:
        pub = {"Authorization": "Bearer console-pub"}
        for t, (lat, lon) in (("2026-11-30T10:00:00Z", (37.80, -122.40)),
                              ("2026-11-30T10:05:00Z", (37.78797, -122.40745)),
                              ("2026-11-30T10:20:00Z", (37.80, -122.40))):
            r = httpx.post(f"{url}/v1/pings", headers=pub, json={
                "device_id": "s-phone", "lat": lat, "lon": lon, "timestamp": t, "accuracy_m": 5})
            assert r.status_code == 200
        assert httpx.get(f"{url}/v1/events/stream", headers=pub).status_code == 403
        assert httpx.get(f"{url}/v1/events/stream").status_code == 401

        def first_events(headers, n):
            got = []
            with httpx.stream("GET", f"{url}/v1/events/stream", headers={**ADMIN, **headers},
                              timeout=10) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        got.append(json.loads(line[5:]))
                        if len(got) == n:
                            return got
            return got
        both = first_events({}, 2)
        assert [(e["type"], e["store_id"], e["device_id"]) for e in both] == [
            ("enter", "fc-union", "s-phone"), ("exit", "fc-union", "s-phone")]
        assert both[1]["duration_s"] == 900.0 and both[0]["at"] == "2026-11-30T10:05:00Z"
        resumed = first_events({"Last-Event-ID": str(both[0]["id"])}, 1)
        assert resumed == [both[1]]
    finally:
        proc.kill()
        proc.wait()


def test_a_geofence_clicked_shows_its_store_and_campaigns_and_can_be_deleted(console):
    page, url, _, _ = console
    page.goto(f"{url}/console#map")
    page.wait_for_selector("body[data-ready=true]")
    fence = httpx.get(f"{url}/v1/geofences/fc-union-door", headers=ADMIN).json()
    lon, lat = fence["geometry"]["coordinates"]
    page.evaluate(f"() => consoleState.map.jumpTo({{center: [{lon}, {lat}], zoom: 16}})")
    page.wait_for_function("consoleState.map.loaded()")
    box = page.locator("#map canvas").bounding_box()
    x, y = page.evaluate(f"() => {{ const p = consoleState.map.project([{lon}, {lat}]); "
                         "return [p.x, p.y]; }")
    page.mouse.click(box["x"] + x + 20, box["y"] + y + 20)  # inside the 80 m circle, off the store's dot
    panel = page.locator("#selected")
    expect(panel).to_contain_text("Geofence fc-union-door")
    expect(panel).to_contain_text("fc-union")
    expect(panel).to_contain_text("latte-trial")  # a campaign that targets its store
    # a geofence made through the API goes away through the panel's Delete
    clon, clat = -122.4300, 37.7600
    square = [[clon - 0.001, clat - 0.001], [clon + 0.001, clat - 0.001], [clon + 0.001, clat + 0.001],
              [clon - 0.001, clat + 0.001], [clon - 0.001, clat - 0.001]]
    feature = {"type": "Feature", "properties": {"id": "g-to-delete", "store_id": "fc-union"},
               "geometry": {"type": "Polygon", "coordinates": [square]}}
    r = httpx.post(f"{url}/v1/geofences/import", headers=ADMIN,
                   json={"type": "FeatureCollection", "features": [feature]})
    assert r.status_code == 200, r.text
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.evaluate(f"() => consoleState.map.jumpTo({{center: [{clon}, {clat}], zoom: 15}})")
    page.wait_for_function("consoleState.map.loaded()")
    x, y = page.evaluate(f"() => {{ const p = consoleState.map.project([{clon}, {clat}]); "
                         "return [p.x, p.y]; }")
    page.mouse.click(box["x"] + x, box["y"] + y)
    expect(panel).to_contain_text("Geofence g-to-delete")
    page.once("dialog", lambda d: d.accept())
    panel.get_by_role("button", name="Delete").click()
    expect(panel).to_contain_text("Deleted g-to-delete")
    assert httpx.get(f"{url}/v1/geofences/g-to-delete", headers=ADMIN).status_code == 404


def test_a_campaign_is_disabled_and_enabled_from_its_row(console):
    page, url, _, _ = console
    page.goto(f"{url}/console#campaigns")
    page.wait_for_selector("body[data-ready=true]")
    box = page.get_by_label("enable latte-trial")
    expect(box).to_be_checked()
    box.uncheck()
    expect(page.locator("#campaign-status")).to_contain_text("latte-trial disabled")
    assert httpx.get(f"{url}/v1/campaigns/latte-trial", headers=ADMIN).json()["enabled"] is False
    page.get_by_label("enable latte-trial").check()
    expect(page.locator("#campaign-status")).to_contain_text("latte-trial enabled")
    assert httpx.get(f"{url}/v1/campaigns/latte-trial", headers=ADMIN).json()["enabled"] is True


def test_a_new_campaign_is_made_in_the_form(console):
    page, url, _, _ = console
    page.goto(f"{url}/console#campaigns")
    page.wait_for_selector("body[data-ready=true]")
    page.click("#campaign-new")
    form = page.locator("#campaign-form")
    form.locator("input[name=id]").fill("made-here")
    form.locator("input[name=store_ids]").fill("fc-union, fc-civic")
    form.locator("input[name=title]").fill("Made in the console")
    form.locator("input[name=holdout_pct]").fill("10")
    page.click("#campaign-form button[type=submit]")
    expect(page.locator("#campaign-status")).to_contain_text("Saved campaign made-here")
    made = httpx.get(f"{url}/v1/campaigns/made-here", headers=ADMIN).json()
    assert made["targets"]["store_ids"] == ["fc-union", "fc-civic"] and made["holdout_pct"] == 10
    assert made["offer"]["title"] == "Made in the console" and made["enabled"] is True



def test_an_existing_geofence_edited_is_saved_under_its_id(console):
    """Edit the shape puts the geofence into Terra Draw's select mode, its vertices draggable; a
    vertex moved there (here through Terra Draw's own API: a synthetic mouse drag did not reach
    it in headless chromium) is saved under the geofence's id, replacing the old shape."""
    page, url, _, _ = console
    lon, lat = -122.4500, 37.7450
    square = [[lon - 0.001, lat - 0.001], [lon + 0.001, lat - 0.001], [lon + 0.001, lat + 0.001],
              [lon - 0.001, lat + 0.001], [lon - 0.001, lat - 0.001]]
    feature = {"type": "Feature", "properties": {"id": "g-to-edit", "store_id": "fc-union"},
               "geometry": {"type": "Polygon", "coordinates": [square]}}
    assert httpx.post(f"{url}/v1/geofences/import", headers=ADMIN,
                      json={"type": "FeatureCollection", "features": [feature]}).status_code == 200
    page.goto(f"{url}/console#map")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.evaluate(f"() => consoleState.map.jumpTo({{center: [{lon}, {lat}], zoom: 15}})")
    page.wait_for_function("consoleState.map.loaded()")
    box = page.locator("#map canvas").bounding_box()
    x, y = page.evaluate(f"() => {{ const p = consoleState.map.project([{lon}, {lat}]); "
                         "return [p.x, p.y]; }")
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.locator("#selected").get_by_role("button", name="Edit the shape").click()
    expect(page.locator("#fence-id")).to_have_value("g-to-edit")
    assert page.evaluate("() => consoleState.draw.getMode()") == "select"
    moved = [[round(a, 9), round(b, 9)] for a, b in square]  # as Terra Draw holds them
    moved[2] = [round(lon + 0.002, 9), round(lat + 0.001, 9)]  # the north-east corner, east
    page.evaluate("(ring) => consoleState.draw.updateFeatureGeometry(consoleState.drawn.id, "
                  "{type: 'Polygon', coordinates: [ring]})", moved)
    page.click("#fence-form button[type=submit]")
    expect(page.locator("#map-status")).to_contain_text("Saved geofence g-to-edit")
    saved = httpx.get(f"{url}/v1/geofences/g-to-edit", headers=ADMIN).json()
    ring = saved["geometry"]["coordinates"][0]
    assert max(p[0] for p in ring) == pytest.approx(lon + 0.002, abs=1e-6) and len(ring) == 5
    assert saved["properties"]["store_id"] == "fc-union"


def test_a_stores_pickup_board_follows_a_trip_live_and_hands_it_over(console):
    page, url, asked, errors = console
    from datetime import UTC, datetime, timedelta
    pub = {"Authorization": "Bearer console-pub"}
    made = httpx.post(f"{url}/v1/trips", headers=ADMIN, json={
        "trip_id": "board-1", "device_id": "board-phone", "store_id": "fc-ferry", "mode": "car",
        "approaching_s": 60, "metadata": {"name": "Ada", "order": "1042"}})
    assert made.status_code == 201, made.text
    now = datetime.now(UTC)
    far = httpx.post(f"{url}/v1/pings", headers=pub, json={
        "device_id": "board-phone", "lat": 37.7685, "lon": -122.3937, "accuracy_m": 10,
        "timestamp": (now - timedelta(minutes=5)).isoformat()}).json()["trip"]
    assert far["status"] == "started"
    page.goto(f"{url}/console/stores/fc-ferry")
    page.wait_for_selector("body[data-ready=true]")
    coming = page.locator("#coming [data-trip=board-1]")
    expect(coming).to_contain_text("Ada (order 1042)")
    eta = round(far["eta_s"])
    expect(coming.locator(".eta")).to_have_text(f"arrives in {eta // 60}:{eta % 60:02d}")
    expect(page.locator("#waiting [data-trip=board-1]")).to_have_count(0)

    # the phone drives into the car park: the board moves the card by itself (no reload)
    inside = httpx.post(f"{url}/v1/pings", headers=pub, json={
        "device_id": "board-phone", "lat": 37.79552, "lon": -122.39366, "accuracy_m": 10,
        "timestamp": now.isoformat()}).json()["trip"]
    assert inside["status"] == "arrived"
    waiting = page.locator("#waiting [data-trip=board-1]")
    expect(waiting).to_be_visible(timeout=10_000)
    expect(coming).to_have_count(0)
    first = waiting.locator(".wait").inner_text()
    page.wait_for_timeout(2100)
    assert waiting.locator(".wait").inner_text() != first  # the wait counts up

    waiting.get_by_role("button", name="Handed over").click()
    done = page.locator("#done [data-trip=board-1]")
    expect(done).to_contain_text("waited")
    trip = httpx.get(f"{url}/v1/trips/board-1", headers=ADMIN).json()
    assert trip["status"] == "completed" and trip["wait_time_s"] >= 2
    w = int(trip["wait_time_s"] + 0.5)  # (as the page rounds: half up)
    expect(done).to_contain_text(f"waited {w // 60}:{w % 60:02d}")
    expect(page.locator("#kpi")).to_contain_text("1 handed over")
    assert all(u.startswith(f"{url}/") or u.startswith(("data:", "blob:")) for u in asked)
    assert errors == []
