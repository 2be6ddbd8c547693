"""NGINX, security header and TLS drifts: each breaks exactly the requirements it names.

Configuration drifts edit /etc/nginx/nginx.conf on web1 (the original is kept and restored by
heal) and reload NGINX; certificate drifts replace the files under
/etc/letsencrypt/live/<name>/ with certificates made here (from the local CA, or not) and
restore the originals.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..topology import PUBLIC_NAME
from . import BACKUPS, NGINX_RELOAD, Ctx, Drift, crontab_edit, edit_file, pretend_removed

CONF = "/etc/nginx/nginx.conf"
LIVE = f"/etc/letsencrypt/live/{PUBLIC_NAME}"
HTTPS_SERVER = r"/listen 443/,/location/"  # the HTTPS server's own directives, before its first location
KEEPALIVE_30 = "'s/keepalive_timeout 65;/keepalive_timeout 30;/'"
PID_ELSEWHERE = "'s|^pid /run/nginx.pid;|pid /run/nginx-other.pid;|'"


def nginx(name: str, ids: tuple[str, ...], description: str, sed: str, reload: str = NGINX_RELOAD) -> Drift:
    """A drift that edits nginx.conf on web1 with one sed expression and reloads."""
    suffix = ", reload" if reload == NGINX_RELOAD else ""
    return Drift(name, ids, f"web1: {description}{suffix}", *edit_file("web1", CONF, sed, reload, f"nginx-{name}"))


def nginx_with_cleanup(name: str, ids: tuple[str, ...], description: str, sed: str, prepare: str,
                       cleanup: str) -> Drift:
    """Like nginx(), with a command before the edit and one after the restore."""
    apply, heal = edit_file("web1", CONF, sed, NGINX_RELOAD, f"nginx-{name}")

    def do(ctx: Ctx) -> None:
        ctx.sh("web1", prepare)
        apply(ctx)

    def undo(ctx: Ctx) -> None:
        heal(ctx)
        ctx.sh("web1", cleanup)

    return Drift(name, ids, f"web1: {description}, reload", do, undo)


def drop_header(name: str, req: str, header: str) -> Drift:
    return nginx(name, (req,), f"{header} dropped from the HTTPS server (still in /static/)",
                 f"'{HTTPS_SERVER}{{/{header}/d}}'")


def live_only(host: str, path: str, sed: str, reload: str, name: str, settle: str = "sleep 2") -> tuple:
    """apply/heal pair of a change made live and never written down: edit the file, reload, wait
    (`settle`), put the original back (`cp -p`: its old mtime, a new ctime) without reloading, so
    that the service runs what no file says and the next reload or restart reverts it. The heal
    reloads the file's own configuration."""
    backup = f"{BACKUPS}/{name}.live"

    def apply(ctx: Ctx) -> None:  # reloaded now, not deferred: the file is put back right after
        ctx.sh(host, f"mkdir -p {BACKUPS} && cp -p {path} {backup} && sed -i {sed} {path} && ! cmp -s {path} {backup}"
                     f" && {reload} && {settle} && cp -p {backup} {path}")

    def heal(ctx: Ctx) -> None:
        ctx.sh(host, f"if [ -f {backup} ]; then cp -p {backup} {path} && rm -f {backup}; fi")
        ctx.reload(host, reload)

    return apply, heal


# ---------------------------------------------------------------- certificates

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, days: float, dns: str | None,
          ca: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _local_ca(ctx: Ctx):
    ca = x509.load_pem_x509_certificate(ctx.st.ca.read_bytes())
    return ca, serialization.load_pem_private_key(ctx.st.ca_key.read_bytes(), password=None)


def short_lived(ctx: Ctx) -> tuple[bytes, bytes]:
    ca, ca_key = _local_ca(ctx)
    key = _key()
    leaf = _cert(PUBLIC_NAME, key, ca.subject, ca_key, 20, PUBLIC_NAME)
    return _pem(leaf) + _pem(ca), _key_pem(key)


def wrong_name(ctx: Ctx) -> tuple[bytes, bytes]:
    ca, ca_key = _local_ca(ctx)
    key = _key()
    leaf = _cert("www.example.test", key, ca.subject, ca_key, 90, "www.example.test")
    return _pem(leaf) + _pem(ca), _key_pem(key)


def self_signed(ctx: Ctx) -> tuple[bytes, bytes]:
    key = _key()
    leaf = _cert(PUBLIC_NAME, key, _name(PUBLIC_NAME), key, 90, PUBLIC_NAME)
    return _pem(leaf), _key_pem(key)


def ec_key(ctx: Ctx) -> tuple[bytes, bytes]:
    """A trusted certificate for the public name whose key is ECDSA P-256, not RSA."""
    ca, ca_key = _local_ca(ctx)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(PUBLIC_NAME, key, ca.subject, ca_key, 90, PUBLIC_NAME)
    return _pem(leaf) + _pem(ca), _key_pem(key)


def without_intermediate(ctx: Ctx) -> tuple[bytes, bytes]:
    """A leaf issued by an intermediate CA (itself issued by the local CA) that is not sent."""
    ca, ca_key = _local_ca(ctx)
    mid_key, key = _key(), _key()
    mid = _cert("Pynomaly drift intermediate", mid_key, ca.subject, ca_key, 90, None, ca=True)
    leaf = _cert(PUBLIC_NAME, key, mid.subject, mid_key, 90, PUBLIC_NAME)
    return _pem(leaf), _key_pem(key)


def cert_drift(name: str, ids: tuple[str, ...], description: str, make) -> Drift:
    """Replace fullchain.pem/privkey.pem (kept aside) with `make(ctx)`'s, reload; restore them."""
    backup = f"{BACKUPS}/cert-{name}"

    def apply(ctx: Ctx) -> None:
        chain, key = make(ctx)
        ctx.sh("web1", f"mkdir -p {backup} && cp -p {LIVE}/fullchain.pem {LIVE}/privkey.pem {backup}/")
        ctx.sh("web1", f'printf "%s" "$CHAIN" > {LIVE}/fullchain.pem && printf "%s" "$KEY" > {LIVE}/privkey.pem'
                       f" && {NGINX_RELOAD}", env={"CHAIN": chain.decode(), "KEY": key.decode()})

    def heal(ctx: Ctx) -> None:
        ctx.sh("web1", f"cp -p {backup}/fullchain.pem {backup}/privkey.pem {LIVE}/ && rm -rf {backup}"
                       f" && {NGINX_RELOAD}")

    return Drift(name, ids, f"web1: {description}, reload", apply, heal)


DRIFTS: tuple[Drift, ...] = (
    Drift("nginx-static-no-xfo", ("HDR-X-FRAME-OPTIONS",),
          "web1: X-Frame-Options dropped from the /static/ location (the guide's own bug), reload",
          *edit_file("web1", CONF, r"'/location \/static\//,/}/{/X-Frame-Options/d}'",
                     NGINX_RELOAD, "nginx-static-xfo")),
    Drift("tls-1.1", ("TLS-PROTOCOLS",),
          "web1: ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3, reload (OpenSSL 3 and the guide's GCM-only "
          "ciphers still refuse a 1.1 handshake: the configuration shows it, a scan does not)",
          *edit_file("web1", CONF,
                     r"'s/ssl_protocols TLSv1.2 TLSv1.3;/ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3;/'",
                     NGINX_RELOAD, "nginx-tls11")),
    nginx("nginx-config-invalid", ("SCALE-NGINX-CONFIG-TEST",),
          "an unknown directive appended to nginx.conf, NOT reloaded (nginx -t fails; the running "
          "configuration is unchanged)", "'$ a pynomaly_drift_unknown_directive on;'", reload="true"),
    nginx("nginx-user-root", ("NGINX-USER",), "user root (workers run as root)",
          "'s/^user www-data;/user root;/'"),
    nginx("nginx-worker-processes", ("NGINX-WORKER-PROCESSES",), "worker_processes 1",
          "'s/^worker_processes auto;/worker_processes 1;/'"),
    nginx("nginx-worker-connections", ("NGINX-WORKER-CONNECTIONS",), "worker_connections 512",
          "'s/worker_connections 1024;/worker_connections 512;/'"),
    nginx("nginx-no-epoll", ("NGINX-EVENTS-EPOLL",), "`use epoll;` removed",
          r"'/^[[:space:]]*use epoll;/d'"),
    nginx("nginx-multi-accept-off", ("NGINX-MULTI-ACCEPT",), "multi_accept off",
          "'s/multi_accept on;/multi_accept off;/'"),
    nginx("nginx-sendfile-off", ("NGINX-SENDFILE-TCP",), "sendfile off",
          r"'s/^\([[:space:]]*\)sendfile on;/\1sendfile off;/'"),
    nginx("nginx-keepalive-30", ("NGINX-KEEPALIVE-TIMEOUT",), "keepalive_timeout 30",
          "'s/keepalive_timeout 65;/keepalive_timeout 30;/'"),
    nginx("nginx-types-hash", ("NGINX-MIME-TYPES",), "types_hash_max_size 4096",
          "'s/types_hash_max_size 2048;/types_hash_max_size 4096;/'"),
    nginx("nginx-gzip-off", ("NGINX-GZIP",), "gzip off (JSON is served uncompressed)",
          r"'s/^\([[:space:]]*\)gzip on;/\1gzip off;/'"),
    nginx("nginx-gzip-types", ("NGINX-GZIP-TYPES",), "text/javascript dropped from gzip_types",
          r"'/gzip_types/s/ text\/javascript;/;/'"),
    nginx("nginx-log-format", ("NGINX-LOG-FORMAT-MAIN",), "$http_x_forwarded_for dropped from log_format main",
          r"""'s/ "\$http_x_forwarded_for"//'"""),
    nginx_with_cleanup("nginx-access-log-elsewhere", ("NGINX-LOGS",),
                       "access_log /var/log/nginx/drift-access.log main",
                       r"'s#access_log /var/log/nginx/access.log main;#access_log /var/log/nginx/drift-access.log"
                       r" main;#'",
                       "true", "rm -f /var/log/nginx/drift-access.log"),
    nginx("nginx-no-least-conn", ("NGINX-UPSTREAM-LEAST-CONN",), "least_conn removed (round robin)",
          "'/least_conn;/d'"),
    nginx("nginx-upstream-max-fails", ("NGINX-UPSTREAM-SERVERS",), "127.0.0.1:8002 max_fails=1",
          "'s/8002 max_fails=3/8002 max_fails=1/'"),
    nginx("nginx-redirect-302", ("NGINX-HTTP-REDIRECT",), "port 80 returns 302 instead of 301",
          "'s/return 301 /return 302 /'"),
    nginx("nginx-no-http2", ("NGINX-LISTEN-443-HTTP2",), "listen 443 ssl (no http2)",
          "'s/listen 443 ssl http2;/listen 443 ssl;/'"),
    nginx("nginx-server-name", ("NGINX-SERVER-NAME",), "the HTTPS server's server_name is www.<name> "
          "(it stays the default server for 443)", f"'{HTTPS_SERVER}s/server_name {PUBLIC_NAME};/"
          f"server_name www.{PUBLIC_NAME};/'"),
    nginx("nginx-docs-no-real-ip", ("NGINX-PROXY-HEADERS",), "X-Real-IP not passed from /docs",
          r"'/location \/docs/,/}/{/X-Real-IP/d}'"),
    nginx("nginx-proxy-read-timeout", ("NGINX-PROXY-TIMEOUTS",), "proxy_read_timeout 60s in /api/",
          "'s/proxy_read_timeout 30s;/proxy_read_timeout 60s;/'"),
    nginx("nginx-health-access-log", ("NGINX-HEALTH-NO-ACCESS-LOG",), "`access_log off` removed from /health",
          r"'/location \/health/,/}/{/access_log off;/d}'"),
    nginx("nginx-static-expires", ("NGINX-STATIC-FILES",), "expires 1d in /static/",
          "'s/expires 30d;/expires 1d;/'"),
    nginx("nginx-docs-not-proxied", ("NGINX-DOCS-PROXY",), "location /docs returns 404 instead of proxying",
          r"'/location \/docs/,/}/s/proxy_pass http:\/\/pynomaly_backend;/return 404;/'"),
    nginx("rate-zone-api", ("RATE-ZONE-API",), "zone api rate=100r/s",
          r"'s/zone=api:10m rate=10r\/s/zone=api:10m rate=100r\/s/'"),
    nginx("rate-zone-login", ("RATE-ZONE-LOGIN",), "zone login rate=50r/m",
          r"'s/zone=login:10m rate=5r\/m/zone=login:10m rate=50r\/m/'"),
    nginx("rate-api-burst", ("RATE-API-LIMIT",), "/api/ limit_req burst=200",
          "'s/zone=api burst=20 nodelay/zone=api burst=200 nodelay/'"),
    nginx("rate-login-burst", ("RATE-LOGIN-LIMIT",), "login limit_req burst=30",
          "'s/zone=login burst=3 nodelay/zone=login burst=30 nodelay/'"),
    drop_header("hdr-no-hsts", "HDR-HSTS", "Strict-Transport-Security"),
    drop_header("hdr-no-nosniff", "HDR-X-CONTENT-TYPE-OPTIONS", "X-Content-Type-Options"),
    # running vs on disk (issue 19)
    Drift("nginx-not-reloaded", ("NGINX-KEEPALIVE-TIMEOUT",),
          "web1: keepalive_timeout 30 in nginx.conf, not reloaded (NGINX still runs 65: a pending reload); "
          "the heal reloads (the file put back is newer than the workers)",
          edit_file("web1", CONF, KEEPALIVE_30, "true", "nginx-not-reloaded")[0],
          edit_file("web1", CONF, KEEPALIVE_30, NGINX_RELOAD, "nginx-not-reloaded")[1]),
    Drift("nginx-pid-elsewhere", ("NGINX-PID",),
          "web1: nginx.conf says pid /run/nginx-other.pid, not reloaded (a new pid path would take the init "
          "script's pid file away); the heal reloads, as nginx-not-reloaded's",
          edit_file("web1", CONF, PID_ELSEWHERE, "true", "nginx-pid-elsewhere")[0],
          # the audit's `nginx -t` (SCALE-NGINX-CONFIG-TEST) leaves an empty pid file at the new path
          edit_file("web1", CONF, PID_ELSEWHERE, f"rm -f /run/nginx-other.pid && {NGINX_RELOAD}",
                    "nginx-pid-elsewhere")[1]),
    Drift("nginx-not-persisted", ("HDR-X-CONTENT-TYPE-OPTIONS",),
          "web1: X-Content-Type-Options dropped from the HTTPS server and reloaded, then nginx.conf put back "
          "without a reload (NGINX serves what no file says; the next reload reverts it)",
          *live_only("web1", CONF, f"'{HTTPS_SERVER}{{/X-Content-Type-Options/d}}'", NGINX_RELOAD,
                     "nginx-not-persisted")),
    drop_header("hdr-no-xss", "HDR-X-XSS-PROTECTION", "X-XSS-Protection"),
    drop_header("hdr-no-referrer-policy", "HDR-REFERRER-POLICY", "Referrer-Policy"),
    nginx("tls-weak-cipher", ("TLS-CIPHERS-TLS12",), "ECDHE-RSA-AES128-SHA (CBC, SHA-1) added to ssl_ciphers",
          "'s/ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;/"
          "ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA;/'"),
    nginx("tls-prefer-server-ciphers", ("TLS-PREFER-SERVER-CIPHERS-OFF",), "ssl_prefer_server_ciphers on",
          "'s/ssl_prefer_server_ciphers off;/ssl_prefer_server_ciphers on;/'"),
    nginx("tls-session-cache-off", ("TLS-SESSION-CACHE", "TLS-SESSION-RESUMPTION"),
          "ssl_session_cache off (session IDs are not resumed)",
          "'s/ssl_session_cache shared:SSL:10m;/ssl_session_cache off;/'"),
    nginx_with_cleanup("tls-cert-files-moved", ("TLS-CERT-FILES",),
                       "the same certificate served from /etc/nginx/drift-tls/ instead of the Let's Encrypt live files",
                       f"'s#{LIVE}/#/etc/nginx/drift-tls/#'",
                       f"mkdir -p /etc/nginx/drift-tls && cp -p {LIVE}/fullchain.pem {LIVE}/privkey.pem"
                       " /etc/nginx/drift-tls/",
                       "rm -rf /etc/nginx/drift-tls"),
    cert_drift("tls-cert-short-lived", ("CHK-CERT-VALIDITY",),
               "a certificate from the local CA valid for 20 days", short_lived),
    cert_drift("tls-cert-wrong-name", ("TLS-CERT-HOSTNAME",),
               "a certificate from the local CA for www.example.test", wrong_name),
    cert_drift("tls-cert-self-signed", ("TLS-CERT-TRUSTED",), "a self-signed certificate for the public name",
               self_signed),
    cert_drift("tls-chain-incomplete", ("TLS-CERT-CHAIN-COMPLETE", "TLS-CERT-TRUSTED"),
               "a certificate issued by an intermediate CA that is not sent (fullchain.pem = leaf only)",
               without_intermediate),
    # the guide's ECDHE-RSA list leaves TLS 1.2 no cipher for an ECDSA key: TLS 1.2 is refused,
    # and with it session-ID resumption (a TLS 1.2 mechanism)
    cert_drift("tls-cert-ec-key", ("TLS-CERT-RSA-KEY", "TLS-PROTOCOLS", "TLS-CIPHERS-TLS12", "TLS-SESSION-RESUMPTION"),
               "a trusted certificate for the public name with an ECDSA P-256 key", ec_key),
    # certbot (Let's Encrypt Setup; Software Dependencies)
    Drift("certbot-renew-cron-removed", ("TLS-CERTBOT-RENEW-CRON",),
          "web1: the certbot renew line removed from root's crontab",
          *crontab_edit("web1", "'/certbot renew/d'")),
    Drift("certbot-nginx-plugin-removed", ("TLS-CERTBOT-NGINX-PLUGIN",),
          "web1: python3-certbot-nginx removed as dpkg sees it (status deinstall, certbot_nginx gone)",
          *pretend_removed("web1", "python3-certbot-nginx", "/usr/lib/python3/dist-packages/certbot_nginx")),
    Drift("certbot-removed", ("PRE-CERTBOT",),
          "web1: certbot removed as dpkg sees it (status deinstall, /usr/bin/certbot gone)",
          *pretend_removed("web1", "certbot", "/usr/bin/certbot")),
)
