"""Geocoded addresses, cached by geocoder: each address is looked up once, found or not.

SQL only; the geocoding is :mod:`geo_engine.io.geocoding`.
"""

from __future__ import annotations

from .sqlite import SQLite

__all__ = ["Geocodes"]


class Geocodes:
    """The ``geocodes`` table (lat NULL: the geocoder found nothing)."""

    def __init__(self, db: SQLite):
        self._db = db

    def cached(self, geocoder: str, addresses: list[str]) -> dict[str, tuple]:
        """address -> (lat, lon), (None, None) when known not found; unknown addresses absent."""
        out: dict[str, tuple] = {}
        for k in range(0, len(addresses), 500):
            part = addresses[k:k + 500]
            rows = self._db.query(
                f"SELECT address, lat, lon FROM geocodes WHERE geocoder = ? AND address IN "
                f"({','.join('?' * len(part))})", (geocoder, *part))
            out.update({a: (la, lo) for a, la, lo in rows})
        return out

    def save(self, geocoder: str, found: dict[str, tuple]) -> None:
        with self._db.atomic() as tx:
            tx.executemany("INSERT INTO geocodes (geocoder, address, lat, lon) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (geocoder, address) DO UPDATE SET lat = excluded.lat, "
                           "lon = excluded.lon, at = excluded.at",
                           [(geocoder, a, la, lo) for a, (la, lo) in found.items()])
