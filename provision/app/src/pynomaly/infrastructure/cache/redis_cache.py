"""The guide's RedisCache (Caching Strategy), on a pool built from ProductionConfig.

Deviation: values are stored as JSON, not pickle, so that whoever can write to
Redis cannot run code in the app.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from redis import ConnectionPool, Redis
from redis.connection import parse_url
from src.pynomaly.infrastructure.config.production import ProductionConfig


def keepalive_options() -> dict[int, int]:
    """The guide's TCP_KEEP* names mapped to socket option numbers (what redis-py wants)."""
    return {getattr(socket, name): value for name, value in ProductionConfig.REDIS_SOCKET_KEEPALIVE_OPTIONS.items()}


def make_pool(url: str | None = None, db: int | None = None) -> ConnectionPool:
    """A pool with REDIS_MAX_CONNECTIONS and keepalive; db defaults to CACHE_REDIS_DB."""
    options = parse_url(url or ProductionConfig.get_redis_url())
    options["db"] = ProductionConfig.CACHE_REDIS_DB if db is None else db  # the URL's /0 must not win
    return ConnectionPool(
        max_connections=ProductionConfig.REDIS_MAX_CONNECTIONS,
        socket_keepalive=ProductionConfig.REDIS_SOCKET_KEEPALIVE,
        socket_keepalive_options=keepalive_options(),
        socket_connect_timeout=2,
        socket_timeout=2,
        **options,
    )


class RedisCache:
    """get/set/delete with the guide's default timeout; Redis errors read as a miss."""

    def __init__(self, redis_client: Redis):
        self.redis = redis_client
        self.default_timeout = ProductionConfig.CACHE_DEFAULT_TIMEOUT

    def get(self, key: str) -> Any | None:
        """Get value from cache"""
        try:
            value = self.redis.get(key)
            if value is None:
                return None
            return json.loads(value)
        except Exception:
            return None

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        """Set value in cache"""
        try:
            timeout = timeout or self.default_timeout
            return bool(self.redis.setex(key, timeout, json.dumps(value, default=str)))
        except Exception:
            return False

    def delete(self, key: str) -> bool:
        """Delete value from cache"""
        try:
            return self.redis.delete(key) > 0
        except Exception:
            return False

    def clear_pattern(self, pattern: str) -> int:
        """Clear all keys matching pattern"""
        try:
            keys = self.redis.keys(pattern)
            if keys:
                return self.redis.delete(*keys)
            return 0
        except Exception:
            return 0
