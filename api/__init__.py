"""The HTTP API (FastAPI), thin over geo_engine.Engine: arrives with the service issue."""
