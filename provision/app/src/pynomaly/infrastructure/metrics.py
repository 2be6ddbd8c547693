"""Prometheus metrics: http_requests_total and http_request_duration_seconds.

With PROMETHEUS_MULTIPROC_DIR set (start_production.sh sets it), every gunicorn
worker writes its samples there and /metrics aggregates them.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.routing import Match

REQUESTS = Counter("http_requests_total", "HTTP requests.", ["method", "status", "handler"])
DURATION = Histogram("http_request_duration_seconds", "HTTP request duration in seconds.", ["method", "handler"])


def render() -> tuple[bytes, str]:
    """The exposition text, aggregated over workers in multiprocess mode."""
    if os.getenv("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _handler(app, scope) -> str:
    """The route's path template (bounded label values), or 'unmatched'."""
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unmatched")
    return "unmatched"


class MetricsMiddleware:
    """ASGI middleware that counts and times every HTTP request."""

    def __init__(self, app, fastapi_app=None):
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Match before the call: routing rewrites scope["path"] for mounts like /static.
        handler = _handler(self.fastapi_app, scope) if self.fastapi_app else scope["path"]
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = scope["method"]
            REQUESTS.labels(method=method, status=str(status["code"]), handler=handler).inc()
            DURATION.labels(method=method, handler=handler).observe(time.perf_counter() - start)
