"""The FastAPI app: health, login, an authenticated API call, docs and metrics.

Run as in the guide: ``gunicorn src.pynomaly.presentation.api.app:app`` from /app.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from redis import Redis
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from src.pynomaly.infrastructure import metrics
from src.pynomaly.infrastructure.cache.redis_cache import RedisCache, make_pool
from src.pynomaly.infrastructure.config.production import ProductionConfig
from src.pynomaly.infrastructure.config.settings import jwt_secret, log_level
from src.pynomaly.infrastructure.database import session as db
from src.pynomaly.infrastructure.database.models import AuditLog, User
from src.pynomaly.infrastructure.security.passwords import burn_time, verify_password
from src.pynomaly.infrastructure.security.tokens import create_access_token, decode_access_token

logging.basicConfig(level=log_level(), format=ProductionConfig.LOG_FORMAT)
log = logging.getLogger("pynomaly")
jwt_secret()  # fail at start, not at the first login, when JWT_SECRET is missing

STATIC_DIR = Path(__file__).resolve().parents[4] / "static"  # /app/static in the image
SWAGGER_DIR = STATIC_DIR / "swagger"

cache_redis = Redis(connection_pool=make_pool())  # CACHE_REDIS_DB, 50 connections, keepalive
cache = RedisCache(cache_redis)
bearer = HTTPBearer(auto_error=False)

app = FastAPI(title="Pynomaly", version="0.1.0", docs_url=None, redoc_url=None)
app.add_middleware(metrics.MetricsMiddleware, fastapi_app=app)
if STATIC_DIR.is_dir():
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


class LoginRequest(BaseModel):
    username: str
    password: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"


@app.exception_handler(OperationalError)
async def database_down(request: Request, exc: OperationalError) -> JSONResponse:
    """A lost database answers 503, not 500."""
    log.error("database error: %s", exc.__class__.__name__)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


def _health() -> JSONResponse:
    checks = {}
    try:
        db.ping()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not reachable"
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        cache_redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "error", "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


@app.get("/health")
def health() -> JSONResponse:
    """200 {"status": "ok"} when PostgreSQL and Redis answer, else 503."""
    return _health()


@app.get("/api/v1/health")
def api_health() -> JSONResponse:
    """Same as /health, under the API prefix."""
    return _health()


def _active_user(session, username: str) -> User | None:
    """The first active user whose login name (users.email) is username."""
    query = select(User).where(User.email == username, User.is_active.is_(True)).order_by(User.id)
    return session.execute(query).scalars().first()


@app.post("/api/v1/auth/login", response_model=TokenResponse)
def login(body: LoginRequest) -> TokenResponse:
    """Exchange username/password for a bearer JWT; every attempt is audited."""
    with db.SessionLocal() as session:
        user = _active_user(session, body.username)
        if user is None:
            burn_time(body.password)
            ok = False
        else:
            ok = verify_password(body.password, user.hashed_password)
        session.add(AuditLog(user_id=user.id if user else None, action="login" if ok else "login_failed"))
        session.commit()
    if not ok:
        raise HTTPException(status_code=401, detail="invalid credentials", headers={"WWW-Authenticate": "Bearer"})
    return TokenResponse(access_token=create_access_token(body.username))


def current_username(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:  # noqa: B008
    """The token's subject; 401 without a valid bearer token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status_code=401, detail="not authenticated", headers={"WWW-Authenticate": "Bearer"})
    try:
        return decode_access_token(credentials.credentials)["sub"]
    except jwt.InvalidTokenError as exc:
        raise HTTPException(status_code=401, detail="invalid token", headers={"WWW-Authenticate": "Bearer"}) from exc


@app.get("/api/v1/me")
def me(username: str = Depends(current_username)) -> dict:
    """The caller's user row, from Redis (db 1) when cached, else from PostgreSQL."""
    key = f"user:{username}"
    cached = cache.get(key)
    if cached is not None:
        return {**cached, "cached": True}
    with db.SessionLocal() as session:
        user = _active_user(session, username)
    if user is None:
        raise HTTPException(status_code=401, detail="unknown user", headers={"WWW-Authenticate": "Bearer"})
    data = {
        "id": user.id,
        "username": user.email,
        "is_active": user.is_active,
        "created_at": user.created_at.isoformat(),
    }
    cache.set(key, data)
    return {**data, "cached": False}


@app.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    """Prometheus exposition, aggregated over the gunicorn workers."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@app.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    """Swagger UI from /static/swagger (no CDN); a plain page when the assets are absent."""
    if (SWAGGER_DIR / "swagger-ui-bundle.js").is_file():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="Pynomaly API - Swagger UI",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )
    rows = "".join(
        f"<li><code>{', '.join(sorted(route.methods))} {route.path}</code></li>"
        for route in app.routes
        if getattr(route, "include_in_schema", False)
    )
    return HTMLResponse(
        f"<!doctype html><title>Pynomaly API</title><h1>Pynomaly API</h1>"
        f"<p>OpenAPI: <a href='{app.openapi_url}'>{app.openapi_url}</a></p><ul>{rows}</ul>"
    )
