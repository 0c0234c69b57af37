"""``/console``: the marketer's page, and the scripts it runs, served by the engine itself.

The page (``api/static/console/``: an HTML file, its script, the script it shares with the
store's pickup board at ``/console/stores/{store_id}``, one stylesheet) talks to the same
HTTP API as everyone else with the admin key the user types once (kept for the browser
session). Its libraries (MapLibre GL for the map, Terra Draw for drawing, PMTiles for a local
base map) come from the npm registry at install time (``make install`` runs ``npm ci`` in that
folder) and are served from here: nothing is fetched from the internet at run time.

The base map is the setting ``basemap``: a tile URL template (``https://.../{z}/{x}/{y}.png``,
fetched by the browser) or a local PMTiles archive of raster tiles, served here at
``/console/basemap.pmtiles``; without one the map is a plain background with a graticule.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from geo_engine import Engine

__all__ = ["VENDOR", "router"]

HERE = Path(__file__).resolve().parent / "static" / "console"
MODULES = HERE / "node_modules"
#: what the page loads from /console/vendor/NAME, and where npm put it
VENDOR = {
    "maplibre-gl.js": "maplibre-gl/dist/maplibre-gl.js",
    "maplibre-gl.css": "maplibre-gl/dist/maplibre-gl.css",
    "terra-draw.js": "terra-draw/dist/terra-draw.umd.js",
    "terra-draw-maplibre-gl-adapter.js":
        "terra-draw-maplibre-gl-adapter/dist/terra-draw-maplibre-gl-adapter.umd.js",
    "pmtiles.js": "pmtiles/dist/pmtiles.js",
}
OWN = {"console.js": "application/javascript", "console.css": "text/css",
       "common.js": "application/javascript", "board.js": "application/javascript"}
_TYPES = {".js": "application/javascript", ".css": "text/css"}


def router(engine: Engine) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/console")
    def page():
        return FileResponse(HERE / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @r.get("/console/stores/{store_id}")
    def board(store_id: str):
        """A store's pickup board (its trips, live), for an associate's tablet."""
        return FileResponse(HERE / "board.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @r.get("/console/app/{name}")
    def own(name: str):
        if name not in OWN:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(HERE / name, media_type=OWN[name], headers={"Cache-Control": "no-cache"})

    @r.get("/console/vendor/{name}")
    def vendor(name: str):
        path = VENDOR.get(name)
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        if not (MODULES / path).is_file():
            return PlainTextResponse(
                f"the console's scripts are not installed ({path} is missing): run `make install`, "
                f"or `npm ci` in {HERE}", status_code=503)
        return FileResponse(MODULES / path, media_type=_TYPES[Path(path).suffix])

    @r.get("/console/config")
    def config():
        basemap = engine.settings.basemap
        if not basemap:
            return {"basemap": None}
        if basemap.endswith(".pmtiles"):
            return {"basemap": {"pmtiles": "/console/basemap.pmtiles"}}
        return {"basemap": {"tiles": basemap}}

    @r.get("/console/basemap.pmtiles")
    def basemap_file():
        path = engine.settings.basemap
        if not path.endswith(".pmtiles") or not Path(path).is_file():
            return JSONResponse({"detail": "no local PMTiles base map is configured"}, status_code=404)
        return FileResponse(path, media_type="application/octet-stream")  # ranges: Starlette's

    return r
