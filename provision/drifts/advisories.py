"""Advisory drifts (checks/advisories.yml): each turns exactly the ADV-* ids it names red on a
hardened deployment (provision/hardened.py), and heals back to it. Several advisories are red on
the deployment as the guide builds it: their drifts undo one hardening step (they need the
hardened deployment); the others add a flaw the guide does not have and work on either.

No drift exists for five of sslyze's scans: Debian 12's OpenSSL 3.0 and NGINX cannot be made
vulnerable to Heartbleed (heartbeats were removed in 3.0), the CCS injection (fixed in 1.0.1h),
ROBOT (constant-time RSA decryption), insecure renegotiation (RFC 5746 is always on) or a missing
TLS_FALLBACK_SCSV (always honoured); nor can client-initiated renegotiation (NGINX refuses it
whatever `ssl_conf_command` says), TLS compression (not built in) or a missing Extended Master
Secret (sslyze does not test it when TLS 1.3 is offered). Those checks are proven by the unit
tests on sslyze's results (tests/unit/test_advisories_parsing.py).
"""

from __future__ import annotations

import subprocess

from .. import hardened
from . import NGINX_RELOAD, Drift, edit_file

NGINX_CONF = "/etc/nginx/nginx.conf"


def _nginx_add(name: str, text: str) -> tuple:
    """apply/heal pair: `text` added to the HTTPS server block of nginx.conf (after its SSL
    configuration comment's server_name), NGINX reloaded."""
    return edit_file("web1", NGINX_CONF, f"'/^        # SSL configuration$/i\\{text}'", NGINX_RELOAD, name)


def _local(cmd: str) -> None:
    """A command on this machine (the Docker engine the inventory's `docker` host is)."""
    subprocess.run(["sh", "-c", cmd], check=True, capture_output=True, timeout=30)


DAEMON_JSON = "/etc/docker/daemon.json"
DAEMON_BACKUP = "/var/lib/pynomaly-drift-daemon.json"


def _daemon_json_tcp(_ctx) -> None:
    _local(f"[ ! -e {DAEMON_JSON} ] || cp -p {DAEMON_JSON} {DAEMON_BACKUP}; mkdir -p /etc/docker; "
           f"python3 -c \"import json,os; p='{DAEMON_JSON}'; d=json.load(open(p)) if os.path.exists(p) else {{}}; "
           f"d['hosts']=['tcp://127.0.0.1:2375']; open(p,'w').write(json.dumps(d))\"")


def _daemon_json_heal(_ctx) -> None:
    _local(f"if [ -e {DAEMON_BACKUP} ]; then mv {DAEMON_BACKUP} {DAEMON_JSON}; else rm -f {DAEMON_JSON}; fi")


def _deploy_script_guide(ctx) -> None:
    hardened.deploy_script(ctx, False)


def _deploy_script_hardened(ctx) -> None:
    hardened.deploy_script(ctx, True)


# Drifts that undo a hardening step: they apply only on a hardened deployment (on the guide's, their
# advisory is red already and their edit finds nothing to change). The others work on either.
NEEDS_HARDENED = ("adv-nginx-rlimit-low", "adv-deploy-health-check-guide", "adv-daily-health-check-guide",
                  "adv-disk-alert-guide", "adv-slow-queries-mean-time", "adv-db-pools-unlimited", "adv-ssh-x11",
                  "adv-pg-hba-plain-host", "adv-redis-flushall-allowed")

DRIFTS: tuple[Drift, ...] = (
    # ---- gixy-ng
    Drift("adv-nginx-server-tokens-on", ("ADV-NGINX-SERVER-TOKENS",),
          "web1: server_tokens on in the HTTPS server (NGINX's version in every answer)",
          *_nginx_add("adv-tokens", "        server_tokens on;")),
    Drift("adv-nginx-rlimit-low", ("ADV-NGINX-WORKER-RLIMIT-NOFILE",),
          "web1: worker_rlimit_nofile 1024 (hardened: 4096) for worker_connections 1024",
          *edit_file("web1", NGINX_CONF, "'s/^worker_rlimit_nofile 4096;$/worker_rlimit_nofile 1024;/'",
                     NGINX_RELOAD, "adv-rlimit")),
    Drift("adv-nginx-header-dropped", ("ADV-NGINX-ADD-HEADER-REDEFINITION",),
          "web1: location = /robots.txt with its own add_header (drops the server's security headers there)",
          *_nginx_add("adv-robots", "        location = /robots.txt { add_header Cache-Control \"no-store\"; "
                                    "return 200 \"User-agent: *\\\\n\"; }")),
    Drift("adv-nginx-alias-traversal", ("ADV-NGINX-ALIAS-TRAVERSAL",),
          "web1: location /assets (no trailing slash) aliased to /opt/pynomaly/static/ (/assets../ escapes it)",
          *_nginx_add("adv-alias", "        location /assets { alias /opt/pynomaly/static/; }")),
    Drift("adv-nginx-status-open", ("ADV-NGINX-STATUS-PAGE",),
          "web1: the stub_status location loses its allow 127.0.0.1 / deny all",
          *edit_file("web1", NGINX_CONF, "-e '/^            allow 127.0.0.1;$/d' -e '/^            deny all;$/d'",
                     NGINX_RELOAD, "adv-status")),
    Drift("adv-nginx-host-spoofing", ("ADV-NGINX-GIXY-OTHER",),
          "web1: location /api/v2/ proxies with Host $http_host (gixy-ng host_spoofing)",
          *_nginx_add("adv-host", "        location /api/v2/ { proxy_pass http://pynomaly_backend; "
                                  "proxy_set_header Host $http_host; }")),
    # ---- sslyze
    Drift("adv-tls-early-data", ("ADV-TLS-EARLY-DATA",),
          "web1: ssl_early_data on (TLS 1.3 0-RTT requests, replayable)",
          *_nginx_add("adv-0rtt", "        ssl_early_data on;")),
    # ---- the guide's defects (undo the hardening)
    Drift("adv-deploy-health-check-guide", ("ADV-GUIDE-DEPLOY-HEALTH-CHECK",),
          "deploy.sh: the guide's curl -f http://localhost/health again (gets the 301, never fails)",
          _deploy_script_guide, _deploy_script_hardened),
    Drift("adv-daily-health-check-guide", ("ADV-GUIDE-DAILY-HEALTH-CHECK",),
          "web1: daily_maintenance.sh's health check without --location again (gets the 301)",
          *edit_file("web1", hardened.DAILY, "'s# --location --resolve [^ ]* --cacert [^ ]* ||# ||#'", "true",
                     "adv-daily-curl")),
    Drift("adv-disk-alert-guide", ("ADV-GUIDE-DISK-ALERT-FULL",),
          "web1: daily_maintenance.sh's disk alert is the guide's grep -E \"9[0-9]%\" again (silent at 100%)",
          *edit_file("web1", hardened.DAILY, "'s/9\\[0-9\\]%|100%/9[0-9]%/'", "true", "adv-disk")),
    Drift("adv-slow-queries-mean-time", ("ADV-GUIDE-PG-MEAN-TIME",),
          "db1: slow_queries.sh orders by mean_time (the guide's column, gone since PostgreSQL 13)",
          *edit_file("db1", hardened.SLOW_QUERIES, "'s/mean_exec_time/mean_time/g'", "true", "adv-mean-time")),
    Drift("adv-db-pools-unlimited", ("ADV-GUIDE-DB-POOLS",),
          "db1: pynomaly_user without CONNECTION LIMIT (the app's pools can take every connection)",
          lambda c: c.psql("db1", "ALTER ROLE pynomaly_user CONNECTION LIMIT -1;"),
          lambda c: c.psql("db1", f"ALTER ROLE pynomaly_user CONNECTION LIMIT {hardened.APP_CONNECTION_LIMIT};")),
    # ---- baseline
    Drift("adv-ssh-root-password", ("ADV-SSH-ROOT-LOGIN",),
          "cache2: PermitRootLogin yes (root may log in with a password)",
          *edit_file("cache2", hardened.SSHD_CONFIG, "'1i PermitRootLogin yes'",
                     "sshd -t && service ssh reload >/dev/null", "adv-root")),
    Drift("adv-ssh-password-auth", ("ADV-SSH-PASSWORD-AUTH",),
          "cache3: PasswordAuthentication yes",
          *edit_file("cache3", hardened.SSHD_CONFIG, "'1i PasswordAuthentication yes'",
                     "sshd -t && service ssh reload >/dev/null", "adv-password")),
    Drift("adv-ssh-x11", ("ADV-SSH-X11-FORWARDING",),
          "db2: X11Forwarding yes again",
          *edit_file("db2", hardened.SSHD_CONFIG, "'s/^X11Forwarding no$/X11Forwarding yes/'",
                     "sshd -t && service ssh reload >/dev/null", "adv-x11")),
    Drift("adv-pg-ssl-off-on-disk", ("ADV-PG-SSL",),
          "db2: ALTER SYSTEM SET ssl = off (in postgresql.auto.conf, not reloaded: the next reload drops TLS)",
          lambda c: c.psql("db2", "ALTER SYSTEM SET ssl = off;"),
          lambda c: c.psql("db2", "ALTER SYSTEM RESET ssl;")),
    Drift("adv-pg-hba-plain-host", ("ADV-PG-HBA-HOSTSSL",),
          "db2: the replication rule back to host (no TLS required), reloaded",
          *edit_file("db2", hardened.PG_HBA, "-E '/^hostssl\\s+replication/s/^hostssl/host   /'",
                     "runuser -u postgres -- psql -qtAX -c 'SELECT pg_reload_conf()' >/dev/null", "adv-hba")),
    Drift("adv-redis-flushall-allowed", ("ADV-REDIS-DANGEROUS-COMMANDS",),
          "cache2: the default user may run every command again on the cluster node 7001",
          lambda c: c.redis("cache2", 7001, "ACL SETUSER default +@all"),
          lambda c: c.redis("cache2", 7001, f"ACL SETUSER default {hardened.REDIS_DENIED}")),
    Drift("adv-docker-socket-world", ("ADV-DOCKER-SOCKET",),
          "engine (this machine): chmod 666 /var/run/docker.sock (anyone may drive the engine)",
          lambda c: _local("chmod 666 /var/run/docker.sock"),
          lambda c: _local("chmod 660 /var/run/docker.sock")),
    Drift("adv-docker-plain-tcp", ("ADV-DOCKER-NO-PLAIN-TCP",),
          "engine (this machine): daemon.json hosts tcp://127.0.0.1:2375 without TLS (on disk: the next "
          "dockerd start listens there)",
          _daemon_json_tcp, _daemon_json_heal),
)
