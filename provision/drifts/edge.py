"""NGINX, security header and TLS drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import NGINX_RELOAD, Drift, edit_file

DRIFTS: tuple[Drift, ...] = (
    Drift("nginx-static-no-xfo", ("HDR-X-FRAME-OPTIONS",),
          "web1: X-Frame-Options dropped from the /static/ location (the guide's own bug), reload",
          *edit_file("web1", "/etc/nginx/nginx.conf", r"'/location \/static\//,/}/{/X-Frame-Options/d}'",
                     NGINX_RELOAD, "nginx-static-xfo")),
    Drift("tls-1.1", ("TLS-PROTOCOLS",),
          "web1: ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3, reload (OpenSSL 3 and the guide's GCM-only "
          "ciphers still refuse a 1.1 handshake: the configuration shows it, a scan does not)",
          *edit_file("web1", "/etc/nginx/nginx.conf",
                     r"'s/ssl_protocols TLSv1.2 TLSv1.3;/ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3;/'",
                     NGINX_RELOAD, "nginx-tls11")),
)
