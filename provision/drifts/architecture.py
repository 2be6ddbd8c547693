"""Architecture drifts (guide: Architecture Overview, Components): each breaks exactly the
requirements it names among the architecture checks."""

from __future__ import annotations

import time

from .. import containers
from ..topology import app_container_name
from ..ui import ProvisionError
from . import NGINX_RELOAD, Ctx, Drift, edit_file

NGINX_CONF = "/etc/nginx/nginx.conf"
REPLICA_CONF = "/etc/postgresql/15/main/postgresql.conf"
STOPPED_APP = app_container_name(3)


def _until(ctx: Ctx, host: str, cmd: str, what: str, seconds: int = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.sh(host, f"{cmd} >/dev/null 2>&1 && echo ok || echo no").strip() == "ok":
            return
        time.sleep(1)
    raise ProvisionError(f"{host}: {what} not within {seconds}s")


def _replica(setting: str):
    def run(ctx: Ctx) -> None:
        ctx.sh("db2", f"sed -i 's/^hot_standby = .*/hot_standby = {setting}/' {REPLICA_CONF} && "
                      "service postgresql restart >/dev/null")
        if setting == "on":
            _until(ctx, "db2", "runuser -u postgres -- psql -qtAX -d pynomaly_prod -c 'SELECT 1'",
                   "the replica answering queries")
            _until(ctx, "db2", "runuser -u postgres -- psql -qtAX -c \"SELECT 1 FROM pg_stat_wal_receiver "
                               "WHERE status = 'streaming'\" | grep -q 1", "streaming from db1")
    return run


def _app(action: str):
    def run(ctx: Ctx) -> None:
        if ctx.fleet:
            from ..fleet.drift_support import app_replica

            app_replica(ctx, 3, action)
            return
        container = ctx.client.containers.get(STOPPED_APP)
        if action == "stop":
            container.stop(timeout=20)
            return
        container.start()
        port = 8000 + int(STOPPED_APP.rsplit("-", 1)[1]) - 1
        _until(ctx, "web1", f"curl -fsS --max-time 3 http://127.0.0.1:{port}/health", f"{STOPPED_APP} /health")
    return run


def _prometheus(action: str):
    def run(ctx: Ctx) -> None:
        if ctx.fleet:  # its systemd unit
            ctx.service("web1", "prometheus", action)
        elif action == "stop":  # the init script's stop does not end the daemon in this container
            ctx.sh("web1", "kill $(cat /run/prometheus/prometheus.pid)")
        else:
            ctx.sh("web1", "service prometheus start >/dev/null")
        if action == "stop":
            _until(ctx, "web1", "! curl -fsS --max-time 2 http://127.0.0.1:9090/-/healthy", "Prometheus stopped", 30)
        if action == "start":
            _until(ctx, "web1", "curl -fsS --max-time 3 http://127.0.0.1:9090/-/ready", "Prometheus ready")
            # as before the drift: every target scraped once, Alertmanager discovered
            _until(ctx, "web1", "! curl -fsS --max-time 3 http://127.0.0.1:9090/api/v1/targets | grep -qF "
                                "'\"health\":\"unknown\"' && curl -fsS --max-time 3 "
                                "http://127.0.0.1:9090/api/v1/alertmanagers | grep -qF '\"activeAlertmanagers\":[{'",
                   "Prometheus targets scraped and Alertmanager discovered", 90)
    return run


CLUSTER_HOST = "cache3"
CLUSTER_MARK = "/var/lib/pynomaly-drift/arch-redis-port"


def _cluster_replica_port(ctx: Ctx) -> int:
    """A port on cache3 whose node is a replica (restarting it changes no slot ownership)."""
    for port in (7000, 7001):
        if "role:slave" in ctx.redis(CLUSTER_HOST, port, "info replication"):
            return port
    raise ProvisionError(f"{CLUSTER_HOST}: no cluster replica to restart")


def _cluster_off(ctx: Ctx) -> None:
    port = _cluster_replica_port(ctx)
    conf = f"/etc/redis/redis-{port}.conf"
    ctx.sh(CLUSTER_HOST, f"mkdir -p /var/lib/pynomaly-drift && echo {port} > {CLUSTER_MARK} && "
                         f"cp -p {conf} {conf}.arch-drift && sed -i 's/^cluster-enabled yes/cluster-enabled no/' {conf}"
                         f" && {ctx.service_command(f'redis-cluster-{port}', 'restart')}")
    deadline = time.monotonic() + 60
    while "cluster_enabled:0" not in _redis_try(ctx, port, "info cluster"):
        if time.monotonic() > deadline:
            raise ProvisionError(f"{CLUSTER_HOST}:{port} is not standalone after the restart")
        time.sleep(1)


def _redis_try(ctx: Ctx, port: int, args: str) -> str:
    """redis-cli on cache3 that returns '' instead of raising while the node restarts."""
    return containers.run(ctx.container(CLUSTER_HOST),
                          f"redis-cli --no-auth-warning -p {port} {args}", check=False,
                          env={"REDISCLI_AUTH": ctx.st.secret("redis_password")})[1]


def _cluster_on(ctx: Ctx) -> None:
    port = int(ctx.sh(CLUSTER_HOST, f"cat {CLUSTER_MARK}").strip())
    conf = f"/etc/redis/redis-{port}.conf"
    ctx.sh(CLUSTER_HOST, f"cp -p {conf}.arch-drift {conf} && rm -f {conf}.arch-drift {CLUSTER_MARK} && "
                         f"{ctx.service_command(f'redis-cluster-{port}', 'restart')}")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        info = _redis_try(ctx, port, "info replication")
        state = _redis_try(ctx, port, "cluster info")
        if "master_link_status:up" in info and "cluster_state:ok" in state:
            return
        time.sleep(1)
    raise ProvisionError(f"{CLUSTER_HOST}:{port} did not rejoin the cluster as a replica within 90s")


DRIFTS: tuple[Drift, ...] = (
    Drift("arch-nginx-bypasses-upstream", ("ARCH-NGINX-FRONT", "ARCH-LOAD-BALANCING", "NGINX-DOCS-PROXY"),
          "web1: every location proxies straight to 127.0.0.1:8000 instead of upstream pynomaly_backend"
          " (/docs' too: the guide's `proxy_pass http://pynomaly_backend` there is gone)",
          *edit_file("web1", NGINX_CONF,
                     "'s|proxy_pass http://pynomaly_backend;|proxy_pass http://127.0.0.1:8000;|g'",
                     NGINX_RELOAD, "arch-nginx-bypass")),
    Drift("arch-app-instance-stopped", ("ARCH-MULTIPLE-APP-INSTANCES", "ARCH-LOAD-BALANCING"),
          f"docker stop {STOPPED_APP} (one of three instances is gone; heal waits for its /health)",
          _app("stop"), _app("start")),
    Drift("arch-replica-no-hot-standby", ("ARCH-DB-READ-REPLICA",),
          f"db2: hot_standby = off in {REPLICA_CONF}, restarted (it replays WAL but refuses queries)",
          _replica("off"), _replica("on")),
    Drift("arch-redis-node-standalone", ("ARCH-REDIS-CLUSTER",),
          "cache3: a cluster replica restarted with cluster-enabled no (heal: rejoins as the same replica)",
          _cluster_off, _cluster_on),
    Drift("arch-prometheus-stopped", ("ARCH-MONITORING-STACK",),
          "web1: service prometheus stop (heal: start, wait until ready)",
          _prometheus("stop"), _prometheus("start")),
)
