"""Harden the running reference deployment beyond the guide, so that every advisory of
checks/advisories.yml passes (issue 21), and undo it.

The deployment `up` builds follows the guide: several advisories are red on it by design (they
are the guide's flaws). `harden(ctx)` fixes each of them on the running hosts, as a reviewer
would, without changing any value the guide's requirements check (every guide requirement stays
as it was); `unharden(ctx)` puts the deployment back exactly as the guide builds it. Both take
the drift context (provision/drifts: `Ctx`) and use only `ctx.sh`, `ctx.psql` and `ctx.redis`,
except the deployment repository's deploy.sh, which lives on this machine (`ctx.st.root`, as the
CI/CD drifts edit it). Each step is idempotent: applying twice or undoing twice changes nothing.

- ADV-NGINX-SERVER-TOKENS, ADV-NGINX-WORKER-RLIMIT-NOFILE: `server_tokens off;` in http and
  `worker_rlimit_nofile 4096;` in nginx.conf (web1, reloaded).
- ADV-GUIDE-DEPLOY-HEALTH-CHECK, ADV-GUIDE-DAILY-HEALTH-CHECK: the guide's
  `curl -f http://localhost/health` gets the port-80 server's 301; the same curl now follows the
  redirect to the HTTPS server (--location, the public name resolved to 127.0.0.1, the CA).
- ADV-GUIDE-DISK-ALERT-FULL: `grep -E "9[0-9]%|100%"` (the guide's misses a full disk).
- ADV-GUIDE-PG-MEAN-TIME: /opt/pynomaly/scripts/slow_queries.sh on db1, the guide's
  troubleshooting queries with `mean_exec_time` (PostgreSQL 13+).
- ADV-GUIDE-DB-POOLS: 3 x 4 x (20 + 30) pooled connections exceed max_connections 200:
  `ALTER ROLE pynomaly_user CONNECTION LIMIT 150` keeps the rest for replication, monitoring, admins.
- ADV-SSH-X11-FORWARDING: `X11Forwarding no` on every host (sshd reloaded).
- ADV-PG-HBA-HOSTSSL: the rules that admit web1, the exporter and the replica become `hostssl`
  (their clients use sslmode prefer/require), db1 and db2 reloaded.
- ADV-REDIS-DANGEROUS-COMMANDS: `ACL SETUSER default -flushall -flushdb -debug -config|set
  -module -script|flush` on every Redis (6379 and the cluster nodes).

The guide's own lines stay in the scripts (the CI/CD and maintenance requirements still find
`curl -f http://localhost/health` and the 90% alert); the Redis ACL is live only (a restart of a
Redis drops it: `up --hardened` applies it again).
"""

from __future__ import annotations

import shutil

from .render import FILES
from .topology import PUBLIC_NAME

STORE = "/var/lib/pynomaly-hardened"  # inside the containers: originals of the edited files
HOSTS = ("web1", "db1", "db2", "cache1", "cache2", "cache3")
REDIS = (("cache1", 6379), *((h, p) for h in ("cache1", "cache2", "cache3") for p in (7000, 7001)))
NGINX_CONF = "/etc/nginx/nginx.conf"
NGINX_RELOAD = "nginx -t -q && service nginx reload >/dev/null"
DAILY = "/opt/pynomaly/scripts/daily_maintenance.sh"
DEPLOY_SCRIPT = "deploy-repo/scripts/deploy.sh"
SLOW_QUERIES = "/opt/pynomaly/scripts/slow_queries.sh"
PG_HBA = "/etc/postgresql/15/main/pg_hba.conf"
SSHD_CONFIG = "/etc/ssh/sshd_config"

GUIDE_CURL = "curl -f http://localhost/health"
HARDENED_CURL = (f"{GUIDE_CURL} --location --resolve {PUBLIC_NAME}:443:127.0.0.1 "
                 f"--cacert /etc/letsencrypt/live/{PUBLIC_NAME}/chain.pem")
GUIDE_DISK = 'grep -E "9[0-9]%"'
HARDENED_DISK = 'grep -E "9[0-9]%|100%"'
APP_CONNECTION_LIMIT = 150
REDIS_DENIED = "-flushall -flushdb -debug '-config|set' -module '-script|flush'"
SLOW_QUERIES_SCRIPT = """#!/bin/bash
# /opt/pynomaly/scripts/slow_queries.sh: the guide's Troubleshooting > Database Connection Issues,
# for PostgreSQL 13 and later (the mean time column is mean_exec_time since 13).
runuser -u postgres -- psql -c "SELECT count(*) FROM pg_stat_activity;"
runuser -u postgres -- psql -c "SHOW max_connections;"
runuser -u postgres -- psql -c "SELECT query, mean_exec_time, calls \\
  FROM pg_stat_statements ORDER BY mean_exec_time DESC LIMIT 10;"
"""


def _replace(ctx, host: str, path: str, guide: str, hardened: str, on: bool) -> None:
    """Replace a literal fragment of a host's file (with python3: no quoting pitfalls): the guide's
    by the hardened one (nothing to do when it is there already), or back."""
    script = ("import sys; p, g, h, on = sys.argv[1:5]; t = open(p).read(); "
              "n = (t if h in t else t.replace(g, h, 1)) if on == '1' else t.replace(h, g, 1); "
              "open(p, 'w').write(n) if n != t else None")
    ctx.sh(host, f"python3 -c {_q(script)} {_q(path)} {_q(guide)} {_q(hardened)} {int(on)}")


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


# ---------------------------------------------------------------- the steps

def nginx(ctx, on: bool) -> None:
    """server_tokens off; worker_rlimit_nofile 4096 (web1)."""
    pairs = [("pid /run/nginx.pid;\n", "pid /run/nginx.pid;\nworker_rlimit_nofile 4096;\n"),
             ("http {\n", "http {\n    server_tokens off;\n")]
    for guide, hardened in pairs:
        _replace(ctx, "web1", NGINX_CONF, guide, hardened, on)
    ctx.sh("web1", NGINX_RELOAD)


def daily_script(ctx, on: bool) -> None:
    """The daily health check follows the redirect; the disk alert includes 100% (web1)."""
    for guide, hardened in ((GUIDE_CURL + " ||", HARDENED_CURL + " ||"), (GUIDE_DISK, HARDENED_DISK)):
        _replace(ctx, "web1", DAILY, guide, hardened, on)


def deploy_script(ctx, on: bool) -> None:
    """deploy.sh's health check follows the redirect (the deployment repository on this machine)."""
    path = ctx.st.root / DEPLOY_SCRIPT
    if not on:
        shutil.copy2(FILES / "deploy-repo" / "scripts" / "deploy.sh", path)
        return
    text = path.read_text()
    if HARDENED_CURL not in text:
        path.write_text(text.replace(GUIDE_CURL + " ||", HARDENED_CURL + " ||"))


def slow_queries(ctx, on: bool) -> None:
    """A troubleshooting script with the PostgreSQL 13+ column names (db1)."""
    if on:
        ctx.sh("db1", f"cat > {SLOW_QUERIES} <<'EOF'\n{SLOW_QUERIES_SCRIPT}EOF\nchmod 750 {SLOW_QUERIES}")
    else:
        ctx.sh("db1", f"rm -f {SLOW_QUERIES}")


def connection_limit(ctx, on: bool) -> None:
    """pynomaly_user's CONNECTION LIMIT leaves room for replication, monitoring and admins (db1)."""
    ctx.psql("db1", f"ALTER ROLE pynomaly_user CONNECTION LIMIT {APP_CONNECTION_LIMIT if on else -1};")


def ssh(ctx, on: bool) -> None:
    """X11Forwarding no on every host (sshd reloaded)."""
    guide, hardened = "X11Forwarding yes", "X11Forwarding no"
    for host in HOSTS:
        ctx.sh(host, f"sed -i 's/^{guide if on else hardened}$/{hardened if on else guide}/' {SSHD_CONFIG}"
                     " && sshd -t && (service ssh reload >/dev/null 2>&1 || pkill -HUP -x sshd || true)")


def pg_hba(ctx, on: bool) -> None:
    """hostssl for the rules that admit a login from another host (db1, db2), configuration reloaded."""
    sed = (r"sed -i -E '/172\.28\.77\./s/^host(\s)/hostssl\1/'" if on
           else r"sed -i -E '/172\.28\.77\./s/^hostssl(\s)/host\1/'")
    for host in ("db1", "db2"):
        ctx.sh(host, f"{sed} {PG_HBA}")
        ctx.psql(host, "SELECT pg_reload_conf();")


def redis(ctx, on: bool) -> None:
    """The default user (the app's login) may not run the dangerous commands, on every Redis."""
    rules = REDIS_DENIED if on else "+@all"
    for host, port in REDIS:
        ctx.redis(host, port, f"ACL SETUSER default {rules}")


STEPS = (nginx, daily_script, deploy_script, slow_queries, connection_limit, ssh, pg_hba, redis)


def harden(ctx) -> None:
    """Every step, in order."""
    for step in STEPS:
        step(ctx, True)


def unharden(ctx) -> None:
    """Every step undone, in reverse order: the deployment as the guide builds it."""
    for step in reversed(STEPS):
        step(ctx, False)


def recorded() -> bool:
    """The reference deployment was hardened (deployment.json), so that `up` keeps it so."""
    from .state import State

    return bool(State().load().get("hardened"))


def apply(on: bool) -> None:
    """Harden (or undo it) on the running reference deployment, and record it."""
    from . import drifts
    from .ui import step

    ctx, st, _ = drifts._ctx()
    step("hardening the deployment beyond the guide (advisories)" if on
         else "undoing the hardening: the deployment as the guide builds it")
    (harden if on else unharden)(ctx)
    st.save({**st.load(), "hardened": on})
