"""Write data/demo_stores.geojson: a demo chain in San Francisco (stores and their geofences).

Run ``python data/make_demo.py`` to redraw it. The sites are real places; the geofences are
circles around small sites and polygons drawn around larger ones (a mall with its building cut
out as a hole, a market hall, two parking lots as one MultiPolygon, a pop-up event that
expires).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

HOURS_CAFE = {d: [["07:00", "19:00"]] for d in ("mon", "tue", "wed", "thu", "fri")} | {
    "sat": [["08:00", "18:00"]], "sun": [["08:00", "16:00"]]}
HOURS_MARKET = {d: [["08:00", "22:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat")} | {
    "sun": [["09:00", "20:00"]]}

# id, name, lat, lon, kind (coffee | market), geofence radius in metres (None: a polygon below)
SITES = [
    ("fc-ferry", "Fog City Coffee Ferry Building", 37.79552, -122.39366, "coffee", None),
    ("fc-union", "Fog City Coffee Union Square", 37.78797, -122.40745, "coffee", 80),
    ("fc-civic", "Fog City Coffee Civic Center", 37.77930, -122.41700, "coffee", 70),
    ("fc-valencia", "Fog City Coffee Valencia", 37.76500, -122.42180, "coffee", 60),
    ("fc-castro", "Fog City Coffee Castro", 37.76090, -122.43500, "coffee", 60),
    ("fc-haight", "Fog City Coffee Haight", 37.76920, -122.44810, "coffee", 60),
    ("fc-northbeach", "Fog City Coffee North Beach", 37.80080, -122.41010, "coffee", 70),
    ("fc-wharf", "Fog City Coffee Fisherman's Wharf", 37.80800, -122.41770, "coffee", 90),
    ("fc-marina", "Fog City Coffee Chestnut", 37.80040, -122.43760, "coffee", 60),
    ("fc-fillmore", "Fog City Coffee Fillmore", 37.78800, -122.43350, "coffee", 60),
    ("fc-hayes", "Fog City Coffee Hayes Valley", 37.77650, -122.42410, "coffee", 60),
    ("fc-yerba", "Fog City Coffee Yerba Buena", 37.78500, -122.40200, "coffee", 80),
    ("fc-embarcadero", "Fog City Coffee Embarcadero Center", 37.79460, -122.39900, "coffee", 70),
    ("fc-montgomery", "Fog City Coffee Montgomery", 37.78970, -122.40200, "coffee", 60),
    ("fc-grant", "Fog City Coffee Chinatown", 37.79410, -122.40780, "coffee", 50),
    ("fc-polk", "Fog City Coffee Russian Hill", 37.79800, -122.42200, "coffee", 60),
    ("fc-clement", "Fog City Coffee Clement", 37.78270, -122.46500, "coffee", 60),
    ("fc-irving", "Fog City Coffee Inner Sunset", 37.76380, -122.46900, "coffee", 60),
    ("fc-noe", "Fog City Coffee Noe Valley", 37.75160, -122.43200, "coffee", 60),
    ("fc-cortland", "Fog City Coffee Bernal Heights", 37.73900, -122.41600, "coffee", 50),
    ("fc-dogpatch", "Fog City Coffee Dogpatch", 37.75900, -122.38800, "coffee", 60),
    ("fc-judah", "Fog City Coffee Outer Sunset", 37.76100, -122.50500, "coffee", 70),
    ("fc-westportal", "Fog City Coffee West Portal", 37.74040, -122.46600, "coffee", 60),
    ("fc-japantown", "Fog City Coffee Japantown", 37.78540, -122.42940, "coffee", 70),
    ("gg-missionbay", "Golden Gate Market Mission Bay", 37.76800, -122.39300, "market", 120),
    ("gg-potrero", "Golden Gate Market Potrero Hill", 37.75900, -122.40100, "market", 110),
    ("gg-glenpark", "Golden Gate Market Glen Park", 37.73350, -122.43370, "market", 100),
    ("gg-geary", "Golden Gate Market Geary", 37.78080, -122.46400, "market", None),
    ("gg-stonestown", "Golden Gate Market Stonestown", 37.72800, -122.47600, "market", None),
    ("gg-excelsior", "Golden Gate Market Excelsior", 37.72400, -122.43500, "market", 110),
    ("gg-bayview", "Golden Gate Market Bayview", 37.73400, -122.39000, "market", 120),
    ("gg-presidio", "Golden Gate Market Presidio", 37.79890, -122.46620, "market", 150),
]

M_PER_DEG_LAT = 111_000.0


def offset(lat: float, lon: float, east_m: float, north_m: float) -> list[float]:
    """A position east_m/north_m metres from lat/lon (a drawing aid, not a geodesic)."""
    return [round(lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))), 6),
            round(lat + north_m / M_PER_DEG_LAT, 6)]


def ring(lat: float, lon: float, corners: list[tuple[float, float]]) -> list[list[float]]:
    pts = [offset(lat, lon, e, n) for e, n in corners]
    return pts + [pts[0]]


def polygon_fences(site: tuple) -> list[dict]:
    sid, name, lat, lon = site[:4]
    if sid == "fc-ferry":  # the Ferry Building's long hall along the Embarcadero
        geom = {"type": "Polygon", "coordinates": [ring(lat, lon, [
            (-60, -150), (40, -140), (75, 130), (-25, 150), (-45, 20)])]}
        return [fence(f"{sid}-hall", sid, "Ferry Building hall", geom, ["transit"])]
    if sid == "gg-geary":  # two parking lots either side of the store: one MultiPolygon
        west = ring(lat, lon, [(-140, -40), (-40, -40), (-40, 50), (-140, 50)])
        east = ring(lat, lon, [(40, -40), (150, -45), (150, 45), (40, 50)])
        geom = {"type": "MultiPolygon", "coordinates": [[west], [east]]}
        return [fence(f"{sid}-lots", sid, "Geary parking lots", geom, ["parking"])]
    if sid == "gg-stonestown":  # the mall grounds, the building itself cut out as a hole
        outer = ring(lat, lon, [(-250, -200), (230, -220), (260, 210), (-240, 230)])
        hole = ring(lat, lon, [(-120, -90), (-120, 100), (110, 100), (110, -90)])
        geom = {"type": "Polygon", "coordinates": [outer, hole]}
        popup = {"type": "Polygon", "coordinates": [ring(lat, lon, [
            (-300, 240), (-150, 240), (-150, 330), (-300, 330)])]}
        return [fence(f"{sid}-grounds", sid, "Stonestown mall grounds", geom, ["mall"]),
                fence(f"{sid}-holiday-popup", sid, "Holiday pop-up market", popup, ["event"],
                      expires_at="2027-01-06T08:00:00Z")]
    raise ValueError(sid)


def fence(fid, store_id, name, geometry, tags, **extra) -> dict:
    props = {"kind": "geofence", "id": fid, "store_id": store_id, "name": name, "tags": tags}
    props.update(extra)
    # what geojson.io writes beside a drawn shape: kept as metadata
    props.update({"stroke": "#2b6cb0", "fill": "#90cdf4", "fill-opacity": 0.4})
    return {"type": "Feature", "properties": props, "geometry": geometry}


def main() -> None:
    features = []
    for i, site in enumerate(SITES):
        sid, name, lat, lon, kind, radius = site
        props = {"kind": "store", "id": sid, "name": name,
                 "tags": ["coffee"] if kind == "coffee" else ["grocery", "market"],
                 "opening_hours": HOURS_CAFE if kind == "coffee" else HOURS_MARKET,
                 "address": f"{name.split(' ', 3)[-1]}, San Francisco, CA"}
        if i % 3:  # a third of the file leaves the zone out: the engine derives it
            props["timezone"] = "America/Los_Angeles"
        features.append({"type": "Feature", "properties": props,
                         "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        if radius is not None:
            features.append(fence(f"{sid}-door", sid, f"{name} door", {
                "type": "Point", "coordinates": [lon, lat]}, props["tags"], radius_m=radius))
        else:
            features += polygon_fences(site)
    out = Path(__file__).with_name("demo_stores.geojson")
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1) + "\n")
    print(f"wrote {out}: {len(SITES)} stores, {len(features) - len(SITES)} geofences")


if __name__ == "__main__":
    main()
