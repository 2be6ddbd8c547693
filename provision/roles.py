"""What goes on each host: rendered files (with owner and mode) and setup scripts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import render
from .state import State
from .topology import DEPLOYMENT_NET, HOSTS, PUBLIC_NAME, Host, host

SETUP_DIR = "/usr/local/sbin"


@dataclass(frozen=True)
class File:
    """One file to place in a container before it starts."""

    dest: str
    content: bytes
    mode: int = 0o644
    owner: str = "root:root"


@dataclass(frozen=True)
class Dir:
    """A directory that the role needs and the image does not have."""

    dest: str
    mode: int = 0o755
    owner: str = "root:root"


def context(h: Host, st: State) -> dict[str, str]:
    """Template values for host ``h`` (secrets upper-cased: db_password -> DB_PASSWORD)."""
    ctx = {name.upper(): value for name, value in st.secrets().items()}
    ctx.update(
        HOST=h.name, IP=h.ip, ROLES=" ".join(h.roles), DEPLOYMENT_NET=DEPLOYMENT_NET, PUBLIC_NAME=PUBLIC_NAME,
        WEB_IP=host("web1").ip, PRIMARY_IP=host("db1").ip, REPLICA_IP=host("db2").ip,
        DB_HOST="db1", REDIS_HOST="cache1",
    )
    return ctx


def _tpl(relpath: str, ctx: dict[str, str]) -> bytes:
    return render.render(relpath, ctx)


def _common(h: Host, st: State, ctx: dict) -> list[File | Dir]:
    hostkey = st.host_key_path(h.name)
    return [
        Dir("/etc/pynomaly"),
        File("/etc/pynomaly/services", ("\n".join(h.all_services) + "\n").encode()),
        File("/etc/ssh/ssh_host_ed25519_key", hostkey.read_bytes(), 0o600),
        File("/etc/ssh/ssh_host_ed25519_key.pub", hostkey.with_suffix(".pub").read_bytes()),
        Dir("/root/.ssh", 0o700),
        File("/root/.ssh/authorized_keys", st.key.with_suffix(".pub").read_bytes(), 0o600),
        File("/etc/fail2ban/jail.local", _tpl("common/jail.local", ctx)),
        File("/etc/aide/aide.conf", _tpl("common/aide.conf", ctx)),
        File(f"{SETUP_DIR}/pynomaly-setup-common", _tpl("common/setup-common.sh", ctx), 0o755),
        File(f"{SETUP_DIR}/pynomaly-setup-aide", _tpl("common/setup-aide.sh", ctx), 0o755),
    ]


def _postgres(h: Host, ctx: dict) -> list[File | Dir]:
    pg = "postgres:postgres"
    return [
        File("/etc/postgresql/15/main/postgresql.conf", _tpl("db/postgresql.conf", ctx), 0o600, pg),
        File("/etc/postgresql/15/main/pg_hba.conf", _tpl("db/pg_hba.conf", ctx), 0o600, pg),
    ]


def _db_primary(h: Host, st: State, ctx: dict) -> list[File | Dir]:
    return _postgres(h, ctx) + [
        Dir("/opt/pynomaly", 0o750, "pynomaly:pynomaly"),
        Dir("/opt/pynomaly/scripts", 0o750, "pynomaly:pynomaly"),
        File("/opt/pynomaly/scripts/backup_db.sh", _tpl("db/backup_db.sh", ctx), 0o750,
             "pynomaly:pynomaly"),
        File("/root/.pgpass", _tpl("db/pgpass", ctx), 0o600),
        File("/etc/pynomaly/crontab", _tpl("db/crontab", ctx)),
        File(f"{SETUP_DIR}/pynomaly-setup-role", _tpl("db/setup-primary.sh", ctx), 0o755),
    ]


def _db_replica(h: Host, st: State, ctx: dict) -> list[File | Dir]:
    return _postgres(h, ctx) + [
        File("/var/lib/postgresql/.pgpass", _tpl("db/pgpass-replica", ctx), 0o600,
             "postgres:postgres"),
        File(f"{SETUP_DIR}/pynomaly-setup-role", _tpl("db/setup-replica.sh", ctx), 0o755),
    ]


def _redis(h: Host, st: State, ctx: dict) -> list[File | Dir]:
    files: list[File | Dir] = []
    if h.has("redis"):
        files.append(File("/etc/redis/redis.conf", _tpl("cache/redis.conf", ctx), 0o640,
                          "redis:redis"))
    for port in (7000, 7001):
        files.append(File(f"/etc/redis/redis-{port}.conf",
                          _tpl("cache/redis-cluster.conf", {**ctx, "PORT": str(port)}),
                          0o640, "redis:redis"))
    return files


def _web(h: Host, st: State, ctx: dict) -> list[File | Dir]:
    app = "pynomaly:pynomaly"
    cert, ca = st.cert.read_bytes(), st.ca.read_bytes()
    live = f"/etc/letsencrypt/live/{PUBLIC_NAME}"
    return [
        File("/etc/nginx/nginx.conf", _tpl("web/nginx.conf", ctx)),
        Dir("/etc/letsencrypt"), Dir("/etc/letsencrypt/live", 0o700), Dir(live),
        File(f"{live}/cert.pem", cert),
        File(f"{live}/chain.pem", ca),
        File(f"{live}/fullchain.pem", cert + ca),
        File(f"{live}/privkey.pem", st.cert_key.read_bytes(), 0o600),
        Dir("/opt/pynomaly", 0o750, app),
        Dir("/opt/pynomaly/static", 0o750, app),
        Dir("/opt/pynomaly/scripts", 0o750, app),
        File("/opt/pynomaly/static/app.css", _tpl("web/app.css", ctx), 0o750, app),
        File("/opt/pynomaly/.env.production", _tpl("web/env.production", ctx), 0o600, app),
        File("/opt/pynomaly/start_production.sh", _tpl("web/start_production.sh", ctx), 0o750, app),
        File("/opt/pynomaly/docker-compose.prod.yml", _tpl("web/docker-compose.prod.yml", ctx),
             0o750, app),
        File("/opt/pynomaly/scripts/backup_app.sh", _tpl("web/backup_app.sh", ctx), 0o750, app),
        *(File(f"/opt/pynomaly/scripts/{name}", _tpl(f"web/{name}", ctx), 0o750, app)
          for name in ("daily_maintenance.sh", "weekly_maintenance.sh", "monthly_maintenance.sh",
                       "audit_api_keys.py")),
        File("/etc/logrotate.d/pynomaly", _tpl("web/logrotate-pynomaly", ctx)),
        File("/etc/pynomaly/crontab", _tpl("web/crontab", ctx)),
        File("/etc/prometheus/prometheus.yml", _tpl("web/prometheus.yml", ctx)),
        File("/etc/prometheus/pynomaly_rules.yml", _tpl("web/pynomaly_rules.yml", ctx)),
        File("/etc/prometheus/alertmanager.yml", _tpl("web/alertmanager.yml", ctx)),
        File("/etc/default/prometheus", _tpl("web/default-prometheus", ctx)),
        File("/etc/default/prometheus-alertmanager", _tpl("web/default-alertmanager", ctx)),
        File("/etc/default/prometheus-postgres-exporter",
             _tpl("web/default-postgres-exporter", ctx), 0o600),
        File("/etc/default/prometheus-redis-exporter", _tpl("web/default-redis-exporter", ctx),
             0o600),
        File("/etc/default/prometheus-nginx-exporter", _tpl("web/default-nginx-exporter", ctx)),
        Dir("/etc/grafana"), Dir("/etc/grafana/dashboards"),
        File("/etc/grafana/dashboards/pynomaly.json", _tpl("web/pynomaly.json", ctx)),
        File(f"{SETUP_DIR}/pynomaly-setup-role", _tpl("web/setup-web.sh", ctx), 0o755),
    ]


def files_for(h: Host, st: State) -> list[File | Dir]:
    """Every file and directory host ``h`` needs, in creation order."""
    ctx = context(h, st)
    items = _common(h, st, ctx)
    if h.has("web"):
        items += _web(h, st, ctx)
    if h.has("db_primary"):
        items += _db_primary(h, st, ctx)
    if h.has("db_replica"):
        items += _db_replica(h, st, ctx)
    if h.has("redis") or h.has("redis_cluster"):
        items += _redis(h, st, ctx)
    return items


def config_hash(h: Host, st: State, image: str) -> str:
    """Digest of everything placed in ``h``: a running container with it is up to date."""
    digest = hashlib.sha256(image.encode())
    digest.update(f"{h.public_ip},{h.second_ip},{h.ports}".encode())
    for item in files_for(h, st):
        digest.update(f"{item.dest}|{item.mode:o}|{item.owner}".encode())
        if isinstance(item, File):
            digest.update(item.content)
    return digest.hexdigest()[:16]


def all_hosts() -> tuple[Host, ...]:
    return HOSTS
