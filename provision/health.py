"""Service states and functional probes, run inside the containers."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import docker

from . import containers
from .state import State
from .topology import CLUSTER_PORTS, HOSTS, PUBLIC_NAME, Host, app_container_name, app_ports
from .ui import ProvisionError, step, wait_for

CA_IN_WEB = f"/etc/letsencrypt/live/{PUBLIC_NAME}/chain.pem"


def service_states(container, services: tuple[str, ...]) -> dict[str, bool]:
    """``service X status`` for each service: {name: running}."""
    names = " ".join(shlex.quote(s) for s in services)
    script = (f'for s in {names}; do if service "$s" status >/dev/null 2>&1; '
              'then echo "$s 1"; else echo "$s 0"; fi; done')
    _, out = containers.run(container, script, check=False)
    states = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    return {s: states.get(s) == "1" for s in services}


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
            checks[f"redis cluster node {port} is ok"] = (
                f"{redis} -p {port} cluster info | grep -q cluster_state:ok")
    if h.has("web"):
        checks["nginx serves https://pynomaly.test/health"] = (
            f"curl -fsS -o /dev/null --max-time 5 --cacert {CA_IN_WEB} "
            f"--resolve {PUBLIC_NAME}:443:127.0.0.1 https://{PUBLIC_NAME}/health")
    if h.has("monitoring"):
        checks["prometheus is ready"] = "curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:9090/-/ready"
        checks["alertmanager is ready"] = "curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:9093/-/ready"
    if h.has("app"):
        for n, port in enumerate(app_ports(), 1):
            checks[f"{app_container_name(n)} answers /health on {port}"] = (
                f"curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:{port}/health")
    return checks


def problems(client: docker.DockerClient, st: State, with_apps: bool = True) -> list[str]:
    """Everything that is not up, as "host: service" strings (empty when healthy)."""
    env = {"REDIS_PASSWORD": st.secret("redis_password")}
    found: list[str] = []
    for h in HOSTS:
        container = containers.get(client, h.name)
        if container is None:
            found.append(f"{h.name}: container missing")
            continue
        container.reload()
        if container.status != "running":
            found.append(f"{h.name}: container {container.status}")
            continue
        found += [f"{h.name}: {s} is stopped"
                  for s, ok in service_states(container, h.all_services).items() if not ok]
        for what, cmd in probes(h).items():
            if not with_apps and "pynomaly-app" in what:
                continue
            code, _ = containers.run(container, cmd, env=env, check=False)
            if code:
                found.append(f"{h.name}: {what} failed")
    if with_apps:
        found += app_problems(client)
    return found


def app_problems(client: docker.DockerClient) -> list[str]:
    """App containers that are not running or whose Docker HEALTHCHECK is not healthy."""
    found = []
    for n, _ in enumerate(app_ports(), 1):
        name = app_container_name(n)
        c = containers.get(client, name)
        if c is None:
            found.append(f"web1: {name} missing")
            continue
        health = c.attrs["State"].get("Health", {}).get("Status", "none")
        if c.status != "running" or health not in ("healthy", "none"):
            found.append(f"web1: {name} {c.status}, health {health}")
    return found


def wait_healthy(client: docker.DockerClient, st: State, timeout: float = 240) -> None:
    """Poll until every service of every host is up (see `settle`)."""
    settle("every service is healthy", lambda: problems(client, st), lambda found: start_stopped(client, found),
           st, timeout)


def settle(what: str, look: Callable[[], list[str]], start: Callable[[list[str]], None],
           st, timeout: float = 240) -> None:
    """Poll ``look`` (the problems, as "host: what" strings) until it finds none; name what is
    left on timeout. What the first look finds stopped, ``start`` starts once: `up` brings the
    deployment up, it does not only wait (both flavours). Not while drifts are recorded: a
    stopped daemon may be one of them, and only its heal restores it."""
    step(f"waiting until {what}")
    last = look()
    if not last:
        return
    if not st.load().get("drifts"):
        start(last)

    def ok() -> bool:
        nonlocal last
        last = look()
        return not last

    try:
        wait_for(what, ok, timeout=timeout, interval=2)
    except ProvisionError:
        raise ProvisionError("not healthy after {:.0f}s: {}".format(timeout, "; ".join(last))) from None


def start_stopped(client: docker.DockerClient, found: list[str]) -> None:
    """`service X start` for each "host: X is stopped" of ``found`` (problems' words)."""
    for problem in found:
        name, _, what = problem.partition(": ")
        if not what.endswith(" is stopped"):
            continue
        service = what.removesuffix(" is stopped")
        step(f"{name}: starting {service}, which was stopped")
        containers.run(containers.get(client, name), f"service {shlex.quote(service)} start >/dev/null 2>&1",
                       check=False, timeout=60)
