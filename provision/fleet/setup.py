"""Provisioning steps inside the running fleet hosts (docker exec; systemd is PID 1 in each)."""

from __future__ import annotations

import docker

from .. import containers
from .. import setup as base_setup
from ..setup import APP_WORKDIR, parallel
from ..ui import ProvisionError, step, wait_for
from . import images
from .state import FleetState
from .topology import (
    APP_PORTS,
    CLUSTER_PORTS,
    COMPOSE_FILE,
    ENABLE_AS,
    HOSTS,
    Host,
    app_container_name,
    host,
    hosts_with,
)


def ctr(client: docker.DockerClient, name: str):
    """The container of fleet host ``name``."""
    return client.containers.get(host(name).container)


def wait_systemd(client: docker.DockerClient, hosts=HOSTS, timeout: int = 120) -> None:
    """Until systemd has finished booting in every host ("running", or "degraded": a unit failed,
    which the health wait names)."""
    step("every host: waiting for systemd to finish booting")

    def booted(h: Host) -> None:
        c = client.containers.get(h.container)

        def done() -> bool:
            code, out = containers.run(c, "systemctl is-system-running", check=False, timeout=10)
            return out.strip() in ("running", "degraded")

        wait_for(f"{h.name}: systemd to finish booting", done, timeout=timeout)

    parallel(booted, hosts)


def common(client: docker.DockerClient) -> None:
    """Firewall (ufw, or the guide's iptables rules on web1) and root's crontab on every host."""
    step("every host: firewall (ufw; iptables + iptables-save on web1), root crontab")
    parallel(lambda h: containers.run(client.containers.get(h.container), "pynomaly-setup-common"), HOSTS)


def units(client: docker.DockerClient) -> None:
    """`systemctl enable --now` each host's role units (the image has them disabled); the app
    unit follows once the image is in app1's engine."""
    step("every host: systemctl enable --now its role units")

    def enable(h: Host) -> None:
        names = [ENABLE_AS.get(u, u) for u in h.units if u != "pynomaly-app"]
        if names:
            containers.run(client.containers.get(h.container),
                           f"systemctl enable --now --quiet {' '.join(names)}", timeout=180)

    parallel(enable, HOSTS)


def db_primary(client: docker.DockerClient, st: FleetState) -> None:
    base_setup.db_primary(client, st, host("db1").container)


def db_replica(client: docker.DockerClient) -> None:
    base_setup.db_replica(client, host("db2").container, host("db1").container)


def _redis(container, st: FleetState, port: int, args: str) -> str:
    env = {"REDISCLI_AUTH": st.secret("redis_password")}
    return containers.run(container, f"redis-cli --no-auth-warning -p {port} {args}", env=env)[1]


def cluster_nodes(client: docker.DockerClient, st: FleetState) -> list[dict]:
    """CLUSTER NODES as dicts: id, ip, port, master (bool), master_id."""
    out = _redis(client.containers.get(hosts_with("redis_cluster")[0].container), st,
                 CLUSTER_PORTS[0], "cluster nodes")
    nodes = []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 8:
            continue
        ip, port = f[1].split("@")[0].rsplit(":", 1)
        nodes.append({"id": f[0], "ip": ip, "port": int(port), "master": "master" in f[2],
                      "master_id": f[3] if f[3] != "-" else None})
    return nodes


def redis_cluster(client: docker.DockerClient, st: FleetState) -> None:
    """The 6-node cluster (guide: redis-cli --cluster create ... --cluster-replicas 1); every
    master's replica on another host."""
    nodes = hosts_with("redis_cluster")
    first = client.containers.get(nodes[0].container)

    def all_pong() -> bool:
        return all("PONG" in _redis(client.containers.get(h.container), st, p, "ping")
                   for h in nodes for p in CLUSTER_PORTS)

    wait_for("the Redis Cluster nodes to answer", all_pong, timeout=60)
    if "cluster_state:ok" not in _redis(first, st, CLUSTER_PORTS[0], "cluster info"):
        step("cache1..3: redis-cli --cluster create (6 nodes, --cluster-replicas 1)")
        addrs = " ".join(f"{h.ip}:{p}" for p in CLUSTER_PORTS for h in nodes)
        _redis(first, st, CLUSTER_PORTS[0], f"--cluster create {addrs} --cluster-replicas 1 --cluster-yes")
    found = cluster_nodes(client, st)
    by_id = {n["id"]: n for n in found}
    if any(by_id[n["master_id"]]["ip"] == n["ip"] for n in found if not n["master"]):
        step("cache1..3: moving replicas so none shares a host with its master")
        ips = [h.ip for h in nodes]
        masters = {n["ip"]: n for n in found if n["master"]}
        for n in found:
            target = masters[ips[(ips.index(n["ip"]) + 1) % len(ips)]]
            if not n["master"] and n["master_id"] != target["id"]:
                c = client.containers.get(next(h.container for h in nodes if h.ip == n["ip"]))
                _redis(c, st, n["port"], f"cluster replicate {target['id']}")
    wait_for("cluster_state:ok on every node", lambda: all(
        "cluster_state:ok" in _redis(client.containers.get(h.container), st, p, "cluster info")
        for h in nodes for p in CLUSTER_PORTS), timeout=60)


def web(client: docker.DockerClient) -> None:
    step("web1: /opt/pynomaly/static permissions, nginx -t and reload")
    containers.run(ctr(client, "web1"), "pynomaly-setup-role")


def app_image_current(client: docker.DockerClient, app_image: str) -> bool:
    """Does app1's engine hold the deployment's app image as pynomaly:latest?"""
    want = client.images.get(app_image).id
    code, out = containers.run(ctr(client, "app1"), "docker image inspect -f '{{.Id}}' pynomaly:latest",
                               check=False)
    return code == 0 and out.strip() == want


def app(client: docker.DockerClient, st: FleetState, app_image: str | None, first: bool) -> None:
    """The app image into app1's engine, then the guide's deploy step through the unit
    pynomaly-app.service (`docker-compose -f /opt/pynomaly/docker-compose.prod.yml up -d`);
    the first time, the indexes and the login user once the replicas answer."""
    if app_image is None:
        raise ProvisionError("provision.app.build_image is missing: cannot start the app")
    app1 = ctr(client, "app1")
    if first:
        step("app1: /opt/pynomaly permissions, log and backup folders")
        containers.run(app1, "pynomaly-setup-role")
    loaded = False
    if not app_image_current(client, app_image):
        images.load_into(host("app1").container, app_image)
        containers.run(app1, f"docker tag {app_image} pynomaly:latest")
        loaded = True
    code, _ = containers.run(app1, "systemctl is-enabled --quiet pynomaly-app", check=False)
    if code != 0:
        step(f"app1: systemctl enable --now pynomaly-app (docker-compose -f {COMPOSE_FILE} up -d)")
        containers.run(app1, "systemctl enable --now --quiet pynomaly-app", timeout=300)
    elif loaded or not replicas_running(client):
        step(f"app1: docker-compose -f {COMPOSE_FILE} up -d (systemctl reload pynomaly-app)")
        containers.run(app1, "systemctl reload-or-restart pynomaly-app", timeout=300)
    wait_replicas(client)
    if first:
        _after_migrations(client, st)


def replicas_running(client: docker.DockerClient) -> bool:
    code, out = containers.run(ctr(client, "app1"), "docker ps --filter "
                               "label=com.docker.compose.service=pynomaly-app --format '{{.Names}}'",
                               check=False)
    return code == 0 and len(out.split()) == len(APP_PORTS)


def wait_replicas(client: docker.DockerClient, timeout: float = 180) -> None:
    app1 = ctr(client, "app1")

    def healthy() -> bool:
        return all(containers.run(app1, f"curl -fsS -o /dev/null --max-time 3 http://127.0.0.1:{p}/health",
                                  check=False)[0] == 0 for p in APP_PORTS)

    try:
        wait_for("app1: the replicas to answer /health on 8000-8002", healthy, timeout=timeout, interval=2)
    except ProvisionError:
        _, logs = containers.run(app1, f"docker logs --tail 30 {app_container_name(1)} 2>&1", check=False)
        raise ProvisionError(f"app1: the replicas did not come up:\n{logs}") from None


def _after_migrations(client: docker.DockerClient, st: FleetState) -> None:
    """Indexes (guide: create_production_indexes.py) and the login user, in replica 1."""
    step("app1: production indexes and the login user (seed), in replica 1")
    app1, name = ctr(client, "app1"), app_container_name(1)
    run = f"docker exec -u pynomaly -w {APP_WORKDIR}"
    code, _ = containers.run(app1, f"{run} {name} test -f scripts/create_production_indexes.py", check=False)
    if code == 0:
        containers.run(app1, f"{run} {name} python3 scripts/create_production_indexes.py")
    containers.run(app1, f"{run} -e APP_USERNAME -e APP_PASSWORD {name} python3 -m src.pynomaly.seed",
                   env={"APP_USERNAME": st.secret("app_username"), "APP_PASSWORD": st.secret("app_password")})


def backups(client: docker.DockerClient) -> None:
    step("db1: initial database backup; app1: initial application backup")
    db1 = ctr(client, "db1")
    containers.run(db1, "/opt/pynomaly/scripts/backup_db.sh")
    containers.run(db1, "ls /opt/backups/postgres/pynomaly_backup_*.sql.gz >/dev/null")
    containers.run(ctr(client, "app1"), "/opt/pynomaly/scripts/backup_app.sh")


def vacuum(client: docker.DockerClient) -> None:
    step("db1: VACUUM ANALYZE of pynomaly_prod (the monthly maintenance task, once)")
    containers.run(ctr(client, "db1"), "runuser -u postgres -- psql -d pynomaly_prod -qc 'VACUUM ANALYZE;'")


def aide(client: docker.DockerClient) -> None:
    step("every host: AIDE database")
    parallel(lambda h: containers.run(client.containers.get(h.container), "pynomaly-setup-aide"), HOSTS)


def apt_index(client: docker.DockerClient) -> None:
    """The runner's index of the update pockets and APT's cache built from it (as the reference)."""
    base_setup.apt_index(client, [h.container for h in HOSTS])


SUDOERS_NEW = "/root/pynomaly-sudoers.new"  # outside /etc/sudoers.d until visudo has accepted it


def sudoers(client: docker.DockerClient, opt_in: frozenset[str] = frozenset()) -> None:
    """The audit account's narrow sudo rules (roles.sudoers_file, rendered from audit/sudo.py) into
    every host whose /etc/sudoers.d/auditor differs: written beside, checked by `visudo -cf`, then
    moved into place, and the whole configuration checked by `visudo -c` (a broken file would
    leave root's sudo unusable). A no-op on hosts that have it: warm `up` keeps it current when a
    probe's `$SUDO` command changes, without recreating the fleet (it is outside config_hash).
    `opt_in`: the rules of those opt-in checks too, as an operator grants them for their run
    (tests/integration: the opt-in proofs); the next `up` puts the default rules back."""
    import io
    import tarfile

    from . import roles

    def install(h: Host) -> str | None:
        c = client.containers.get(h.container)
        want = roles.sudoers_file(h, opt_in)
        code, have = containers.run(c, ["cat", want.dest], check=False)
        if code == 0 and have.encode() == want.content:
            containers.run(c, "visudo -c")  # as placed at creation: checked once it runs
            return None
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(SUDOERS_NEW.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(want.content), want.mode, 0, 0
            tar.addfile(info, io.BytesIO(want.content))
        if not c.put_archive("/", buf.getvalue()):
            raise ProvisionError(f"{h.name}: copying {SUDOERS_NEW} failed")
        containers.run(c, f"visudo -cf {SUDOERS_NEW} && chown root:root {SUDOERS_NEW} && "
                          f"chmod 0440 {SUDOERS_NEW} && mv -f {SUDOERS_NEW} {want.dest} && visudo -c")
        return h.name

    changed = [n for n in parallel(install, HOSTS) if n]
    if changed:
        step(f"{', '.join(changed)}: /etc/sudoers.d/auditor, the audit's commands only (audit/sudo.py)")
