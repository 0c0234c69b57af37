"""API keys: made once, stored hashed, and held in memory by a server (KeyCache)."""

from __future__ import annotations

import time

from geo_engine import Database, Settings
from geo_engine.apikeys import KeyCache, ensure_keys, key_kind, rotate_key


def test_the_cache_follows_keys_changed_by_another_process(db_path):
    server, other = Database(db_path), Database(db_path)  # two connections, as two processes
    ensure_keys(server.apikeys, Settings(admin_key="adm-1", publishable_key="pub-1"))
    cache = KeyCache(server.apikeys, check_s=3600)
    assert cache.kind("adm-1") == "admin" and cache.kind("pub-1") == "publishable"
    assert cache.kind("guess") is None and cache.kind("") is None
    new = rotate_key(other.apikeys, "publishable")
    assert key_kind(other.apikeys, "pub-1") is None  # retired in the database at once
    assert cache.kind(new) == "publishable"  # an unknown key makes the cache look again
    assert cache.kind("pub-1") is None  # and that look saw the old one go


def test_a_retired_key_stops_working_within_the_check_interval(db_path):
    server, other = Database(db_path), Database(db_path)
    ensure_keys(server.apikeys, Settings(admin_key="adm-1", publishable_key="pub-1"))
    cache = KeyCache(server.apikeys, check_s=0.2)
    assert cache.kind("pub-1") == "publishable"
    rotate_key(other.apikeys, "publishable")
    deadline = time.monotonic() + 5
    while cache.kind("pub-1") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert cache.kind("adm-1") == "admin"
