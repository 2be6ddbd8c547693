"""JWT access tokens: HS256 with JWT_SECRET, lifetime from ProductionConfig."""

from __future__ import annotations

import time

import jwt
from src.pynomaly.infrastructure.config.production import ProductionConfig
from src.pynomaly.infrastructure.config.settings import jwt_secret


def token_lifetime_seconds() -> int:
    """JWT_ACCESS_TOKEN_EXPIRE_MINUTES in seconds (1800)."""
    return ProductionConfig.JWT_ACCESS_TOKEN_EXPIRE_MINUTES * 60


def create_access_token(subject: str, now: int | None = None) -> str:
    """A signed token for subject with iat=now and exp=now+lifetime."""
    issued = int(time.time()) if now is None else now
    claims = {"sub": subject, "iat": issued, "exp": issued + token_lifetime_seconds(), "type": "access"}
    return jwt.encode(claims, jwt_secret(), algorithm=ProductionConfig.JWT_ALGORITHM)


def decode_access_token(token: str) -> dict:
    """The claims of a valid, unexpired access token; raises jwt.InvalidTokenError."""
    claims = jwt.decode(
        token,
        jwt_secret(),
        algorithms=[ProductionConfig.JWT_ALGORITHM],
        options={"require": ["sub", "iat", "exp"]},
    )
    if claims.get("type") != "access":
        raise jwt.InvalidTokenError("not an access token")
    return claims
