"""Print the effective, non-secret configuration as JSON.

Usage (in the container): ``python3 -m src.pynomaly.infrastructure.config.dump``.
Values are read back from the objects the app builds (engine pool, Redis pool),
not only from ProductionConfig; passwords and keys are never printed.
"""

from __future__ import annotations

import json
import os
import socket

from src.pynomaly.infrastructure.config.production import ProductionConfig
from src.pynomaly.infrastructure.config.settings import environment, log_level, redact_url


def effective() -> dict:
    """The effective values, secrets redacted."""
    from src.pynomaly.infrastructure.cache.redis_cache import make_pool
    from src.pynomaly.infrastructure.database.session import make_engine

    engine = make_engine()
    pool = engine.pool
    redis_pool = make_pool()
    kwargs = redis_pool.connection_kwargs
    keepalive = {
        name: value
        for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")
        for option, value in (kwargs.get("socket_keepalive_options") or {}).items()
        if option == getattr(socket, name)
    }
    return {
        "environment": environment(),
        "database": {
            "url": engine.url.render_as_string(hide_password=True),
            "pool_size": pool.size(),
            "max_overflow": pool._max_overflow,
            "pool_timeout": pool._timeout,
            "pool_recycle": pool._recycle,
        },
        "redis": {
            "url": redact_url(ProductionConfig.get_redis_url()),
            "cache_db": kwargs.get("db"),
            "max_connections": redis_pool.max_connections,
            "socket_keepalive": kwargs.get("socket_keepalive"),
            "socket_keepalive_options": keepalive,
            "cache_default_timeout": ProductionConfig.CACHE_DEFAULT_TIMEOUT,
            "rate_limit_storage_url": redact_url(ProductionConfig.RATE_LIMIT_STORAGE_URL),
        },
        "jwt": {
            "algorithm": ProductionConfig.JWT_ALGORITHM,
            "access_token_expire_minutes": ProductionConfig.JWT_ACCESS_TOKEN_EXPIRE_MINUTES,
            "secret_set": bool(os.getenv("JWT_SECRET") or ProductionConfig.SECRET_KEY),
        },
        "logging": {"level": log_level(), "format": ProductionConfig.LOG_FORMAT},
        "prometheus_multiproc_dir": os.getenv("PROMETHEUS_MULTIPROC_DIR"),
    }


if __name__ == "__main__":
    print(json.dumps(effective(), indent=2, sort_keys=True))
