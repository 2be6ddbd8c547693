"""Guide: Load Balancer & Reverse Proxy > NGINX Configuration - the configuration of each web
host and the live HTTPS endpoint (security headers on every kind of response, gzip, redirect,
HTTP/2, static files, rate limits). What is read, and how: audit/probes/nginx.py.

The single-value directives (user, worker_processes, events, keepalive_timeout, sendfile/tcp_*,
mime types, gzip, gzip_types, log_format main, the /api/ proxy timeouts) are catalogue rows
judged by checks/values.py.

Every value read from the configuration is judged on disk and as NGINX runs it (`nginx.both`):
the same value while no file changed since the master last (re)loaded them; a file changed after
that is a pending reload (both times in the evidence), judged on disk only, while the checks of
the live endpoint below keep judging what NGINX serves.
"""

from __future__ import annotations

import pytest

from audit import evidence
from audit.marks import per_requirement
from audit.outcomes import CouldNotAudit
from audit.probes import nginx as probe

# ---------------------------------------------------------------- configuration


@pytest.mark.roles("web")
@pytest.mark.requirement("SCALE-NGINX-CONFIG-TEST")
def check_configuration_test_passes(judge, nginx):
    """"sudo nginx -t" before "sudo systemctl reload nginx" (Scaling): the configuration is valid."""
    judge.that(nginx.test_ok, what="nginx -t", found=nginx.test_output[-500:] or "no output",
               expected="syntax is ok, test is successful")


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-LOGS")
def check_logs(judge, nginx):
    """"access_log /var/log/nginx/access.log main; error_log /var/log/nginx/error.log;" - and NGINX
    has both files open (they are being written)."""
    want = judge.expected
    access = nginx.config.http.first("access_log")
    error = nginx.config.http.first("error_log") or nginx.config.root.first("error_log")
    judge.sides(nginx.both({"access_log": access.args[0] if access else None,
                            "access_log_format": access.args[1] if access and len(access.args) > 1 else None,
                            "error_log": error.args[0] if error else None}), lambda logs: logs == want, what="logs")
    judge.each({p: p in nginx.log_files for p in (want["access_log"], want["error_log"])}, bool,
               what="log file open by NGINX", expected="open", where="/proc/<nginx>/fd")


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-UPSTREAM-LEAST-CONN")
def check_upstream_least_conn(judge, nginx):
    """"upstream pynomaly_backend { least_conn; ...}"."""
    upstream = nginx.config.upstream("pynomaly_backend")
    methods = [d.name for d in upstream.block or []] if upstream else []
    shown = [m for m in methods if m != "server"] or ("round robin (no method)" if upstream else None)
    judge.sides(nginx.both(shown, methods if upstream else None), lambda found: judge.expected in found,
                what="balancing of upstream pynomaly_backend")


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-UPSTREAM-SERVERS")
def check_upstream_servers(judge, nginx, inventory):
    """"server 127.0.0.1:8000 max_fails=3 fail_timeout=30s;" (x3: 8000, 8001, 8002)."""
    want = judge.expected
    count = inventory.setting("audit_app_instances") or len(want["servers"])
    params = probe.text({k: want[k] for k in ("max_fails", "fail_timeout")})
    servers = {s["address"]: {k: s.get(k) for k in params}
               for s in probe.upstream_servers(nginx.config.upstream(want["upstream"]))}

    def as_guide(found: dict) -> bool:
        addresses = list(found) == want["servers"] if count == len(want["servers"]) else len(found) == count
        return addresses and all(p == params for p in found.values())

    judge.sides(nginx.both(servers), as_guide, what=f"servers of upstream {want['upstream']}",
                expected=f"{count} servers" + (f" {want['servers']}" if count == len(want["servers"]) else "")
                + f", each max_fails={want['max_fails']} fail_timeout={want['fail_timeout']}")


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-HTTP-REDIRECT")
def check_port_80_redirects(judge, nginx):
    """"listen 80; ... return 301 https://$server_name$request_uri;"."""
    want = judge.expected
    srv = nginx.config.server_listening(want["listen"])
    ret = srv.first("return") if srv else None
    expected = [str(want["status"]), want["location"]]
    judge.sides(nginx.both(ret.args if ret else None), lambda args: args == expected,
                what=f"return of the server listening on {want['listen']}", expected=expected)


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-LISTEN-443-HTTP2")
def check_listen_443_ssl_http2(judge, nginx):
    """"listen 443 ssl http2;"."""
    listens = probe.listen_flags(nginx.https)
    flags = {"ssl": any("ssl" in args for args in listens), "http2": probe.has_http2(nginx.https)}
    judge.sides(nginx.both(listens, flags if listens else None), lambda found: found["ssl"] and found["http2"],
                what="listen", expected=judge.expected["listen"])


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-SERVER-NAME")
def check_server_name(judge, nginx):
    """"server_name your-domain.com;" in both server blocks (the deployment's public name)."""
    want = probe.with_domain(judge.expected, nginx.public_host)
    names = {port: srv.value("server_name") if (srv := nginx.config.server_listening(port)) else None
             for port in (80, 443)}
    judge.sides(nginx.both(names), lambda found: all(n is not None and want in n.split() for n in found.values()),
                what="server_name of the servers listening on 80 and 443", expected=want)


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-PROXY-HEADERS")
def check_proxy_headers(judge, nginx):
    """"proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr; proxy_set_header
    X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme;"."""
    want = judge.expected
    wants = {loc: want["headers"] for loc in want["locations"]} | {"/health": want["health_headers"]}
    seen = {loc: probe.proxy_headers(nginx.config.location(loc)) for loc in wants}
    wrong = {loc: {h: seen[loc].get(h.lower()) for h, v in hs.items() if seen[loc].get(h.lower()) != v}
             for loc, hs in wants.items()}
    judge.sides(nginx.both({loc: w for loc, w in wrong.items() if w} or seen, seen),
                lambda found: all(found[loc].get(h.lower()) == v for loc, hs in wants.items() for h, v in hs.items()),
                what="proxy_set_header (missing or different)", expected=wants)


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-HEALTH-NO-ACCESS-LOG")
def check_health_without_access_log(judge, nginx):
    """"location /health { access_log off; proxy_pass http://pynomaly_backend; ...}"."""
    want = judge.expected
    loc = nginx.config.location(want["location"])
    found = {"access_log": loc.value("access_log"), "proxy_pass": loc.value("proxy_pass")} if loc else None
    judge.sides(nginx.both(found), lambda f: f["access_log"] == want["access_log"] and bool(f["proxy_pass"]),
                what=f"location {want['location']}", expected={"access_log": want["access_log"],
                                                                "proxy_pass": "the backend"})


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-STATIC-FILES")
def check_static_location(judge, nginx):
    """"location /static/ { alias /opt/pynomaly/static/; expires 30d; add_header Cache-Control
    "public, immutable"; }"."""
    want = judge.expected
    loc = nginx.config.location(want["location"])
    judge.sides(nginx.both({"location": want["location"], "alias": loc.value("alias"), "expires": loc.value("expires"),
                            "cache_control": probe.header_values(loc, None, None).get("cache-control")}
                           if loc else None), lambda found: found == want, what=f"location {want['location']}")


@pytest.mark.roles("web")
@pytest.mark.requirement("NGINX-DOCS-PROXY")
def check_docs_location(judge, nginx):
    """"location /docs { proxy_pass http://pynomaly_backend; ...}"."""
    loc = nginx.config.location("/docs")
    judge.sides(nginx.both(loc.value("proxy_pass") if loc else None), lambda found: found == "http://pynomaly_backend",
                what="location /docs proxy_pass", expected="http://pynomaly_backend")


@pytest.mark.roles("web")
@per_requirement("RATE-ZONE-API", "RATE-ZONE-LOGIN")
def check_rate_limit_zone(judge, nginx, req_id):
    """"limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;
    limit_req_zone $binary_remote_addr zone=login:10m rate=5r/m;"."""
    want = probe.text(judge.expected)
    judge.sides(nginx.both(probe.limit_req_zones(nginx.config.http).get(want["zone"])), lambda zone: zone == want,
                what=f"limit_req_zone {want['zone']}", expected=want)


@pytest.mark.roles("web")
@per_requirement("RATE-API-LIMIT", "RATE-LOGIN-LIMIT")
def check_rate_limit_location(judge, nginx, req_id):
    """"location /api/ { limit_req zone=api burst=20 nodelay; ...}", "location /api/v1/auth/login
    { limit_req zone=login burst=3 nodelay; ...}"."""
    want = dict(judge.expected)
    path = want.pop("location")
    judge.sides(nginx.both(probe.limit_req(nginx.config.location(path))), lambda found: found == want,
                what=f"location {path} limit_req", expected=want)


# ---------------------------------------------------------------- the live endpoint


@per_requirement("HDR-HSTS", "HDR-X-FRAME-OPTIONS", "HDR-X-CONTENT-TYPE-OPTIONS", "HDR-X-XSS-PROTECTION",
                 "HDR-REFERRER-POLICY")
def check_security_header_on_every_response_kind(judge, public_endpoint, req_id):
    """"add_header X-Frame-Options DENY always; add_header X-Content-Type-Options nosniff always;
    add_header X-XSS-Protection "1; mode=block" always; add_header Strict-Transport-Security
    "max-age=31536000; includeSubDomains" always; add_header Referrer-Policy
    "strict-origin-when-cross-origin" always;" - on an API response, /health, /docs, a static file
    (the add_header inheritance trap) and, for HSTS, an error response."""
    want, seen = judge.expected, {}
    for kind, path in public_endpoint.kinds(want["paths"], want["on_errors"]).items():
        answer = public_endpoint.answer(path)
        seen[kind if kind == path else f"{kind} ({path})"] = {"status": answer.status,
                                                             want["header"]: answer.header(want["header"])}
    judge.each(seen, lambda s: probe.header_is(s[want["header"]], want["value"], want["header"]),
               what=f"{want['header']} on each response kind", expected=want["value"])


@pytest.mark.requirement("NGINX-GZIP")
def check_json_is_served_gzip_compressed(judge, public_endpoint):
    """"gzip on; gzip_vary on; ... gzip_types ... application/json": an API response is compressed."""
    answer = public_endpoint.answer("/api/v1/health")
    seen = {k: answer.header(k) for k in ("Content-Type", "Content-Encoding", "Vary")}
    if answer.status != 200:  # an error page says nothing of how the API's JSON is served
        raise CouldNotAudit(None, f"the public endpoint {answer.url}", f"answered {answer.status}: no JSON to judge")
    judge.that(seen["Content-Encoding"] == "gzip" and "accept-encoding" in (seen["Vary"] or "").lower(),
               what="GET /api/v1/health (Accept-Encoding: gzip)", found=seen,
               expected={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})


@pytest.mark.requirement("NGINX-HTTP-REDIRECT")
def check_http_answers_301_to_https(judge, public_endpoint):
    """"return 301 https://$server_name$request_uri;": http://host/some/path?q=1 -> 301."""
    answer = public_endpoint.answer(probe.REDIRECT)
    path = probe.REDIRECT[len("http:"):]
    judge.equal({"status": answer.status, "location": answer.header("Location")}, what=f"GET {answer.url}",
                expected={"status": judge.expected["status"], "location": f"https://{public_endpoint.host}{path}"})


@pytest.mark.requirement("NGINX-LISTEN-443-HTTP2")
def check_alpn_negotiates_http2(judge, public_endpoint):
    """"listen 443 ssl http2;": a TLS client offering h2 and http/1.1 gets h2."""
    answer = public_endpoint.answer(probe.ALPN)
    judge.equal(answer.header(probe.ALPN), what="protocol chosen by ALPN", expected=judge.expected["alpn"],
                where=answer.url)


@pytest.mark.requirement("NGINX-STATIC-FILES")
def check_static_file_is_cached_30_days(judge, public_endpoint):
    """"expires 30d; add_header Cache-Control "public, immutable";" on a static file."""
    answer = public_endpoint.answer(public_endpoint.static_file)
    cache = answer.header("Cache-Control") or ""
    directives = [c.strip() for c in cache.split(",")]
    judge.that(answer.status == 200 and "max-age=2592000" in directives
               and all(p.strip() in directives for p in judge.expected["cache_control"].split(",")),
               what=f"GET {public_endpoint.static_file}", where=answer.url,
               found={"status": answer.status, "Cache-Control": cache, "Expires": answer.header("Expires")},
               expected={"status": 200, "Cache-Control": f"max-age=2592000 (30d), {judge.expected['cache_control']}"})


@pytest.mark.requirement("NGINX-DOCS-PROXY")
def check_docs_answer(judge, public_endpoint):
    """"location /docs { proxy_pass http://pynomaly_backend; }": the API documentation is served."""
    want = judge.expected
    answer = public_endpoint.answer(want["path"])
    judge.equal(answer.status, what=f"GET {want['path']}", expected=want["status"], where=answer.url)


# ---------------------------------------------------------------- rate limits (opt-in: --opt-in=burst)
# One measurement of both zones (audit/probes/nginx.py, `rate_limits`), judged twice per zone: the
# accepted burst (the location's limit_req) and the refill rate (the zone's limit_req_zone).


def _zone_found(zone) -> dict:
    """The measurement's answers as evidence (attached before anything is judged); its cost."""
    what = f"zone {zone.plan.zone}: GET {zone.plan.path}, each answer [sent, received (s), status]"
    evidence.attach(what, [[a.sent, a.received, a.status] for a in zone.answers], kind="json")
    for answers in zone.discarded:  # the other attempt (audit/probes/nginx.py: measured)
        evidence.attach(f"{what}, the other attempt", [[a.sent, a.received, a.status] for a in answers], kind="json")
    return {"accepted before the first rejection": zone.accepted_first, **zone.cost()}


@pytest.mark.burst
@per_requirement("RATE-API-LIMIT", "RATE-LOGIN-LIMIT")
def check_rate_limit_burst_is_enforced(judge, rate_limits, req_id):
    """"limit_req zone=api burst=20 nodelay;", "limit_req zone=login burst=3 nodelay;" as NGINX
    enforces them: from an empty zone, back-to-back GETs get 1 + burst accepted at once before the
    first rejection (more only as slots come back meanwhile, at the refill measured with them)."""
    want = judge.expected
    zone = rate_limits.zone(want["zone"])
    found = _zone_found(zone)
    found |= {"bursts that fit the answers": zone.bursts(), "refill that fits them": zone.rates()}
    judge.that(zone.burst_is(want["burst"]), what=f"burst of zone {want['zone']} (GET {zone.plan.path})",
               found=found, where=zone.url,
               expected={"burst": want["burst"], "accepted at once from an empty zone": want["burst"] + 1})


@pytest.mark.burst
@per_requirement("RATE-ZONE-API", "RATE-ZONE-LOGIN")
def check_rate_limit_refill_is_enforced(judge, rate_limits, req_id):
    """"limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;", "... zone=login:10m
    rate=5r/m;" as NGINX enforces them: once the burst is spent, a slot comes back every 1/rate
    (polled from half a slot's time to 1.25 times the watched slots' time: the rejections just
    under the rate and the acceptances just over it bound it)."""
    want = judge.expected
    zone = rate_limits.zone(want["zone"])
    found = _zone_found(zone)
    found |= {"refill that fits the answers": zone.rates(), "bursts that fit them": zone.bursts()}
    judge.that(zone.rate_is(probe.nginx_rate(want["rate"])), what=f"refill of zone {want['zone']} "
               f"(GET {zone.plan.path})", found=found, expected=f"rate={want['rate']}", where=zone.url)
