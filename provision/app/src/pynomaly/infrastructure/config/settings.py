"""Values the app reads besides ProductionConfig: secrets, log level, redaction."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from src.pynomaly.infrastructure.config.production import ProductionConfig

config = ProductionConfig


def jwt_secret() -> str:
    """The HS256 signing key: JWT_SECRET (the guide's env name), else SECRET_KEY."""
    secret = os.getenv("JWT_SECRET") or config.SECRET_KEY
    if not secret:
        raise RuntimeError("JWT_SECRET is not set")
    return secret


def log_level() -> str:
    """LOG_LEVEL from the environment (.env.production sets it), else the class value."""
    return os.getenv("LOG_LEVEL", config.LOG_LEVEL).upper()


def environment() -> str:
    """ENVIRONMENT, e.g. production."""
    return os.getenv("ENVIRONMENT", "production")


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
