"""NGINX parsing (audit/probes/nginx.py) on captured `nginx -T`, process and response output,
both directions."""

from __future__ import annotations

import pytest

from audit.judge import ON_DISK, RUNNING
from audit.outcomes import CouldNotAudit
from audit.probes.nginx import (
    Answer,
    NginxFacts,
    PublicFacts,
    changed_since,
    has_http2,
    header_is,
    header_kinds,
    header_values,
    limit_req,
    limit_req_zones,
    listen_flags,
    parse_dump,
    parse_test,
    proxy_headers,
    split_dump,
    text,
    upstream_servers,
    with_domain,
    workers,
)

# `nginx -T` on the reference web1 (trimmed: mime.types shortened, stub_status server dropped)
DUMP = r"""nginx: the configuration file /etc/nginx/nginx.conf syntax is ok
# configuration file /etc/nginx/nginx.conf:
user www-data;
worker_processes auto;
pid /run/nginx.pid;

events {
    worker_connections 1024;
    use epoll;
    multi_accept on;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log /var/log/nginx/access.log main;
    error_log /var/log/nginx/error.log;
    sendfile on;
    keepalive_timeout 65;
    types_hash_max_size 2048;
    add_header X-Frame-Options DENY;
    gzip on;
    gzip_types text/plain application/json;
    limit_req_zone $binary_remote_addr zone=api:10m rate=10r/s;
    limit_req_zone $binary_remote_addr zone=login:10m rate=5r/m;
    upstream pynomaly_backend {
        least_conn;
        server 127.0.0.1:8000 max_fails=3 fail_timeout=30s;
        server 127.0.0.1:8001 max_fails=3 fail_timeout=30s;
        server 127.0.0.1:8002 max_fails=1 fail_timeout=30s;
    }
    server {
        listen 80;
        server_name pynomaly.test;
        return 301 https://$server_name$request_uri;
    }
    server {
        listen 443 ssl http2;
        server_name pynomaly.test;
        ssl_protocols TLSv1.2 TLSv1.3;
        add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
        add_header Referrer-Policy "strict-origin-when-cross-origin" always;
        location /api/ {
            limit_req zone=api burst=20 nodelay;
            proxy_pass http://pynomaly_backend;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_read_timeout 30s;
        }
        location /api/v1/auth/login {
            limit_req zone=login burst=3;
            proxy_pass http://pynomaly_backend;
        }
        location /static/ {
            alias /opt/pynomaly/static/;
            expires 30d;
            add_header Cache-Control "public, immutable";
        }
        location /docs {
            proxy_pass http://pynomaly_backend;
        }
    }
}

# configuration file /etc/nginx/mime.types:

types {
    text/html                             html htm shtml;
    application/json                      json;
}

nginx: the configuration file /etc/nginx/nginx.conf test is successful
"""


@pytest.fixture(scope="module")
def conf():
    return parse_dump(DUMP)


def test_dump_is_split_per_file():
    files = split_dump(DUMP)
    assert list(files) == ["/etc/nginx/nginx.conf", "/etc/nginx/mime.types"]
    assert "types {" in files["/etc/nginx/mime.types"]


def test_includes_are_resolved_and_kept(conf):
    assert conf.errors == []
    assert conf.http.value("include") == "/etc/nginx/mime.types"
    types = conf.http.first("types")
    assert types is not None
    assert types.file == "/etc/nginx/mime.types"
    assert [d.name for d in types.block] == ["text/html", "application/json"]


def test_main_events_and_http_directives(conf):
    assert conf.root.value("worker_processes") == "auto"
    assert conf.events.value("worker_connections") == "1024"
    assert conf.events.value("use") == "epoll"
    assert conf.http.value("keepalive_timeout") == "65"
    assert conf.http.value("tcp_nopush") is None  # missing -> None, not compliant


def test_servers_and_locations(conf):
    assert conf.server_listening(80).first("return").args == ["301", "https://$server_name$request_uri"]
    assert conf.server_listening(8080) is None
    assert has_http2(conf.server_listening(443))
    assert listen_flags(conf.server_listening(80)) == [["80"]]
    assert not has_http2(conf.server_listening(80))
    assert conf.location("/docs").value("proxy_pass") == "http://pynomaly_backend"
    assert conf.location("/health") is None


def test_log_format_joins_the_quoted_parts(conf):
    assert _facts(conf).read("http: log_format main") == (
        '$remote_addr - $remote_user [$time_local] "$request" $status '
        '$body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for"')


def test_rate_limit_zones_and_locations(conf):
    zones = limit_req_zones(conf.http)
    assert zones["api"] == {"key": "$binary_remote_addr", "zone": "api", "size": "10m", "rate": "10r/s"}
    assert zones["login"]["rate"] == "5r/m"
    assert limit_req(conf.location("/api/")) == {"zone": "api", "burst": 20, "nodelay": True}
    # non-compliant: the login location lacks nodelay
    assert limit_req(conf.location("/api/v1/auth/login")) == {"zone": "login", "burst": 3, "nodelay": False}
    assert limit_req(conf.location("/docs")) is None


def test_upstream_servers_with_parameters(conf):
    servers = upstream_servers(conf.upstream("pynomaly_backend"))
    assert [s["address"] for s in servers] == ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]
    assert [s["max_fails"] for s in servers] == ["3", "3", "1"]  # the third is non-compliant
    assert upstream_servers(None) == []


def test_proxy_headers(conf):
    assert proxy_headers(conf.location("/api/")) == {"host": "$host", "x-real-ip": "$remote_addr"}
    assert proxy_headers(conf.location("/docs")) == {}


def test_add_header_inheritance_trap(conf):
    """A location with its own add_header gets none of the server's (the guide's /static/ bug)."""
    srv = conf.server_listening(443)
    api = header_values(conf.location("/api/"), srv, conf.http)
    static = header_values(conf.location("/static/"), srv, conf.http)
    redirect = header_values(None, conf.server_listening(80), conf.http)
    assert "strict-transport-security" in api
    assert set(static) == {"cache-control"}
    assert set(redirect) == {"x-frame-options"}


def test_nginx_t_output():
    ok, text = parse_test("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
                          "nginx: configuration file /etc/nginx/nginx.conf test is successful\nexit=0\n")
    assert ok
    assert text.endswith("successful")
    bad, _ = parse_test('nginx: [emerg] unknown directive "foo" in /etc/nginx/nginx.conf:90\n'
                        "nginx: configuration file /etc/nginx/nginx.conf test failed\nexit=1\n")
    assert not bad


def test_fallback_dump_without_test_output():
    conf = parse_dump("# configuration file /etc/nginx/nginx.conf:\nuser www-data;\nfoo_unknown on;\n")
    assert conf.root.value("user") == "www-data"
    assert conf.root.value("foo_unknown") == "on"


def test_hsts_value():
    guide = "max-age=31536000; includeSubDomains"
    hsts = "Strict-Transport-Security"
    assert header_is("max-age=31536000; includeSubDomains", guide, hsts)
    assert header_is("max-age=63072000; includeSubDomains; preload", guide, hsts)
    assert header_is('max-age="31536000"; INCLUDESUBDOMAINS', guide, hsts)
    assert not header_is("max-age=31536000", guide, hsts)
    assert not header_is("max-age=86400; includeSubDomains", guide, hsts)
    assert not header_is("max-age=abc; includeSubDomains", guide, hsts)
    assert not header_is(None, guide, hsts)


def test_helpers():
    assert with_domain({"a": "/x/your-domain.com/y"}, "pynomaly.test") == {"a": "/x/pynomaly.test/y"}
    assert with_domain("www-data", None) == "www-data"
    with pytest.raises(CouldNotAudit, match="audit_public_host"):  # no public name: cannot say what is expected
        with_domain("your-domain.com", None)
    assert header_is("DENY", "deny")
    assert not header_is(None, "DENY")
    assert not header_is("SAMEORIGIN", "DENY")


# ---------------------------------------------------------------- catalogue keys, running and on disk

NOTHING_CHANGED = object()


def _facts(conf, users=("www-data", "www-data"), changed=NOTHING_CHANGED):
    changed = {} if changed is NOTHING_CHANGED else changed  # None: when it was loaded is unknown
    return NginxFacts(conf, True, "", tuple(users), (), "2026-11-27T13:42:35+00:00", changed, "pynomaly.test")


def test_keys_read_one_value_or_several(conf):
    facts = _facts(conf)
    assert facts.read("main: worker_processes") == "auto"
    assert facts.read("events: worker_connections") == "1024"
    assert facts.read("http: sendfile, tcp_nopush") == {"sendfile": "on", "tcp_nopush": None}
    assert facts.read("http: log_format nothing") is None
    assert facts.read("http: gzip_types") == ["text/plain", "application/json"]
    assert facts.read("location /api/: proxy_read_timeout, proxy_connect_timeout") == {
        "proxy_read_timeout": "30s", "proxy_connect_timeout": None}
    assert facts.read("location /nowhere: proxy_read_timeout") is None
    assert facts.read("https: ssl_protocols") == ["TLSv1.2", "TLSv1.3"]
    assert facts.read("https: keepalive_timeout") == "65"  # inherited from http
    assert facts.norm("http: sendfile, tcp_nopush", {"sendfile": "on", "tcp_nopush": "on"}) == {
        "sendfile": "on", "tcp_nopush": "on"}
    assert facts.norm("events: worker_connections", 1024) == "1024"
    assert text([2048, "a"]) == ["2048", "a"]


def test_ssl_ciphers_are_a_list_and_defaults_need_a_server():
    conf = parse_dump("# configuration file /etc/nginx/nginx.conf:\nhttp { server { listen 443 ssl;\n"
                      "ssl_ciphers A:B; } }\n")
    facts = _facts(conf)
    assert facts.read("https: ssl_ciphers") == ["A", "B"]
    assert facts.read("https: ssl_prefer_server_ciphers") == "off"  # NGINX's default, in a server that exists
    empty = _facts(parse_dump("# configuration file /etc/nginx/nginx.conf:\nhttp { }\n"))
    assert empty.read("https: ssl_prefer_server_ciphers") is None  # no HTTPS server: nothing to default
    assert empty.read("https: ssl_ciphers") is None


def test_sides_running_when_nothing_changed_since_the_workers_started(conf):
    sides = _facts(conf).sides("events: worker_connections")
    assert sides[RUNNING].value == sides[ON_DISK].value == "1024"
    assert "no configuration file changed since" in sides[RUNNING].where


def test_sides_on_disk_only_when_a_file_changed_after_the_reload(conf):
    facts = _facts(conf, changed={"/etc/nginx/nginx.conf": "2026-11-27T13:50:00+00:00"})
    sides = facts.sides("events: worker_connections")
    assert list(sides) == [ON_DISK]
    assert sides[ON_DISK].where == ("nginx -T; pending reload: /etc/nginx/nginx.conf changed 2026-11-27T13:50:00+00:00,"
                                    " after the master (re)loaded the configuration at 2026-11-27T13:42:35+00:00")
    assert list(_facts(conf, changed=None).sides("events: use")) == [ON_DISK]  # unknown: no running side
    assert "cannot be told" in _facts(conf, changed=None).pending
    # any value a check reads from the configuration: both sides, or on disk only while a reload is pending
    assert list(_facts(conf).both(["least_conn"])) == [RUNNING, ON_DISK]
    assert list(facts.both(["least_conn"])) == [ON_DISK]
    assert _facts(conf).pending == ""


def test_user_runs_as_the_workers_user(conf):
    assert _facts(conf).sides("main: user")[RUNNING].value == "www-data"
    mixed = _facts(conf, users=("root", "www-data")).sides("main: user")[RUNNING]
    assert mixed.value is None
    assert mixed.shown == ["root", "www-data"]
    assert _facts(conf, users=()).sides("main: user")[RUNNING].value is None  # no worker: never a pass


# `procs` and `mtimes` on the reference web1 (a reload at 13:42:35, nginx.conf written at 13:42:15)
PROCS = """clock 1795788225.971518527 1565.52 100
27537 root nginx: master process /usr/sbin/nginx
29578 www-data nginx: worker process
29578 www-data nginx: worker process
"""
MTIMES = """1795122114.000000000 /etc/nginx/mime.types
1795786935.043369500 /etc/nginx/nginx.conf
"""
CTIMES = """1795122114.000000000 1795786900.000000000 /etc/nginx/mime.types
1795786935.043369500 1795786935.043369500 /etc/nginx/nginx.conf
"""


def test_worker_processes_and_what_changed_since():
    serving = workers(PROCS)
    assert [user for _, user in serving] == ["www-data", "www-data"]
    started = max(start for start, _ in serving)
    assert round(started, 2) == 1795786956.23
    assert changed_since(MTIMES, started) == {}
    edited = MTIMES.replace("1795786935.043369500", "1795788000.000000000")
    assert changed_since(edited, started) == {"/etc/nginx/nginx.conf": "2026-11-27T14:00:00+00:00"}
    # put back with `cp -p` after the reload: the old mtime, a new ctime
    restored = CTIMES.replace("1795786935.043369500 /etc", "1795788000.000000000 /etc")
    assert changed_since(CTIMES, started) == {}
    assert changed_since(restored, started) == {"/etc/nginx/nginx.conf": "2026-11-27T14:00:00+00:00"}
    assert changed_since(MTIMES, None) is None
    assert changed_since("", started) is None


def test_workers_shutting_down_and_no_clock():
    assert len(workers(PROCS + "20001 www-data nginx: worker process is shutting down\n")) == 2
    assert workers(PROCS.split("\n", 1)[1]) == [(None, "www-data")] * 2  # no clock line: no start times


def test_header_kinds():
    paths = ["/api/v1/health", "/static/"]
    assert header_kinds(paths, "/static/app.css", None) == {"/api/v1/health": "/api/v1/health",
                                                           "/static/": "/static/app.css"}
    assert header_kinds(paths, "/static/app.css", "/audit-missing-1")["404"] == "/audit-missing-1"


def test_public_answers_and_their_failures():
    ok = Answer("https://pynomaly.test/api/v1/health", 200, {"content-encoding": "gzip"})
    refused = Answer("https://pynomaly.test/docs", None, {}, "Connection refused")
    public = PublicFacts("pynomaly.test", {"/api/v1/health": ok, "/docs": refused}, "/audit-missing-1", "/static/a.css")
    assert public.answer("/api/v1/health").header("Content-Encoding") == "gzip"
    assert public.answer("/api/v1/health").header("Vary") is None  # absent: the check finds nothing
    with pytest.raises(CouldNotAudit, match="Connection refused"):
        public.answer("/docs")
    assert public.kinds(["/static/"], on_errors=True) == {"/static/": "/static/a.css", "404": "/audit-missing-1"}


def _session(outputs: dict[str, str]):
    from types import SimpleNamespace

    def collect(host, commands):
        return {k: outputs.get(k, "") for k in commands}

    return SimpleNamespace(access=SimpleNamespace(collect=collect),
                           inventory=SimpleNamespace(setting=lambda key, default=None: None))


def test_an_unreadable_configuration_cannot_be_audited_a_missing_one_is_the_finding():
    from types import SimpleNamespace

    from audit.probes.nginx import nginx

    host = SimpleNamespace(name="web1")
    with pytest.raises(CouldNotAudit, match="is sudo granted"):
        nginx(_session({"present": "yes", "test": "exit=1"}), host)
    facts = nginx(_session({"test": "sh: nginx: not found\nexit=127"}), host)  # no NGINX, no nginx.conf
    assert facts.read("main: user") is None
    assert facts.test_ok is False
    assert facts.worker_users == ()
    assert facts.changed is None


def test_the_probe_on_the_reference_output(conf):
    from types import SimpleNamespace

    from audit.probes.nginx import nginx

    facts = nginx(_session({"present": "yes", "dump": DUMP, "procs": PROCS, "mtimes": MTIMES,
                            "test": "nginx: configuration file /etc/nginx/nginx.conf test is successful\nexit=0",
                            "log_fds": "/var/log/nginx/access.log\n/var/log/nginx/error.log"}),
                  SimpleNamespace(name="web1"))
    assert facts.test_ok
    assert facts.changed == {}
    assert facts.loaded_at == "2026-11-27T13:42:36+00:00"
    assert facts.log_files == ("/var/log/nginx/access.log", "/var/log/nginx/error.log")
    assert list(facts.sides("main: worker_processes")) == [RUNNING, ON_DISK]
