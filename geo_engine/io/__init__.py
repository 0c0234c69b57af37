"""Reading and writing what users hand over: store and geofence files (GeoJSON, CSV), customer
files in chunks, addresses and postal codes to coordinates.

Every problem in an input is named with where it is and how to fix it. Nothing here knows
campaigns, devices or the rules.
"""
