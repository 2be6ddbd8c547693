"""How the load scenarios classify a response; no dependencies, so the locustfile (which runs
under Locust, with loadtests/ on its path) and the unit tests share it."""

from __future__ import annotations


def is_rate_limited(status: int, content_type: str, body: str) -> bool:
    """NGINX's own limit_req rejection (limit_req_status, 503 by default, or 429): an HTML page
    signed by nginx; the app's own 503 (database down) is JSON and stays a server error."""
    return status in (429, 503) and "text/html" in content_type and "nginx" in body.lower()
