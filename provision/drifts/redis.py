"""Redis drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import Drift

DRIFTS: tuple[Drift, ...] = (
    Drift("redis-eviction-policy", ("REDIS-MAXMEMORY-POLICY",),
          "cache1: CONFIG SET maxmemory-policy noeviction on 6379 (guide: allkeys-lru)",
          lambda c: c.redis("cache1", 6379, "config set maxmemory-policy noeviction"),
          lambda c: c.redis("cache1", 6379, "config set maxmemory-policy allkeys-lru")),
)
