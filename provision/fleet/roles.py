"""What goes on each fleet host: the reference's rendered files wherever they apply (rendered with
the fleet's addresses), the fleet's own where the shape differs (provision/files/fleet/)."""

from __future__ import annotations

import hashlib
import re

from .. import render
from .. import roles as ref
from ..roles import SETUP_DIR, Dir, File
from ..state import ROOT
from .state import FleetState
from .topology import AUDIT_USER, DEPLOYMENT_NET, HOSTS, PUBLIC_NAME, Host, host

APP_OWNER = "pynomaly:pynomaly"
APP_HOST = "app1"
SUDOERS = f"/etc/sudoers.d/{AUDIT_USER}"
INVENTORY = ROOT / "inventories" / "fleet.yml"


def context(h: Host, st: FleetState) -> dict[str, str]:
    """Template values for host ``h`` (the reference's names, the fleet's addresses)."""
    ctx = {name.upper(): value for name, value in st.secrets().items()}
    ctx.update(
        HOST=h.name, IP=h.ip, ROLES=" ".join(h.roles), DEPLOYMENT_NET=DEPLOYMENT_NET,
        PUBLIC_NAME=PUBLIC_NAME, WEB_IP=host("web1").ip, PRIMARY_IP=host("db1").ip,
        REPLICA_IP=host("db2").ip, APP_IP=host(APP_HOST).ip, REDIS_IP=host("cache1").ip,
        DB_HOST="db1", REDIS_HOST="cache1",
    )
    return ctx


def _tpl(relpath: str, ctx: dict[str, str]) -> bytes:
    return render.render(relpath, ctx)


def _by_dest(items: list[File | Dir]) -> dict[str, File | Dir]:
    return {i.dest: i for i in items}


def _replace(item: File, content: bytes) -> File:
    return File(item.dest, content, item.mode, item.owner)


# ---------------------------------------------------------------- transformations of the reference's files

def nginx_upstream(text: str, address: str, ports) -> str:
    """The reference nginx.conf with upstream pynomaly_backend on the app host's address."""
    block = re.search(r"(upstream\s+pynomaly_backend\s*\{)(.*?)(\})", text, re.S)
    body = block.group(2)
    servers = list(re.finditer(r"^([ \t]*)server\s+[\w.\-]+:\d+([^;\n]*);[ \t]*\n", body, re.M))
    indent, params = servers[0].group(1), servers[0].group(2)
    lines = "".join(f"{indent}server {address}:{p}{params};\n" for p in ports)
    new_body = body[:servers[0].start()] + lines + body[servers[-1].end():]
    return text[:block.start(2)] + new_body + text[block.end(2):]


def prometheus_app_targets(text: str, name: str, ports) -> str:
    """The reference prometheus.yml with job pynomaly scraping the app host (name:port)."""
    targets = ", ".join(f"'{name}:{p}'" for p in ports)
    new, n = re.subn(r"(job_name:\s*'pynomaly'.*?targets:\s*)\[[^\]]*\]", rf"\g<1>[{targets}]", text,
                     count=1, flags=re.S)
    assert n == 1, "prometheus.yml has no pynomaly job with static targets"
    return new


def systemd_environment(text: str) -> str:
    """An /etc/default file for a systemd EnvironmentFile= (it has no `export`)."""
    return re.sub(r"^export\s+", "", text, flags=re.M)


def cluster_conf(text: str, port: int) -> str:
    """The reference's cluster node configuration, with the pid file of Debian's redis-server@ unit."""
    text = text.replace(f"pidfile /run/redis/redis-{port}.pid", f"pidfile /run/redis-{port}/redis-server.pid")
    return text.replace(f"(init script /etc/init.d/redis-cluster-{port})",
                        f"(systemd unit redis-server@{port}, Debian's template)")


# ---------------------------------------------------------------- the audit account's sudo rules

def sudoers_file(h: Host, opt_in: frozenset[str] = frozenset()) -> File:
    """/etc/sudoers.d/auditor: the commands the default audit runs as root on ``h``, each with its
    fixed arguments, as an operator renders them (audit/sudo.py, `python -m audit.sudoers
    --inventory fleet --host NAME`); nothing else (no opt-in's writes: those are granted for their
    run only, README "What the audit account must be granted")."""
    from audit import sudoers
    from audit.inventory import load_inventory

    command = f"python -m audit.sudoers --inventory fleet --host {h.name}" + \
        (f" --opt-in {','.join(sorted(opt_in))}" if opt_in else "")
    text, _ = sudoers.sudoers(load_inventory(INVENTORY), h.name, opt_in, command=command)
    return File(SUDOERS, text.encode(), 0o440)


# ---------------------------------------------------------------- per role

def _common(h: Host, st: FleetState, ctx: dict) -> list[File | Dir]:
    hostkey = st.host_key_path(h.name)
    home = f"/home/{AUDIT_USER}"
    owner = f"{AUDIT_USER}:{AUDIT_USER}"
    setup = "fleet/setup-iptables.sh" if h.firewall == "iptables" else "common/setup-common.sh"
    return [
        Dir("/etc/pynomaly"),
        File("/etc/pynomaly/units", ("\n".join(h.all_units) + "\n").encode()),
        File("/etc/ssh/ssh_host_ed25519_key", hostkey.read_bytes(), 0o600),
        File("/etc/ssh/ssh_host_ed25519_key.pub", hostkey.with_suffix(".pub").read_bytes()),
        Dir(f"{home}/.ssh", 0o700, owner),
        File(f"{home}/.ssh/authorized_keys", st.key.with_suffix(".pub").read_bytes(), 0o600, owner),
        sudoers_file(h),
        File("/etc/fail2ban/jail.local", _tpl("common/jail.local", ctx)),
        File("/etc/aide/aide.conf", _tpl("common/aide.conf", ctx)),
        File(f"{SETUP_DIR}/pynomaly-setup-common", _tpl(setup, ctx), 0o755),
        File(f"{SETUP_DIR}/pynomaly-setup-aide", _tpl("common/setup-aide.sh", ctx), 0o755),
    ]


WEB_FROM_REFERENCE = (
    "/etc/nginx/nginx.conf", "/etc/letsencrypt", "/etc/letsencrypt/live", f"/etc/letsencrypt/live/{PUBLIC_NAME}",
    f"/etc/letsencrypt/live/{PUBLIC_NAME}/cert.pem", f"/etc/letsencrypt/live/{PUBLIC_NAME}/chain.pem",
    f"/etc/letsencrypt/live/{PUBLIC_NAME}/fullchain.pem", f"/etc/letsencrypt/live/{PUBLIC_NAME}/privkey.pem",
    "/opt/pynomaly", "/opt/pynomaly/static", "/opt/pynomaly/static/app.css",
)
MONITORING_FROM_REFERENCE = (
    "/etc/prometheus/prometheus.yml", "/etc/prometheus/pynomaly_rules.yml", "/etc/prometheus/alertmanager.yml",
    "/etc/default/prometheus", "/etc/default/prometheus-alertmanager", "/etc/default/prometheus-postgres-exporter",
    "/etc/default/prometheus-redis-exporter", "/etc/default/prometheus-nginx-exporter",
    "/etc/grafana", "/etc/grafana/dashboards", "/etc/grafana/dashboards/pynomaly.json",
)
APP_FROM_REFERENCE = (
    "/opt/pynomaly", "/opt/pynomaly/scripts", "/opt/pynomaly/.env.production", "/opt/pynomaly/start_production.sh",
    "/opt/pynomaly/scripts/backup_app.sh", "/opt/pynomaly/scripts/daily_maintenance.sh",
    "/opt/pynomaly/scripts/weekly_maintenance.sh", "/opt/pynomaly/scripts/monthly_maintenance.sh",
    "/opt/pynomaly/scripts/audit_api_keys.py", "/etc/logrotate.d/pynomaly",
)


def _web(h: Host, st: FleetState, ctx: dict, reference: dict) -> list[File | Dir]:
    app = host(APP_HOST)
    items = [reference[d] for d in WEB_FROM_REFERENCE]
    conf = reference["/etc/nginx/nginx.conf"]
    items[0] = _replace(conf, nginx_upstream(conf.content.decode(), app.ip, _app_ports()).encode())
    return items + [
        File("/etc/pynomaly/crontab", _tpl("fleet/crontab-web", ctx)),
        File(f"{SETUP_DIR}/pynomaly-setup-role", _tpl("fleet/setup-web.sh", ctx), 0o755),
    ]


def _monitoring(h: Host, st: FleetState, ctx: dict, reference: dict) -> list[File | Dir]:
    items = []
    for dest in MONITORING_FROM_REFERENCE:
        item = reference[dest]
        if dest == "/etc/prometheus/prometheus.yml":
            item = _replace(item, prometheus_app_targets(item.content.decode(), APP_HOST, _app_ports()).encode())
        elif dest.startswith("/etc/default/"):
            item = _replace(item, systemd_environment(item.content.decode()).encode())
        items.append(item)
    return items


def _app(h: Host, st: FleetState, ctx: dict, reference: dict) -> list[File | Dir]:
    items = [reference[d] for d in APP_FROM_REFERENCE]
    return items + [
        File("/opt/pynomaly/docker-compose.prod.yml", _tpl("fleet/docker-compose.prod.yml", ctx), 0o750, APP_OWNER),
        File("/opt/pynomaly/.env", _tpl("fleet/env-compose", ctx), 0o600, APP_OWNER),
        Dir("/var/log/pynomaly", 0o755, APP_OWNER),
        Dir("/etc/systemd/system/docker.service.d"),
        File("/etc/systemd/system/docker.service.d/pynomaly-app-ports.conf",
             _tpl("fleet/docker-app-ports.conf", ctx)),
        File("/etc/pynomaly/crontab", _tpl("fleet/crontab-app", ctx)),
        File(f"{SETUP_DIR}/pynomaly-setup-role", _tpl("fleet/setup-app.sh", ctx), 0o755),
    ]


def _db(h: Host, st: FleetState, ctx: dict) -> list[File | Dir]:
    items = ref._db_primary(h, st, ctx) if h.has("db_primary") else ref._db_replica(h, st, ctx)
    out = []
    for item in items:
        if item.dest == "/etc/postgresql/15/main/pg_hba.conf":
            item = _replace(item, _tpl("fleet/pg_hba.conf", ctx))
        out.append(item)
    return out


def _redis(h: Host, st: FleetState, ctx: dict) -> list[File | Dir]:
    out: list[File | Dir] = []
    for item in ref._redis(h, st, ctx):
        m = re.fullmatch(r"/etc/redis/redis-(\d+)\.conf", item.dest)
        if m:
            item = _replace(item, cluster_conf(item.content.decode(), int(m.group(1))).encode())
        out.append(item)
    for port in (7000, 7001):
        out.append(Dir(f"/var/lib/redis/{port}", 0o750, "redis:redis"))
    return out


def _app_ports() -> tuple[int, ...]:
    from .topology import APP_PORTS

    return APP_PORTS


def files_for(h: Host, st: FleetState) -> list[File | Dir]:
    """Every file and directory host ``h`` needs, in creation order."""
    ctx = context(h, st)
    items = _common(h, st, ctx)
    if h.has("web") or h.has("monitoring") or h.has("app"):
        reference = _by_dest(ref._web(h, st, ctx))
        if h.has("web"):
            items += _web(h, st, ctx, reference)
        if h.has("monitoring"):
            items += _monitoring(h, st, ctx, reference)
        if h.has("app"):
            items += _app(h, st, ctx, reference)
    if h.has("db_primary") or h.has("db_replica"):
        items += _db(h, st, ctx)
    if h.has("redis") or h.has("redis_cluster"):
        items += _redis(h, st, ctx)
    return items


def config_hash(h: Host, st: FleetState, image: str) -> str:
    """Digest of everything placed in ``h``: a running container with it is up to date."""
    digest = hashlib.sha256(image.encode())
    digest.update(f"{h.public_ip},{h.ports},{h.firewall},{h.docker_engine}".encode())
    for item in files_for(h, st):
        if item.dest == SUDOERS:  # follows audit/sudo.py: installed in place by every `up` (setup.sudoers)
            continue
        digest.update(f"{item.dest}|{item.mode:o}|{item.owner}".encode())
        if isinstance(item, File):
            digest.update(item.content)
    return digest.hexdigest()[:16]


def all_hosts() -> tuple[Host, ...]:
    return HOSTS
