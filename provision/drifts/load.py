"""Load drifts: latency and errors that only a load run through NGINX sees.

They break CHK-RESPONSE-TIME-P95 / CHK-ERROR-RATE as measured by the opt-in load checks
(checks/load.py, `-m load`), not the app's own Prometheus metrics (NGINX answers before
or without the app). The drift matrix audits default checks only, so it skips them (`opt_in`);
tests/integration/test_load_gate.py proves each with a short load run.
"""

from __future__ import annotations

from . import NGINX_RELOAD, Drift, edit_file

NGINX_CONF = "/etc/nginx/nginx.conf"

DRIFTS: tuple[Drift, ...] = (
    Drift("nginx-static-slow", ("CHK-RESPONSE-TIME-P95",),
          "web1: `limit_rate 200;` in location /static/ (each asset takes ~2 s to send), NGINX reloaded",
          *edit_file("web1", NGINX_CONF,
                     r"'s|alias /opt/pynomaly/static/;|alias /opt/pynomaly/static/; limit_rate 200;|'",
                     NGINX_RELOAD, "nginx-static-slow"),
          opt_in="load"),
    Drift("nginx-docs-502", ("CHK-ERROR-RATE",),
          "web1: location /docs proxies to 127.0.0.1:9 (closed): every /docs answers 502, NGINX reloaded",
          *edit_file("web1", NGINX_CONF,
                     r"'/location \/docs/,/}/s|proxy_pass http://pynomaly_backend;|proxy_pass http://127.0.0.1:9;|'",
                     NGINX_RELOAD, "nginx-docs-502"),
          opt_in="load"),
    # Shows only under load: one client (every default check) never reaches 10 r/s; the declared
    # production load (audit_load.gate: 40 r/s, 2/3 of it outside /api/) queues in NGINX for seconds.
    Drift("nginx-site-rate-limit", ("CHK-RESPONSE-TIME-P95",),
          "web1: a limit_req zone keyed on $server_name (10 r/s for the whole site, excess queued with a large "
          "burst) instead of per client, applied to the HTTPS server (/health, /docs, /static/), NGINX reloaded",
          *edit_file("web1", NGINX_CONF,
                     r"'s|zone=login:10m rate=5r/m;|&\n    limit_req_zone $server_name zone=site:1m rate=10r/s;|;"
                     r" s|listen 443 ssl http2;|&\n        limit_req zone=site burst=5000;|'",
                     NGINX_RELOAD, "nginx-site-rate-limit"),
          opt_in="load"),
)
