"""Unit states (`systemctl is-active`) and functional probes of the fleet, run inside the hosts."""

from __future__ import annotations

import shlex

import docker

from .. import containers
from ..health import settle
from ..ui import step
from .state import FleetState
from .topology import APP_PORTS, CLUSTER_PORTS, HOSTS, PUBLIC_NAME, Host, host

CA_IN_WEB = f"/etc/letsencrypt/live/{PUBLIC_NAME}/chain.pem"


def unit_states(container, units: tuple[str, ...]) -> dict[str, str]:
    """``systemctl is-active`` of each unit: {unit: active|inactive|failed|activating|...}."""
    names = " ".join(shlex.quote(u) for u in units)
    _, out = containers.run(container, f"for u in {names}; do echo \"$u $(systemctl is-active $u)\"; done",
                            check=False, timeout=30)
    states = dict(line.split(None, 1) for line in out.splitlines() if len(line.split()) == 2)
    return {u: states.get(u, "unknown").strip() for u in units}


def probes(h: Host) -> dict[str, str]:
    """Functional checks of host ``h``: {what: shell command that must exit 0}."""
    checks: dict[str, str] = {}
    redis = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --no-auth-warning'
    if h.has("db_primary"):
        checks["postgresql accepts connections"] = "pg_isready -q -h localhost"
    if h.has("db_replica"):
        checks["postgresql is a hot standby"] = (
            "[ \"$(runuser -u postgres -- psql -qtAX -c 'SELECT pg_is_in_recovery()')\" = t ]")
    if h.has("redis"):
        checks["redis answers PING"] = f"{redis} -p 6379 ping | grep -q PONG"
    if h.has("redis_cluster"):
        for port in CLUSTER_PORTS:
            checks[f"redis cluster node {port} is ok"] = f"{redis} -p {port} cluster info | grep -q cluster_state:ok"
    if h.has("web"):
        checks["nginx serves https://pynomaly.test/health"] = (
            f"curl -fsS -o /dev/null --max-time 5 --cacert {CA_IN_WEB} "
            f"--resolve {PUBLIC_NAME}:443:127.0.0.1 https://{PUBLIC_NAME}/health")
    if h.has("monitoring"):
        checks["prometheus is ready"] = "curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:9090/-/ready"
        checks["alertmanager is ready"] = "curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:9093/-/ready"
    if h.has("app"):
        for port in APP_PORTS:
            checks[f"the replica on {port} answers /health"] = (
                f"curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:{port}/health")
        checks["3 replicas healthy (Docker HEALTHCHECK)"] = (
            "[ \"$(docker ps --filter label=com.docker.compose.service=pynomaly-app "
            f"--filter health=healthy -q | wc -l)\" -ge {len(APP_PORTS)} ]")
    return checks


def host_problems(client: docker.DockerClient, h: Host, env: dict[str, str]) -> list[str]:
    c = containers.get(client, h.container)
    if c is None:
        return [f"{h.name}: container missing"]
    c.reload()
    if c.status != "running":
        return [f"{h.name}: container {c.status}"]
    found = [f"{h.name}: {u} is {s}" for u, s in unit_states(c, h.all_units).items() if s != "active"]
    for what, cmd in probes(h).items():
        if containers.run(c, cmd, env=env, check=False)[0]:
            found.append(f"{h.name}: {what} failed")
    return found


def problems(client: docker.DockerClient, st: FleetState) -> list[str]:
    """Everything that is not up, as "host: what" strings (empty when healthy); hosts in parallel."""
    from ..setup import parallel

    env = {"REDIS_PASSWORD": st.secret("redis_password")}
    return [p for found in parallel(lambda h: host_problems(client, h, env), HOSTS) for p in found]


def wait_healthy(client: docker.DockerClient, st: FleetState, timeout: float = 240) -> None:
    """Poll until every unit is active and every probe answers (see provision.health.settle)."""
    settle("every unit is active and every probe answers", lambda: problems(client, st),
           lambda found: start_stopped(client, found), st, timeout)


def start_stopped(client: docker.DockerClient, found: list[str]) -> None:
    """`systemctl start` for each "host: unit is inactive|failed" of ``found`` (problems' words)."""
    for problem in found:
        name, _, what = problem.partition(": ")
        unit, _, state = what.rpartition(" is ")
        if state not in ("inactive", "failed"):
            continue
        step(f"{name}: starting {unit}, which was {state}")
        containers.run(containers.get(client, host(name).container),
                       f"systemctl reset-failed {shlex.quote(unit)} 2>/dev/null; systemctl start {shlex.quote(unit)}",
                       check=False, timeout=90)


def web1_container(client: docker.DockerClient):
    return client.containers.get(host("web1").container)
