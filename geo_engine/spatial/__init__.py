"""Spatial indexes: stores (k-d tree on the unit sphere), geofences (box grid and R-tree), the
lon/lat cell grids a ping's one-point queries use, and exact counts within a radius.

Indexes only propose candidates; exact geodesics decide. Nothing here knows campaigns, devices
or the database.
"""
