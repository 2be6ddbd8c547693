"""HTTP to the deployment's public name with an address override (like `curl --resolve`).

The audit reaches `https://pynomaly.test` at the inventory's address for that name, with the
name in SNI, certificate verification and the Host header, and never edits /etc/hosts.
"""

from __future__ import annotations

from urllib.parse import urlparse, urlunparse

import requests
from requests.adapters import HTTPAdapter

TIMEOUT = (5, 15)  # connect, read


class ResolveAdapter(HTTPAdapter):
    """Send requests for a name to a fixed address, keeping the name for TLS and Host."""

    def __init__(self, resolve: dict[str, str], **kwargs):
        self.resolve = dict(resolve or {})
        super().__init__(**kwargs)

    def send(self, request, **kwargs):
        parsed = urlparse(request.url)
        address = self.resolve.get(parsed.hostname or "")
        if address:
            netloc = address + (f":{parsed.port}" if parsed.port else "")
            request.url = urlunparse(parsed._replace(netloc=netloc))
            request.headers["Host"] = parsed.netloc
            pool_kw = self.poolmanager.connection_pool_kw
            pool_kw["server_hostname"] = parsed.hostname
            pool_kw["assert_hostname"] = parsed.hostname
        kwargs.setdefault("timeout", TIMEOUT)
        return super().send(request, **kwargs)


def public_session(resolve: dict[str, str] | None, ca_bundle: str | None) -> requests.Session:
    """A requests session for the public endpoint: address override, CA bundle, timeouts."""
    session = requests.Session()
    adapter = ResolveAdapter(resolve or {})
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if ca_bundle:
        session.verify = ca_bundle
    # REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE and proxy variables would override the inventory's CA
    # bundle and send loopback traffic elsewhere: the environment does not apply here.
    session.trust_env = False
    session.headers["User-Agent"] = "pynomaly-audit"
    return session

