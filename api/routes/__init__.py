"""The routes, one module per resource; each module's ``router(engine, ...)`` returns its routes.

A route validates the request (the schema), calls the engine once, and serializes the values it
gets back. It holds no SQL, geometry or rules.
"""
