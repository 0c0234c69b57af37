"""The baseline for the load benchmark: a bare FastAPI app that parses the same ping body.

It validates ``POST /v1/pings`` with geo-engine's own request schema and answers a fixed,
geo-engine-shaped JSON body: no key check, no index, no database. Served by the same uvicorn
settings as ``geo-engine serve``.

    python benchmarks/load/bare_app.py --port 8001
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from api.schemas import PingIn  # noqa: E402

ANSWER = {"events": [], "offer": None, "decision": {"considered": 0, "rejected": []},
          "nearest_store": {"store_id": "s0", "distance_m": 12.3}, "flags": []}


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/pings")
    def post_ping(p: PingIn) -> dict:
        return ANSWER

    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, access_log=False, log_level="warning")
