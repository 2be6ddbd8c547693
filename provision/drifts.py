"""Drift registry: break one requirement on the running deployment, and heal it.

Each drift names the requirement ids (checks/requirements.yml) whose checks must
turn red while it is applied, and nothing else may. Applied drifts are recorded
in .state/deployment.json; `heal` reverts them in reverse order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import containers, docker_engine
from .state import ROOT, State
from .topology import app_container_name
from .ui import ProvisionError, step

CATALOGUE = ROOT / "checks" / "requirements.yml"
BACKUPS = "/var/lib/pynomaly-drift"  # inside the containers: originals of edited files


class Ctx:
    """What a drift needs: the Docker client and the state folder."""

    def __init__(self, client, st: State):
        self.client, self.st = client, st

    def sh(self, host: str, cmd: str, env: dict | None = None) -> str:
        return containers.run(self.client.containers.get(host), cmd, env=env)[1]

    def redis(self, host: str, port: int, args: str) -> str:
        return self.sh(host, f"redis-cli --no-auth-warning -p {port} {args}",
                       env={"REDISCLI_AUTH": self.st.secret("redis_password")})

    def psql(self, host: str, *sql: str) -> str:
        cmds = " ".join(f'-c "{s}"' for s in sql)
        return self.sh(host, f"runuser -u postgres -- psql -qtAX {cmds}")


@dataclass(frozen=True)
class Drift:
    name: str
    requirements: tuple[str, ...]
    description: str
    apply: Callable[[Ctx], None]
    heal: Callable[[Ctx], None]


def _edit(host: str, path: str, sed: str, reload: str, name: str) -> tuple[Callable, Callable]:
    """apply/heal pair: keep the original, edit it with ``sed``, run ``reload``; restore."""
    backup = f"{BACKUPS}/{name}"

    def apply(ctx: Ctx) -> None:
        ctx.sh(host, f"mkdir -p {BACKUPS} && cp -p {path} {backup} && sed -i {sed} {path}"
                     f" && ! cmp -s {path} {backup}")
        ctx.sh(host, reload)

    def heal(ctx: Ctx) -> None:
        ctx.sh(host, f"cp -p {backup} {path} && rm -f {backup}")
        ctx.sh(host, reload)

    return apply, heal


NGINX_RELOAD = "nginx -t -q && service nginx reload >/dev/null"
PROM_RELOAD = "kill -HUP $(cat /run/prometheus/prometheus.pid)"
ENV_FILE = "/opt/pynomaly/.env.production"

_static_xfo = _edit(
    "web1", "/etc/nginx/nginx.conf",
    r"'/location \/static\//,/}/{/X-Frame-Options/d}'", NGINX_RELOAD, "nginx-static-xfo")
_tls11 = _edit(
    "web1", "/etc/nginx/nginx.conf",
    r"'s/ssl_protocols TLSv1.2 TLSv1.3;/ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3;/'",
    NGINX_RELOAD, "nginx-tls11")
_debug = _edit("web1", ENV_FILE, "'s/^DEBUG=false$/DEBUG=true/'", "true", "env-debug")
_rule_for = _edit(
    "web1", "/etc/prometheus/pynomaly_rules.yml",
    r"'/alert: HighErrorRate/,/for:/s/for: 5m/for: 1m/'", PROM_RELOAD, "prometheus-rule-for")

REGISTRY: tuple[Drift, ...] = (
    Drift("pg-work-mem", ("PG-WORK-MEM",),
          "db1: ALTER SYSTEM SET work_mem = '4MB' and reload (guide: 256MB)",
          lambda c: c.psql("db1", "ALTER SYSTEM SET work_mem = '4MB'", "SELECT pg_reload_conf()"),
          lambda c: c.psql("db1", "ALTER SYSTEM RESET work_mem", "SELECT pg_reload_conf()")),
    Drift("redis-eviction-policy", ("REDIS-MAXMEMORY-POLICY",),
          "cache1: CONFIG SET maxmemory-policy noeviction on 6379 (guide: allkeys-lru)",
          lambda c: c.redis("cache1", 6379, "config set maxmemory-policy noeviction"),
          lambda c: c.redis("cache1", 6379, "config set maxmemory-policy allkeys-lru")),
    Drift("nginx-static-no-xfo", ("HDR-X-FRAME-OPTIONS",),
          "web1: X-Frame-Options dropped from the /static/ location (the guide's own bug), reload",
          *_static_xfo),
    Drift("tls-1.1", ("TLS-PROTOCOLS",),
          "web1: ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3, reload (OpenSSL 3 and the guide's GCM-only "
          "ciphers still refuse a 1.1 handshake: the configuration shows it, a scan does not)",
          *_tls11),
    Drift("ufw-postgres-public", ("NET-POSTGRES-INTERNAL-ONLY", "CHK-FIREWALL-RULES-UP-TO-DATE"),
          "db1: ufw allow 5432/tcp from anywhere",
          lambda c: c.sh("db1", "ufw allow 5432/tcp >/dev/null"),
          lambda c: c.sh("db1", "ufw delete allow 5432/tcp >/dev/null")),
    Drift("fail2ban-stopped",
          ("SEC-FAIL2BAN-RUNNING", "SEC-FAIL2BAN-SSHD-JAIL", "CHK-SERVICES-RUNNING"),
          "db1: service fail2ban stop",
          lambda c: c.sh("db1", "service fail2ban stop >/dev/null"),
          lambda c: c.sh("db1", "service fail2ban start >/dev/null")),
    Drift("backup-cron-removed", ("BAK-CRON-DB",),
          "db1: the backup_db.sh line removed from root's crontab",
          lambda c: c.sh("db1", "crontab -l | grep -v backup_db.sh | crontab -"),
          lambda c: c.sh("db1", "crontab /etc/pynomaly/crontab")),
    Drift("app-replica-stopped",
          ("SCALE-INSTANCES-MATCH-UPSTREAM", "CHK-SERVICES-RUNNING", "MON-TARGETS-UP",
           "APP-CONTAINERS-HEALTHY", "APP-GUNICORN-BIND"),
          f"docker stop {app_container_name(3)} (port 8002; restart policy on-failure keeps it down)",
          lambda c: c.client.containers.get(app_container_name(3)).stop(timeout=20),
          lambda c: c.client.containers.get(app_container_name(3)).start()),
    Drift("env-debug-true", ("APP-ENV-DEBUG",),
          f"web1: DEBUG=true in {ENV_FILE}", *_debug),
    Drift("env-file-world-readable", ("SEC-ENV-FILE-MODE", "SEC-APP-DIR-MODE"),
          f"web1: chmod 644 {ENV_FILE} (guide: 600; also grants 'others' read under /opt/pynomaly)",
          lambda c: c.sh("web1", f"chmod 644 {ENV_FILE}"),
          lambda c: c.sh("web1", f"chmod 600 {ENV_FILE}")),
    Drift("pg-hba-mode", ("SEC-PG-HBA-MODE",),
          "db1: chmod 644 /etc/postgresql/15/main/pg_hba.conf (guide: 600)",
          lambda c: c.sh("db1", "chmod 644 /etc/postgresql/15/main/pg_hba.conf"),
          lambda c: c.sh("db1", "chmod 600 /etc/postgresql/15/main/pg_hba.conf")),
    Drift("prometheus-rule-for", ("MON-ALERT-HIGH-ERROR-RATE",),
          "web1: HighErrorRate 'for: 5m' changed to 'for: 1m', Prometheus reloaded", *_rule_for),
)


def by_name(name: str) -> Drift:
    for drift in REGISTRY:
        if drift.name == name:
            return drift
    known = ", ".join(d.name for d in REGISTRY)
    raise ProvisionError(f"unknown drift {name!r}; known: {known}")


def catalogue_ids(path: Path = CATALOGUE) -> set[str] | None:
    """Requirement ids of the catalogue, or None when it is not there."""
    if not path.exists():
        return None
    return {r["id"] for r in yaml.safe_load(path.read_text())["requirements"]}


def unknown_ids() -> dict[str, list[str]]:
    """Drift name -> ids it names that the catalogue lacks (empty when all are known)."""
    ids = catalogue_ids()
    if ids is None:
        return {}
    bad = {d.name: [r for r in d.requirements if r not in ids] for d in REGISTRY}
    return {k: v for k, v in bad.items() if v}


def print_list() -> None:
    width = max(len(d.name) for d in REGISTRY)
    for d in REGISTRY:
        print(f"{d.name:{width}}  {','.join(d.requirements)}  {d.description}")


def _ctx() -> tuple[Ctx, State, dict]:
    st = State()
    record = st.load()
    if not record:
        raise ProvisionError("no deployment: run `python -m provision up` first")
    client = docker_engine.client_or_none()
    if client is None:
        raise ProvisionError("no Docker engine answers")
    return Ctx(client, st), st, record


def apply(name: str) -> None:
    drift = by_name(name)
    ctx, st, record = _ctx()
    applied = record.setdefault("drifts", [])
    if name in applied:
        step(f"drift {name} is already applied")
        return
    step(f"applying drift {name}: {drift.description}")
    drift.apply(ctx)
    applied.append(name)
    st.save(record)
    step(f"breaks: {', '.join(drift.requirements)}  (undo: python -m provision heal)")


def heal() -> None:
    ctx, st, record = _ctx()
    applied = record.get("drifts", [])
    if not applied:
        step("no drift applied; nothing to heal")
        return
    for name in reversed(list(applied)):
        step(f"healing {name}")
        by_name(name).heal(ctx)
        applied.remove(name)
        st.save(record)
    step("healed")
