"""Targeting: which active campaigns a geofence, a store, a tag or a nearby reach brings in.

One index of the campaigns, used by the ping and by batch scoring alike, so the two cannot
disagree on who is targeted:

* by geofence: the campaigns naming a geofence id, its store's id, or a tag of either
  (:meth:`Campaign.targets_fence`, held as maps), grouped by trigger, with the shortest
  ``dwell_s`` asked of the geofence;
* by reach: each ``nearby`` campaign's targeted stores, as boxes around them covering its radius,
  all campaigns' boxes in one grid (a ping's one-point lookup, however many campaigns there
  are), and as a store index per campaign (bulk and near the poles);
* the :class:`~geo_engine.model.Candidate` values the decision weighs, from a ping's events or
  from a place's geofences.

Built from campaigns and the loaded places, never changed after (what it finds is kept, but a
lookup's answer never depends on when it is asked). It knows no database and no rule.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .campaigns import Campaign
from .geodesy import GEOD, distance_m, lonlat_boxes
from .model import Candidate, Confidence, Event, EventType, StoreHit
from .spatial.grids import BoxGrid
from .spatial.stores import StoreIndex

if TYPE_CHECKING:
    from .snapshot import Places

__all__ = ["OnFence", "Targeting"]


@dataclass(frozen=True)
class OnFence:
    """The active campaigns on one geofence, by trigger, and the shortest dwell they ask."""

    by_trigger: dict[str, list[Campaign]]
    dwell_s: float | None


_NO_CAMPAIGNS = OnFence({}, None)


class Targeting:
    """The campaigns, indexed by what brings each in.

    Parameters
    ----------
    campaigns : list of Campaign
        All of them, ordered by id; only the enabled ones target anything.
    places : Places
        The stores and geofences they target.
    """

    def __init__(self, campaigns: list[Campaign], places: Places):
        self.campaigns = campaigns
        self.active = [c for c in campaigns if c.enabled]
        self._places = places
        self._by_fence_id: dict[str, list[Campaign]] = {}
        self._by_store_id: dict[str, list[Campaign]] = {}
        self._by_tag: dict[str, list[Campaign]] = {}
        for c in self.active:
            if c.trigger != "nearby":
                for keys, into in ((c.geofence_ids, self._by_fence_id),
                                   (c.store_ids, self._by_store_id), (c.tags, self._by_tag)):
                    for key in keys:
                        into.setdefault(key, []).append(c)
        self.nearby = [c for c in self.active if c.trigger == "nearby"]
        #: no store farther than this from a ping can be in any nearby campaign's reach
        self.nearby_reach_m = max((c.radius_m for c in self.nearby), default=-1.0)
        self.has_dwell = any(c.trigger == "dwell" for c in self.active)
        self._on_fence: dict[str, OnFence] = {}
        self._targeted: dict[str, tuple[np.ndarray, StoreIndex | None]] = {}
        self._reach: dict[str, BoxGrid] = {}
        # every nearby campaign's reach in one grid, owners being (campaign, store) pairs: a
        # ping looks once, however many nearby campaigns there are
        self._reach_all: tuple[BoxGrid, list[int], list[int]] | None = None

    def prepare(self) -> None:
        """Build every nearby campaign's reach now (a server's start or reload), not in the
        first ping to ask: for a campaign over many stores that takes a noticeable while."""
        self._all_reach()

    # --- by geofence -------------------------------------------------------------------------

    def on_fence(self, fence_id: str) -> OnFence:
        """The active campaigns targeting a geofence, by trigger (found once, then kept)."""
        found = self._on_fence.get(fence_id)
        if found is None:
            found = self._on_fence[fence_id] = self._find_on_fence(fence_id)
        return found

    def _find_on_fence(self, fence_id: str) -> OnFence:
        fence = self._places.geofence(fence_id)
        if fence is None:
            return _NO_CAMPAIGNS
        found: dict[str, Campaign] = {}  # what Campaign.targets_fence says, from the maps
        for c in itertools.chain(self._by_fence_id.get(fence.id, ()),
                                 self._by_store_id.get(fence.store_id, ())):
            found[c.id] = c
        if self._by_tag:
            store = self._places.find_store(fence.store_id)
            for tag in itertools.chain(fence.tags, store.tags if store else ()):
                for c in self._by_tag.get(tag, ()):
                    found[c.id] = c
        if not found:
            return _NO_CAMPAIGNS
        by_trigger: dict[str, list[Campaign]] = {}
        for cid in sorted(found):
            by_trigger.setdefault(found[cid].trigger, []).append(found[cid])
        dwell = by_trigger.get("dwell")
        return OnFence(by_trigger, min(c.dwell_s for c in dwell) if dwell else None)

    def dwell_thresholds(self, fence_ids: Iterable[str]) -> dict[str, float]:
        """Geofence id -> the shortest ``dwell_s`` a dwell campaign asks of it, for these."""
        out: dict[str, float] = {}
        if self.has_dwell:
            for fid in fence_ids:
                need = self.on_fence(fid).dwell_s
                if need is not None:
                    out[fid] = need
        return out

    # --- by reach ----------------------------------------------------------------------------

    def stores_targeted_by(self, campaign: Campaign) -> tuple[np.ndarray, StoreIndex | None]:
        """Positions of the stores a campaign targets (for ``nearby``) and an index over them
        (found once per campaign)."""
        found = self._targeted.get(campaign.id)
        if found is None:
            places = self._places
            ids = places.stores.ids
            if campaign.tags:  # a tag is on the store's details: look at every store
                pos = np.flatnonzero([campaign.targets_store(places.store(s)) for s in ids])
            else:  # by id alone: found in the sorted ids
                want = np.array(sorted(campaign.store_ids), dtype=object)
                at = np.searchsorted(ids, want) if len(ids) else np.zeros(0, dtype=np.int64)
                at = at[at < len(ids)]
                pos = np.unique(at[ids[at] == want[:len(at)]]) if len(at) else at
            index = StoreIndex(places.stores.lats[pos], places.stores.lons[pos]) if len(pos) else None
            found = self._targeted[campaign.id] = (pos, index)
        return found

    def reach_of(self, campaign: Campaign) -> BoxGrid:
        """A nearby campaign's reach: boxes around its stores covering its radius (made once)."""
        grid = self._reach.get(campaign.id)
        if grid is None:
            pos, _ = self.stores_targeted_by(campaign)
            stores = self._places.stores
            boxes, owners = [], []
            for p, la, lo in zip(pos.tolist(), stores.lats[pos].tolist(), stores.lons[pos].tolist(),
                                 strict=True):
                for b in lonlat_boxes(la, lo, campaign.radius_m):
                    boxes.append(b)
                    owners.append(p)
            grid = self._reach[campaign.id] = BoxGrid(np.array(boxes, dtype=float).reshape(-1, 4),
                                                     np.array(owners, dtype=np.int64))
        return grid

    def nearby_stores(self, campaign: Campaign, lat: float, lon: float) -> list[tuple[float, int]]:
        """(metres, store position) of the stores within a nearby campaign's radius, nearest
        first, ties by id."""
        radius = campaign.radius_m
        near = self.reach_of(campaign).query([(lon, lat, lon, lat)])
        if near is None:  # near a pole, or reaches too wide for the grid: the k-d tree
            pos, index = self.stores_targeted_by(campaign)
            if index is None:
                return []
            idx, dist = index.within(lat, lon, radius)
            return sorted(zip(dist.tolist(), pos[idx].tolist(), strict=True))
        stores, inv = self._places.stores, GEOD.inv
        la, lo = stores.lats, stores.lons
        found = [(inv(lon, lat, float(lo[p]), float(la[p]))[2], p) for p in near]
        return sorted(f for f in found if f[0] <= radius)

    def _all_reach(self) -> tuple[BoxGrid, list[int], list[int]]:
        """One grid of every nearby campaign's boxes; owner ``i`` is the pair (campaign
        ``campaign_of[i]`` in :attr:`nearby`, store position ``store_of[i]``). Made once."""
        if self._reach_all is None:
            stores = self._places.stores
            boxes, owners, campaign_of, store_of = [], [], [], []
            for k, c in enumerate(self.nearby):
                pos, _ = self.stores_targeted_by(c)
                for p, la, lo in zip(pos.tolist(), stores.lats[pos].tolist(),
                                     stores.lons[pos].tolist(), strict=True):
                    for b in lonlat_boxes(la, lo, c.radius_m):
                        boxes.append(b)
                        owners.append(len(store_of))
                    campaign_of.append(k)
                    store_of.append(p)
            self._reach_all = (BoxGrid(np.array(boxes, dtype=float).reshape(-1, 4),
                                       np.array(owners, dtype=np.int64)), campaign_of, store_of)
        return self._reach_all

    def nearby_reach(self, lat: float, lon: float) -> list[tuple[Campaign, list[tuple[float, int]]]]:
        """Each nearby campaign (in :attr:`nearby` order) with a targeted store within its radius,
        and those stores as :meth:`nearby_stores` gives them: one grid lookup for them all."""
        grid, campaign_of, store_of = self._all_reach()
        found = grid.query([(lon, lat, lon, lat)])
        if found is None:  # the grid declines (wide reaches, a pole): campaign by campaign
            out = [(c, self.nearby_stores(c, lat, lon)) for c in self.nearby]
            return [(c, near) for c, near in out if near]
        stores, inv = self._places.stores, GEOD.inv
        la, lo = stores.lats, stores.lons
        metres: dict[int, float] = {}
        by_campaign: dict[int, list[tuple[float, int]]] = {}
        for pair in found:
            k, p = campaign_of[pair], store_of[pair]
            d = metres.get(p)
            if d is None:
                d = metres[p] = inv(lon, lat, float(lo[p]), float(la[p]))[2]
            if d <= self.nearby[k].radius_m:
                by_campaign.setdefault(k, []).append((d, p))
        return [(self.nearby[k], sorted(by_campaign[k])) for k in sorted(by_campaign)]

    # --- candidates --------------------------------------------------------------------------

    def ping_candidates(self, events: list[Event], hits: Mapping[str, tuple[str, Confidence]],
                        lat: float, lon: float, accuracy_m: float,
                        nearest: StoreHit | None) -> list[Candidate]:
        """The campaigns a ping's events and position trigger, each at its store.

        An event's campaigns are those on its geofence with that trigger (a dwell campaign only
        once the visit has lasted its own ``dwell_s``); nearby campaigns are those with a
        targeted store within their radius, confidence high when the whole accuracy circle is.
        """
        out: list[Candidate] = []
        places = self._places
        for e in events:
            campaigns = self.on_fence(e.geofence_id).by_trigger.get(e.type)
            if not campaigns:
                continue
            store = places.find_store(e.store_id)
            if store is None:
                continue
            conf = e.confidence or (hits[e.geofence_id][1] if e.geofence_id in hits else Confidence.HIGH)
            dist = nearest.distance_m if nearest is not None and nearest.store_id == store.id else \
                distance_m(lat, lon, store.lat, store.lon)
            for c in campaigns:
                if e.type is EventType.DWELL and (e.duration_s or 0) < (c.dwell_s or 0):
                    continue
                out.append(Candidate(c, store, e.geofence_id, dist, conf))
        nearest_m = nearest.distance_m if nearest is not None else float("inf")
        if nearest_m <= self.nearby_reach_m:  # else no store is within any nearby radius
            for c, near in self.nearby_reach(lat, lon):
                for d, p in near:
                    conf = Confidence.HIGH if d + accuracy_m <= c.radius_m else Confidence.MEDIUM
                    out.append(Candidate(c, places.store(places.stores.ids[p]), None, d, conf))
        return out

    def place_candidates(self, fence_ids: Iterable[str], lat: float, lon: float,
                         nearby_hits: Iterable[tuple[Campaign, int, float]]) -> list[Candidate]:
        """The campaigns a single ping at a place would be offered (batch scoring): ``enter``
        campaigns on the geofences containing it, and nearby campaigns with a store in reach
        (``(campaign, store position, metres)``), all at confidence high."""
        out: list[Candidate] = []
        places = self._places
        for fid in fence_ids:
            fence = places.geofence(fid)
            store = places.find_store(fence.store_id) if fence is not None else None
            enters = self.on_fence(fid).by_trigger.get("enter") if store is not None else None
            if enters:
                d = distance_m(lat, lon, store.lat, store.lon)
                out += [Candidate(c, store, fid, d, Confidence.HIGH) for c in enters]
        for c, p, d in nearby_hits:
            out.append(Candidate(c, places.store(places.stores.ids[p]), None, d, Confidence.HIGH))
        return out
