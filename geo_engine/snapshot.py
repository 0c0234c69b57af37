"""The snapshot: everything a ping reads, built off to the side and swapped in one assignment.

A :class:`Snapshot` holds the loaded :class:`Places` (stores, geofences and their indexes) and
the :class:`~geo_engine.targeting.Targeting` of the campaigns over them, with the change
counters they were read at. Nothing in it changes once built (lookups remember what they found,
which changes no answer), so a request that took ``engine.snapshot`` once sees one consistent
world, whatever an import or a reload does meanwhile (Tile38 and datasette rebuild aside and
swap the same way). A change of campaigns only makes a new Targeting over the same Places.

It reads the database only to build, and, past :data:`PRELOAD_STORES` stores, each store's
details on first use. It knows no rule and no device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .campaigns import Campaign
from .errors import NotFound
from .io.shapes import build_geofences
from .model import Confidence, FenceHit, Geofence, Location, NearbyFence, Store, StoreArrays, StoreHit
from .spatial.fences import FenceIndex
from .spatial.stores import StoreIndex
from .targeting import Targeting
from .webhooks import Subscription

__all__ = ["FOLLOWED", "PRELOAD_STORES", "Places", "Snapshot"]

#: the change counters a snapshot is built at, and a ping's transaction checks again
FOLLOWED = ("places", "campaigns", "webhooks")

#: up to this many stores, every store's details are read with the places; past it, on first use
PRELOAD_STORES = 250_000


class Places:
    """The stores and geofences as loaded, with their indexes.

    Parameters
    ----------
    stores : StoreArrays
        Every store's id, lat, lon and name, sorted by id.
    geofences : list of Geofence
        Every geofence, sorted by id, polygons with their parts and edges.
    details : dict, optional
        Store id -> Store, all of them; when absent, ``read_stores`` reads them on first use.
    read_stores : callable, optional
        Store ids -> their Stores (the database), for the details not given.
    """

    def __init__(self, stores: StoreArrays, geofences: list[Geofence],
                 details: dict[str, Store] | None = None,
                 read_stores: Callable[[list[str]], list[Store]] | None = None):
        self.stores = stores
        self.store_index = StoreIndex(stores.lats, stores.lons)
        self.fence_index = FenceIndex(geofences)
        self._fence_pos = {f.id: i for i, f in enumerate(self.fence_index.fences)}
        self._details: dict[str, Store] = details if details is not None else {}
        self._read_stores = read_stores

    @classmethod
    def load(cls, places_db) -> Places:
        """Read the places from the database's places table (:class:`geo_engine.db.places.Places`)."""
        stores = places_db.store_arrays()
        circles, polygons = places_db.geofence_rows()
        # every polygon in one batch: parts and edges for 100k polygons in one array pass
        fences = sorted(circles + build_geofences(polygons), key=lambda g: g.id)
        details = {s.id: s for s in places_db.stores()} if len(stores) <= PRELOAD_STORES else None
        return cls(stores, fences, details, places_db.stores)

    def prepare(self) -> None:
        """Build what one-point queries use (the stores' grid) now, not in the first ping."""
        self.store_index.prepare_point_queries()

    # --- lookups -------------------------------------------------------------------------------

    @property
    def geofences(self) -> list[Geofence]:
        """Every geofence, ordered by id."""
        return self.fence_index.fences

    def geofence(self, geofence_id: str) -> Geofence | None:
        """The geofence with this id, or None."""
        i = self._fence_pos.get(geofence_id)
        return None if i is None else self.fence_index.fences[i]

    def store(self, store_id: str) -> Store:
        """The store with this id; raises :class:`NotFound`."""
        s = self._details.get(store_id)
        if s is None:
            found = self._read_stores([store_id]) if self._read_stores is not None else []
            if not found:
                raise NotFound(f"no store {store_id!r}")
            s = self._details[store_id] = found[0]
        return s

    def find_store(self, store_id: str) -> Store | None:
        """The store with this id, or None."""
        try:
            return self.store(store_id)
        except NotFound:
            return None

    # --- queries -------------------------------------------------------------------------------

    def nearest(self, lat: float, lon: float, k: int) -> list[StoreHit]:
        """The ``k`` nearest stores, nearest first, ties by id (geodesic metres)."""
        idx, dist = self.store_index.nearest(lat, lon, k)
        return [self.stores.hit(i, d) for i, d in zip(idx.tolist(), dist.tolist(), strict=True)]

    def within(self, lat: float, lon: float, radius_m: float) -> list[StoreHit]:
        """Every store within ``radius_m``, nearest first, ties by id."""
        idx, dist = self.store_index.within(lat, lon, radius_m)
        return [self.stores.hit(i, d) for i, d in zip(idx.tolist(), dist.tolist(), strict=True)]

    def nearest_one(self, lat: float, lon: float) -> StoreHit | None:
        """The nearest store (the fast one-point path), or None when there are none."""
        near = self.store_index.nearest_one(lat, lon)
        return None if near is None else self.stores.hit(*near)

    def hits(self, lat: float, lon: float, accuracy_m: float,
             at: datetime | None) -> dict[str, tuple[str, Confidence]]:
        """Geofence id -> (store id, confidence) for every geofence a fix is in or touches."""
        fences = self.fence_index.fences
        return {fences[i].id: (fences[i].store_id, conf)
                for i, conf in self.fence_index.containing(lat, lon, accuracy_m, at)}

    def locate(self, lat: float, lon: float, accuracy_m: float, at: datetime | None) -> Location:
        """The geofences a fix is in or touches (highest confidence first, then id) and the
        nearest store."""
        fences = self.fence_index.fences
        found = [FenceHit(fences[i].id, fences[i].store_id, conf)
                 for i, conf in self.fence_index.containing(lat, lon, accuracy_m, at)]
        found.sort(key=lambda h: -h.confidence.rank)
        return Location(found, self.nearest_one(lat, lon))

    def distance_to_fence(self, geofence_id: str, lat: float, lon: float, at: datetime) -> float:
        """Geodesic metres from a point to a geofence's boundary, 0 inside; inf for one that is
        gone, disabled or expired at ``at``."""
        i = self._fence_pos.get(geofence_id)
        if i is None or not self.fence_index.fences[i].active(at):
            return float("inf")
        return self.fence_index.distance_m(i, lat, lon)

    def nearby_fences(self, lat: float, lon: float, limit: int) -> list[NearbyFence]:
        """The ``limit`` geofences nearest by distance to their boundary (0 inside), each as its
        enclosing circle: nearest first, ties by id."""
        out = []
        for i, d in self.fence_index.nearest(lat, lon, limit):
            f = self.fence_index.fences[i]
            c_lat, c_lon, r = self.fence_index.enclosing_circle(i)
            out.append(NearbyFence(f.id, f.store_id, c_lat, c_lon, r, d))
        return out


@dataclass(frozen=True)
class Snapshot:
    """What a ping reads: places, campaigns and their targeting, and the change counters
    (``places``, ``campaigns``) they were read at."""

    places: Places
    targeting: Targeting
    generations: dict[str, int]
    #: the enabled webhook subscriptions (a ping's events go to their outbox)
    webhooks: tuple[Subscription, ...] = ()

    @property
    def campaigns(self) -> list[Campaign]:
        """Every campaign, enabled or not, ordered by id."""
        return self.targeting.campaigns

    @classmethod
    def build(cls, places: Places, campaigns: list[Campaign], generations: dict[str, int],
              serving: bool, webhooks: tuple[Subscription, ...] = ()) -> Snapshot:
        """A snapshot of these places and campaigns; ``serving`` builds what pings query now
        (the stores' grid, each nearby campaign's reach), so no ping pays for it."""
        built = cls(places, Targeting(campaigns, places), dict(generations),
                    tuple(w for w in webhooks if w.enabled))
        if serving:
            built.prepare()
        return built

    def prepare(self) -> None:
        """Build what pings query (the stores' grid, each nearby campaign's reach) now."""
        self.places.prepare()
        self.targeting.prepare()
