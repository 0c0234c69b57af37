"""The HTTP layer: a thin FastAPI app over :class:`geo_engine.Engine` (see :mod:`api.app`).

It may import the library; nothing in the library imports it.
"""
