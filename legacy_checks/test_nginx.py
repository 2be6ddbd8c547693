"""Guide: Load Balancer & Reverse Proxy > NGINX Configuration - the effective configuration
(`nginx -T` over SSH, parsed with crossplane, includes resolved) and the live HTTPS endpoint
(security headers on every kind of response, gzip, redirect, static files, rate limits).

Configuration: one round trip per web host (audit.nginx.read, shared with test_tls.py).
Live: one HTTPS session to the public name (inventory: audit_public_url, audit_resolve,
audit_ca_bundle), each path fetched once per run.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from audit.evidence import attach, compare
from audit.http import public_session
from audit.marks import per_requirement
from audit.nginx import effective_config, header_values, parse_test, read

PLACEHOLDER = "your-domain.com"
STATIC_FILE = "/static/app.css"  # audit_settings.static_file overrides it
REJECTED = (429, 503)  # limit_req_status: NGINX's default is 503


# ---------------------------------------------------------------- helpers (unit-tested)

def with_domain(value: Any, domain: str | None) -> Any:
    """The guide's placeholder domain replaced by the deployment's public name."""
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, domain) if domain else value
    if isinstance(value, dict):
        return {k: with_domain(v, domain) for k, v in value.items()}
    if isinstance(value, list):
        return [with_domain(v, domain) for v in value]
    return value


def as_text(value: Any) -> str:
    return str(value).strip()


def limit_req_zones(http) -> dict[str, dict[str, str]]:
    """zone name -> {key, zone, size, rate} from `limit_req_zone KEY zone=NAME:SIZE rate=R`."""
    zones = {}
    for d in http.find("limit_req_zone"):
        info = {"key": d.args[0]}
        for arg in d.args[1:]:
            name, _, value = arg.partition("=")
            if name == "zone":
                info["zone"], _, info["size"] = value.partition(":")
            else:
                info[name] = value
        zones[info.get("zone", "?")] = info
    return zones


def limit_req(location) -> dict[str, Any] | None:
    """{zone, burst, nodelay} of a location's `limit_req` (None when it has none)."""
    d = location.first("limit_req") if location is not None else None
    if d is None:
        return None
    out: dict[str, Any] = {"nodelay": False}
    for arg in d.args:
        name, _, value = arg.partition("=")
        if name == "nodelay":
            out["nodelay"] = True
        elif name == "burst":
            out["burst"] = int(value)
        else:
            out[name] = value
    return out


def upstream_servers(upstream) -> list[dict[str, str]]:
    out = []
    for d in upstream.find("server") if upstream is not None else []:
        params = dict(a.partition("=")[::2] for a in d.args[1:])
        out.append({"address": d.args[0], **params})
    return out


def proxy_headers(location) -> dict[str, str]:
    return {d.args[0].lower(): " ".join(d.args[1:]) for d in location.find("proxy_set_header")} \
        if location is not None else {}


def listen_flags(server_block) -> list[list[str]]:
    return [d.args for d in server_block.find("listen")] if server_block is not None else []


def has_http2(server_block) -> bool:
    """`listen 443 ssl http2` (or NGINX >= 1.25.1's `http2 on`)."""
    listens = listen_flags(server_block)
    return any("http2" in args for args in listens) or (server_block.value("http2") == "on")


def log_format(http, name: str = "main") -> str | None:
    d = http.first("log_format", name)
    return re.sub(r"\s+", " ", "".join(d.args[1:])).strip() if d else None


def hsts_directives(value: str) -> dict[str, str]:
    """'max-age=31536000; includeSubDomains' -> {'max-age': '31536000', 'includesubdomains': ''}."""
    out = {}
    for part in value.split(";"):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = arg.strip().strip('"')
    return out


def header_is(value: str | None, expected: str, name: str = "") -> bool:
    """The header has the guide's value; for HSTS, at least the guide's max-age and all its flags
    (the issue: "max-age >= 31536000 with includeSubDomains"; preload may be added)."""
    if value is None:
        return False
    if name.lower() == "strict-transport-security":
        have, want = hsts_directives(value), hsts_directives(expected)
        try:
            longer = int(have.get("max-age", "-1")) >= int(want.get("max-age", "0"))
        except ValueError:
            return False
        return longer and all(k in have for k in want if k != "max-age")
    return value.strip().lower() == expected.strip().lower()


# ---------------------------------------------------------------- configuration checks

@pytest.mark.roles("web")
@pytest.mark.requirement("SCALE-NGINX-CONFIG-TEST")
def test_nginx_configuration_test_passes(server):
    """"sudo nginx -t" before "sudo systemctl reload nginx" (Scaling): the configuration is valid."""
    ok, output = parse_test(read(server)["test"])
    attach("nginx -t", output)
    assert ok, f"{server.name}: nginx -t fails: {output[-500:]}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-USER")
def test_nginx_user(server, expected):
    """"user www-data;" - and the worker processes run as that user."""
    conf = effective_config(server)
    user = (conf.root.first("user").args[0] if conf.root.first("user") else None)
    workers = [line.split(None, 1)[0] for line in read(server)["workers"].splitlines() if "worker process" in line]
    compare("user", {"config": user, "worker process users": sorted(set(workers))}, expected("NGINX-USER"))
    assert user == expected("NGINX-USER"), f"{server.name}: nginx.conf has user {user}"
    assert workers, f"{server.name}: no nginx worker process"
    assert set(workers) == {user}, f"{server.name}: worker processes run as {sorted(set(workers))}"


SCALARS = {  # requirement -> (block, directive); the ids are repeated literally on the check (the matrix reads them)
    "NGINX-WORKER-PROCESSES": ("main", "worker_processes"),
    "NGINX-WORKER-CONNECTIONS": ("events", "worker_connections"),
    "NGINX-EVENTS-EPOLL": ("events", "use"),
    "NGINX-MULTI-ACCEPT": ("events", "multi_accept"),
    "NGINX-KEEPALIVE-TIMEOUT": ("http", "keepalive_timeout"),
}


def _block(conf, name):
    return {"main": conf.root, "events": conf.events, "http": conf.http}[name]


@pytest.mark.roles("web")
@per_requirement("NGINX-WORKER-PROCESSES", "NGINX-WORKER-CONNECTIONS", "NGINX-EVENTS-EPOLL",
                 "NGINX-MULTI-ACCEPT", "NGINX-KEEPALIVE-TIMEOUT")
def test_nginx_directive(server, expected, req_id):
    """"worker_processes auto;", "worker_connections 1024; use epoll; multi_accept on;",
    "keepalive_timeout 65;"."""
    block, name = SCALARS[req_id]
    actual = _block(effective_config(server), block).value(name)
    compare(f"{block} {name}", actual, expected(req_id))
    assert actual == as_text(expected(req_id)), f"{server.name}: {name} is {actual}, guide: {expected(req_id)}"


@pytest.mark.roles("web")
@per_requirement("NGINX-SENDFILE-TCP", "NGINX-MIME-TYPES", "NGINX-GZIP")
def test_nginx_http_settings(server, expected, req_id):
    """"sendfile on; tcp_nopush on; tcp_nodelay on;", "include /etc/nginx/mime.types;
    default_type application/octet-stream; types_hash_max_size 2048;", "gzip on; gzip_vary on;
    gzip_proxied any; gzip_comp_level 6;"."""
    http = effective_config(server).http
    want = {k: as_text(v) for k, v in expected(req_id).items()}
    actual = {k: http.value(k) for k in want}
    compare("http block", actual, want)
    assert actual == want, f"{server.name}: {actual} differs from the guide's {want}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-GZIP-TYPES")
def test_nginx_gzip_types(server, expected):
    """"gzip_types text/plain text/css application/json application/javascript text/xml
    application/xml application/xml+rss text/javascript;"."""
    d = effective_config(server).http.first("gzip_types")
    actual = sorted(d.args) if d else []
    compare("gzip_types", actual, sorted(expected("NGINX-GZIP-TYPES")))
    assert actual == sorted(expected("NGINX-GZIP-TYPES")), f"{server.name}: gzip_types {actual}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-LOG-FORMAT-MAIN")
def test_nginx_log_format(server, expected):
    """"log_format main '$remote_addr - $remote_user [$time_local] "$request" ' ..."."""
    actual = log_format(effective_config(server).http)
    compare("log_format main", actual, expected("NGINX-LOG-FORMAT-MAIN"))
    assert actual == expected("NGINX-LOG-FORMAT-MAIN"), f"{server.name}: log_format main is {actual!r}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-LOGS")
def test_nginx_logs(server, expected):
    """"access_log /var/log/nginx/access.log main; error_log /var/log/nginx/error.log;" - and NGINX
    has both files open (they are being written)."""
    want = expected("NGINX-LOGS")
    http = effective_config(server).http
    access = http.first("access_log")
    error = http.first("error_log") or effective_config(server).root.first("error_log")
    actual = {"access_log": access.args[0] if access else None,
              "access_log_format": access.args[1] if access and len(access.args) > 1 else None,
              "error_log": error.args[0] if error else None}
    open_files = read(server)["log_fds"].split()
    compare("logs", {**actual, "open by nginx": open_files}, want)
    assert actual == want, f"{server.name}: {actual}, guide: {want}"
    missing = [p for p in (want["access_log"], want["error_log"]) if p not in open_files]
    assert not missing, f"{server.name}: nginx does not have {missing} open"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-UPSTREAM-LEAST-CONN")
def test_nginx_upstream_least_conn(server, expected):
    """"upstream pynomaly_backend { least_conn; ...}"."""
    upstream = effective_config(server).upstream("pynomaly_backend")
    methods = [d.name for d in (upstream.block if upstream else []) if d.name != "server"]
    compare("upstream pynomaly_backend", methods, expected("NGINX-UPSTREAM-LEAST-CONN"))
    assert upstream is not None, f"{server.name}: no upstream pynomaly_backend"
    assert expected("NGINX-UPSTREAM-LEAST-CONN") in methods, f"{server.name}: upstream balances with {methods}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-UPSTREAM-SERVERS")
def test_nginx_upstream_servers(server, expected, inventory):
    """"server 127.0.0.1:8000 max_fails=3 fail_timeout=30s;" (x3: 8000, 8001, 8002)."""
    want = expected("NGINX-UPSTREAM-SERVERS")
    count = inventory.setting("audit_app_instances") or len(want["servers"])
    servers = upstream_servers(effective_config(server).upstream(want["upstream"]))
    compare("upstream servers", servers, {**want, "count": count})
    assert len(servers) == count, f"{server.name}: {len(servers)} upstream servers, expected {count}"
    if count == len(want["servers"]):
        assert [s["address"] for s in servers] == want["servers"], f"{server.name}: {servers}"
    bad = [s for s in servers if s.get("max_fails") != str(want["max_fails"])
           or s.get("fail_timeout") != want["fail_timeout"]]
    assert not bad, f"{server.name}: without max_fails={want['max_fails']} fail_timeout={want['fail_timeout']}: {bad}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-HTTP-REDIRECT")
def test_nginx_port_80_redirects(server, expected):
    """"listen 80; ... return 301 https://$server_name$request_uri;"."""
    want = expected("NGINX-HTTP-REDIRECT")
    srv = effective_config(server).server_listening(want["listen"])
    ret = srv.first("return") if srv else None
    compare("port 80 server", ret.args if ret else None, [str(want["status"]), want["location"]])
    assert srv is not None, f"{server.name}: no server listens on {want['listen']}"
    assert ret is not None, f"{server.name}: the port 80 server has no return"
    assert ret.args == [str(want["status"]), want["location"]], f"{server.name}: port 80 server has {ret.text()}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-LISTEN-443-HTTP2")
def test_nginx_listen_443_ssl_http2(server):
    """"listen 443 ssl http2;"."""
    srv = effective_config(server).server_listening(443)
    listens = listen_flags(srv)
    compare("listen", listens, "443 ssl http2")
    assert srv is not None, f"{server.name}: no server listens on 443"
    assert any("ssl" in args for args in listens), f"{server.name}: listen {listens} (no ssl)"
    assert has_http2(srv), f"{server.name}: listen {listens} (no http2)"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-SERVER-NAME")
def test_nginx_server_name(server, expected, inventory):
    """"server_name your-domain.com;" in both server blocks (the deployment's public name)."""
    public = inventory.setting("audit_public_host")
    want = with_domain(expected("NGINX-SERVER-NAME"), public)
    conf = effective_config(server)
    names = {port: (conf.server_listening(port).value("server_name") if conf.server_listening(port) else None)
             for port in (80, 443)}
    compare("server_name", names, want)
    assert all(n is not None and want in n.split() for n in names.values()), f"{server.name}: {names}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-PROXY-HEADERS")
def test_nginx_proxy_headers(server, expected):
    """"proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr; proxy_set_header
    X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme;"."""
    want = expected("NGINX-PROXY-HEADERS")
    conf = effective_config(server)
    wants = {loc: want["headers"] for loc in want["locations"]} | {"/health": want["health_headers"]}
    actual = {loc: proxy_headers(conf.location(loc)) for loc in wants}
    compare("proxy_set_header", actual, wants)
    wrong = {loc: {h: actual[loc].get(h.lower()) for h, v in hs.items() if actual[loc].get(h.lower()) != v}
             for loc, hs in wants.items()}
    wrong = {k: v for k, v in wrong.items() if v}
    assert not wrong, f"{server.name}: proxy headers missing or different: {wrong}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-PROXY-TIMEOUTS")
def test_nginx_proxy_timeouts(server, expected):
    """"proxy_connect_timeout 30s; proxy_send_timeout 30s; proxy_read_timeout 30s;" in /api/."""
    loc = effective_config(server).location("/api/")
    want = expected("NGINX-PROXY-TIMEOUTS")
    actual = {k: loc.value(k) if loc else None for k in want}
    compare("location /api/ timeouts", actual, want)
    assert actual == want, f"{server.name}: {actual}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-HEALTH-NO-ACCESS-LOG")
def test_nginx_health_without_access_log(server, expected):
    """"location /health { access_log off; proxy_pass http://pynomaly_backend; ...}"."""
    want = expected("NGINX-HEALTH-NO-ACCESS-LOG")
    loc = effective_config(server).location(want["location"])
    actual = {"access_log": loc.value("access_log") if loc else None,
              "proxy_pass": loc.value("proxy_pass") if loc else None}
    compare(f"location {want['location']}", actual, want)
    assert loc is not None, f"{server.name}: no location {want['location']}"
    assert actual["access_log"] == want["access_log"], f"{server.name}: access_log {actual['access_log']}"
    assert actual["proxy_pass"], f"{server.name}: {want['location']} is not proxied"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-STATIC-FILES")
def test_nginx_static_location(server, expected):
    """"location /static/ { alias /opt/pynomaly/static/; expires 30d; add_header Cache-Control
    "public, immutable"; }"."""
    want = expected("NGINX-STATIC-FILES")
    loc = effective_config(server).location(want["location"])
    headers = header_values(loc, None, None)
    actual = {"location": want["location"] if loc else None, "alias": loc.value("alias") if loc else None,
              "expires": loc.value("expires") if loc else None, "cache_control": headers.get("cache-control")}
    compare(f"location {want['location']}", actual, want)
    assert actual == want, f"{server.name}: {actual}"


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-DOCS-PROXY")
def test_nginx_docs_location(server):
    """"location /docs { proxy_pass http://pynomaly_backend; ...}"."""
    loc = effective_config(server).location("/docs")
    actual = loc.value("proxy_pass") if loc else None
    compare("location /docs proxy_pass", actual, "http://pynomaly_backend")
    assert actual == "http://pynomaly_backend", f"{server.name}: /docs proxy_pass is {actual}"


@pytest.mark.roles("web")
@per_requirement("RATE-ZONE-API", "RATE-ZONE-LOGIN")
def test_rate_limit_zone(server, expected, req_id):
    """"limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;
    limit_req_zone $binary_remote_addr zone=login:10m rate=5r/m;"."""
    want = {k: as_text(v) for k, v in expected(req_id).items()}
    zones = limit_req_zones(effective_config(server).http)
    compare(f"limit_req_zone {want['zone']}", zones.get(want["zone"]), want)
    assert zones.get(want["zone"]) == want, f"{server.name}: zone {want['zone']} is {zones.get(want['zone'])}"


@pytest.mark.roles("web")
@per_requirement("RATE-API-LIMIT", "RATE-LOGIN-LIMIT")
def test_rate_limit_location(server, expected, req_id):
    """"location /api/ { limit_req zone=api burst=20 nodelay; ...}", "location /api/v1/auth/login
    { limit_req zone=login burst=3 nodelay; ...}"."""
    want = dict(expected(req_id))
    path = want.pop("location")
    actual = limit_req(effective_config(server).location(path))
    compare(f"location {path} limit_req", actual, want)
    assert actual == want, f"{server.name}: location {path} limit_req is {actual}, guide: {want}"


# ---------------------------------------------------------------- live checks over HTTPS

class Public:
    """The public endpoint, each path fetched once per run."""

    def __init__(self, inventory):
        self.url = (inventory.setting("audit_public_url") or "").rstrip("/")
        self.host = inventory.setting("audit_public_host")
        self.resolve = inventory.setting("audit_resolve") or {}
        self.ca = inventory.setting("audit_ca_bundle")
        self.session = public_session(self.resolve, self.ca)
        self.static = (inventory.setting("audit_settings") or {}).get("static_file", STATIC_FILE)
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, path: str, **kwargs):
        with self._lock:
            if path not in self._cache:
                self._cache[path] = self.session.get(self.url + path, allow_redirects=False, **kwargs)
            return self._cache[path]

    def http_url(self, path: str) -> str:
        return "http://" + self.url.split("://", 1)[1] + path


@pytest.fixture(scope="module")
def public(inventory):
    if not inventory.setting("audit_public_url"):
        pytest.skip("no audit_public_url in the inventory")
    endpoint = Public(inventory)
    yield endpoint
    endpoint.session.close()


def _kinds(public, paths: list[str], on_errors: bool) -> dict[str, str]:
    """response kind -> path; /static/ means the inventory's static file; 404 when on_errors."""
    kinds = {p: (public.static if p == "/static/" else p) for p in paths}
    if on_errors:
        kinds["404"] = f"/audit-missing-{uuid.uuid4().hex[:8]}"
    return kinds


_MISSING_PATHS: dict[bool, dict[str, str]] = {}


@per_requirement("HDR-HSTS", "HDR-X-FRAME-OPTIONS", "HDR-X-CONTENT-TYPE-OPTIONS", "HDR-X-XSS-PROTECTION",
                 "HDR-REFERRER-POLICY")
def test_security_header_on_every_response_kind(public, expected, req_id):
    """"add_header X-Frame-Options DENY always; add_header X-Content-Type-Options nosniff always;
    add_header X-XSS-Protection "1; mode=block" always; add_header Strict-Transport-Security
    "max-age=31536000; includeSubDomains" always; add_header Referrer-Policy
    "strict-origin-when-cross-origin" always;" - on an API response, /health, /docs, a static file
    (the add_header inheritance trap) and, for HSTS, an error response."""
    want = expected(req_id)
    kinds = _MISSING_PATHS.setdefault(bool(want["on_errors"]), _kinds(public, want["paths"], want["on_errors"]))
    seen = {}
    for kind, path in kinds.items():
        resp = public.get(path)
        seen[kind] = {"path": path, "status": resp.status_code, want["header"]: resp.headers.get(want["header"])}
    compare(want["header"], seen, want["value"])
    wrong = {k: v for k, v in seen.items() if not header_is(v[want["header"]], want["value"], want["header"])}
    assert not wrong, f"{public.host}: {want['header']} is not {want['value']!r} on {wrong}"


@pytest.mark.requirement("NGINX-GZIP")
def test_json_is_served_gzip_compressed(public):
    """"gzip on; gzip_vary on; ... gzip_types ... application/json": an API response is compressed."""
    resp = public.get("/api/v1/health", headers={"Accept-Encoding": "gzip"})
    seen = {k: resp.headers.get(k) for k in ("Content-Type", "Content-Encoding", "Vary")}
    compare("GET /api/v1/health (Accept-Encoding: gzip)", seen, {"Content-Encoding": "gzip",
                                                                   "Vary": "Accept-Encoding"})
    if resp.status_code != 200:  # an error page says nothing of how the API's JSON is served
        raise RuntimeError(f"{public.host}: /api/v1/health answered {resp.status_code}: no JSON to judge")
    assert seen["Content-Encoding"] == "gzip", f"{public.host}: JSON served without gzip: {seen}"
    assert "accept-encoding" in (seen["Vary"] or "").lower(), f"{public.host}: no Vary: Accept-Encoding"


@pytest.mark.requirement("NGINX-HTTP-REDIRECT")
def test_http_answers_301_to_https(public, expected):
    """"return 301 https://$server_name$request_uri;": http://host/some/path?q=1 -> 301."""
    path = "/audit/redirect?q=1"
    resp = public.session.get(public.http_url(path), allow_redirects=False)
    want = f"https://{public.host}{path}"
    compare("GET " + public.http_url(path), {"status": resp.status_code, "location": resp.headers.get("Location")},
            {"status": expected("NGINX-HTTP-REDIRECT")["status"], "location": want})
    assert resp.status_code == expected("NGINX-HTTP-REDIRECT")["status"], (
        f"{public.host}: port 80 answered {resp.status_code}")
    assert resp.headers.get("Location") == want, f"{public.host}: Location {resp.headers.get('Location')}"


@pytest.mark.requirement("NGINX-LISTEN-443-HTTP2")
def test_alpn_negotiates_http2(public, expected):
    """"listen 443 ssl http2;": a TLS client offering h2 and http/1.1 gets h2."""
    import socket
    import ssl

    from audit.http import address_for

    name, address, port = address_for(public.url, public.resolve)
    ctx = ssl.create_default_context(cafile=public.ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((address, port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        chosen = tls.selected_alpn_protocol()
    compare("ALPN", chosen, expected("NGINX-LISTEN-443-HTTP2")["alpn"])
    assert chosen == expected("NGINX-LISTEN-443-HTTP2")["alpn"], f"{public.host}: ALPN chose {chosen}"


@pytest.mark.requirement("NGINX-STATIC-FILES")
def test_static_file_is_cached_30_days(public, expected):
    """"expires 30d; add_header Cache-Control "public, immutable";" on a static file."""
    want = expected("NGINX-STATIC-FILES")
    resp = public.get(public.static)
    cache = resp.headers.get("Cache-Control", "")
    directives = [c.strip() for c in cache.split(",")]
    compare(f"GET {public.static}", {"status": resp.status_code, "Cache-Control": cache,
                                     "Expires": resp.headers.get("Expires")},
            {"Cache-Control": f"max-age=2592000 (30d), {want['cache_control']}"})
    assert resp.status_code == 200, f"{public.host}: {public.static} answered {resp.status_code}"
    assert "max-age=2592000" in directives, f"{public.host}: Cache-Control {cache!r} (expires 30d missing)"
    assert all(p.strip() in directives for p in want["cache_control"].split(",")), (
        f"{public.host}: Cache-Control {cache!r}")


@pytest.mark.requirement("NGINX-DOCS-PROXY")
def test_docs_answer(public, expected):
    """"location /docs { proxy_pass http://pynomaly_backend; }": the API documentation is served."""
    want = expected("NGINX-DOCS-PROXY")
    resp = public.get(want["path"])
    compare(f"GET {want['path']}", {"status": resp.status_code, "type": resp.headers.get("Content-Type")},
            want)
    assert resp.status_code == want["status"], f"{public.host}: {want['path']} answered {resp.status_code}"


# ---------------------------------------------------------------- rate limits (opt-in: -m burst)

API_BURST = 60          # requests, 8 in parallel: well beyond 10 r/s + burst 20
LOGIN_BURST = 8         # beyond 5 r/m + burst 3
BURST_SECONDS = 30      # hard bound of each burst check


def count_rejections(statuses: list[int]) -> int:
    return sum(1 for s in statuses if s in REJECTED)


def _fire(public, path: str, n: int, workers: int, deadline: float) -> list[int]:
    local = threading.local()

    def one(_):
        if time.monotonic() > deadline:
            return -1
        if not hasattr(local, "session"):
            local.session = public_session(public.resolve, public.ca)
        return local.session.get(public.url + path, allow_redirects=False).status_code

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.burst
@pytest.mark.requirement("RATE-API-LIMIT")
def test_api_rate_limit_is_enforced(public):
    """"limit_req zone=api burst=20 nodelay;": 10 requests at 5 r/s get no rejection, 60 fast
    requests get rejections (429/503). At most 70 requests and 30 s."""
    deadline = time.monotonic() + BURST_SECONDS
    time.sleep(2.5)  # let the zone drain (20 excess at 10 r/s)
    calm = []
    for _ in range(10):
        calm.append(public.session.get(public.url + "/api/v1/health", allow_redirects=False).status_code)
        time.sleep(0.2)
    burst = _fire(public, "/api/v1/health", API_BURST, 8, deadline)
    seen = {"within the limit (10 at 5 r/s)": calm, f"burst ({API_BURST}, 8 parallel)": burst,
            "requests sent": len(calm) + sum(1 for s in burst if s >= 0)}
    attach("rate limit /api/", seen, kind="json")
    assert count_rejections(calm) == 0, f"{public.host}: requests within the limit were rejected: {calm}"
    assert count_rejections(burst) > 0, f"{public.host}: no rejection in a burst of {API_BURST}: {burst}"


@pytest.mark.burst
@pytest.mark.requirement("RATE-LOGIN-LIMIT")
def test_login_rate_limit_is_enforced(public):
    """"limit_req zone=login burst=3 nodelay;": 8 fast requests to the login endpoint get
    rejections; 13 s later (one request regained at 5 r/m) one more is accepted. GET only (no
    credentials: nothing for fail2ban). At most 9 requests and 30 s."""
    path = "/api/v1/auth/login"
    deadline = time.monotonic() + BURST_SECONDS
    burst = _fire(public, path, LOGIN_BURST, 1, deadline)
    time.sleep(13)
    later = public.session.get(public.url + path, allow_redirects=False).status_code
    seen = {f"burst ({LOGIN_BURST})": burst, "13 s later": later, "requests sent": len(burst) + 1}
    attach("rate limit login", seen, kind="json")
    assert count_rejections(burst) > 0, f"{public.host}: no rejection in a burst of {LOGIN_BURST}: {burst}"
    assert later not in REJECTED, f"{public.host}: a request within the rate was rejected ({later})"
