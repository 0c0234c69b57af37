"""Addresses and postal codes to coordinates, for batch scoring (SPEC 3.3).

* :class:`AddressGeocoder`: any geopy geocoder by name (``nominatim`` with a URL for a
  self-hosted Nominatim), through geopy's ``RateLimiter`` (a delay between calls, retries on
  errors). Each distinct address is looked up once and the answer, found or not, is cached in
  the database, so a second run asks the geocoder nothing.
* :class:`PostalCodes`: postal-code centroids offline: US ZIP codes from the ``zipcodes``
  package, other countries from a GeoNames postal-code file (``--postal-codes FILE``).

It turns text into coordinates; what a located row scores is :mod:`geo_engine.scoring`'s.
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from ..db.geocodes import Geocodes
from ..errors import InvalidInput

__all__ = ["AddressGeocoder", "PostalCodes", "parse_options"]


def parse_options(pairs: list[str] | tuple[str, ...]) -> dict:
    """``["api_key=abc", "timeout=5"]`` -> ``{"api_key": "abc", "timeout": 5}`` (numbers and
    true/false read as such, the rest kept as text)."""
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InvalidInput(f"--geocoder-option {pair!r} is not NAME=VALUE, like api_key=abc123")
        text = value.strip()
        parsed: object = text
        if text.lower() in ("true", "false"):
            parsed = text.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    parsed = kind(text)
                    break
                except ValueError:
                    pass
        out[key.strip()] = parsed
    return out


class AddressGeocoder:
    """Geocode addresses through geopy, each distinct one once, cached in the database (``cache``).

    ``options`` go to the geopy geocoder's constructor as they are (``api_key`` for the
    commercial ones, ``user_agent``, ``timeout``, ...); see :func:`parse_options`.
    """

    def __init__(self, name: str, cache: Geocodes, url: str | None = None, delay_s: float = 1.0,
                 user_agent: str = "geo-engine", options: dict | None = None):
        from geopy.extra.rate_limiter import RateLimiter
        from geopy.geocoders import get_geocoder_for_service

        try:
            cls = get_geocoder_for_service(name)
        except Exception:  # noqa: BLE001 - geopy raises its own error type for unknown names
            raise InvalidInput(f"--geocoder {name!r} is no geocoder geopy knows; try nominatim"
                               ) from None
        kwargs: dict = {"user_agent": user_agent, "timeout": 10}
        if url:
            parsed = urlparse(url if "://" in url else f"https://{url}")
            kwargs.update(domain=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme)
        kwargs.update(options or {})  # what that geocoder takes: api_key, user_agent, timeout...
        try:
            self._geocoder = cls(**kwargs)
        except TypeError as exc:
            raise InvalidInput(f"the {name} geocoder cannot be set up this way: {exc}") from None
        self._geocode = RateLimiter(self._geocoder.geocode, min_delay_seconds=delay_s, max_retries=2,
                                    error_wait_seconds=max(delay_s, 1.0), swallow_exceptions=True,
                                    return_value_on_exception=None)
        self.key = f"{name}:{url or ''}"
        self.cache = cache
        self.requests = 0  # look-ups sent to the geocoder (not answered from the cache)

    def geocode(self, addresses: list[str]) -> dict[str, tuple]:
        """address -> (lat, lon), or (None, None) when the geocoder does not find it."""
        wanted = sorted(set(addresses))
        known = self.cache.cached(self.key, wanted)
        fresh = {}
        for address in (a for a in wanted if a not in known):
            self.requests += 1
            place = self._geocode(address)
            fresh[address] = (place.latitude, place.longitude) if place is not None else (None, None)
        if fresh:
            self.cache.save(self.key, fresh)
        return known | fresh


class PostalCodes:
    """Postal-code centroids: US ZIP codes built in, other countries from GeoNames files."""

    def __init__(self, geonames: Path | None = None):
        self._geonames = None
        if geonames is not None:  # read now: a bad file is refused before any scoring
            try:
                g = pd.read_csv(geonames, sep="\t", header=None, dtype=str, usecols=[0, 1, 9, 10],
                                names=["country", "code", "lat", "lon"], keep_default_na=False)
            except (OSError, ValueError) as exc:
                raise InvalidInput(f"{geonames}: not a GeoNames postal-code file (tab-separated: "
                                   f"country, postal code, ..., latitude, longitude): {exc}"
                                   ) from None
            g["lat"] = pd.to_numeric(g["lat"], errors="coerce")
            g["lon"] = pd.to_numeric(g["lon"], errors="coerce")
            self._geonames = g

    @functools.cached_property
    def table(self) -> pd.DataFrame:
        """(country, code, lat, lon), one row per code: built on first use (the US ZIP codes
        take a noticeable while, which a file without postal codes never needs)."""
        import zipcodes

        us = pd.DataFrame([(z["zip_code"], float(z["lat"]), float(z["long"]))
                           for z in zipcodes.list_all()], columns=["code", "lat", "lon"])
        us["country"] = "US"
        table = pd.concat([us] + ([self._geonames] if self._geonames is not None else []),
                          ignore_index=True)
        table["code"] = table["code"].str.strip().str.upper()
        # one centroid per code: the mean of a code's places (GeoNames lists several)
        return table.groupby(["country", "code"], as_index=False)[["lat", "lon"]].mean()

    def lookup(self, codes, countries=None) -> tuple[np.ndarray, np.ndarray]:
        """Centroid lats, lons of each code (NaN when unknown); country defaults to US."""
        code = pd.Series(codes, dtype="string").str.strip().str.upper()
        # a US ZIP+4 or a ZIP read as a number loses nothing that matters: the first five digits
        country = pd.Series(countries if countries is not None else ["US"] * len(code),
                            dtype="string").fillna("US").str.strip().str.upper()
        us = country == "US"
        code = code.where(~us, code.str.extract(r"^(\d{1,5})", expand=False).str.zfill(5))
        keys = pd.DataFrame({"country": country.to_numpy(), "code": code.to_numpy()})
        found = keys.merge(self.table, how="left", on=["country", "code"])
        return found["lat"].to_numpy(dtype=float), found["lon"].to_numpy(dtype=float)
