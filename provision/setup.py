"""Provisioning steps that run inside started containers (some span hosts)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import docker

from . import containers, images
from .state import State
from .topology import (
    APP_SERVICE,
    CLUSTER_PORTS,
    COMPOSE_PROJECT,
    HOSTS,
    LABEL,
    LOG_DIR,
    LOG_VOLUME,
    app_container_name,
    app_ports,
    host,
    hosts_with,
)
from .ui import ProvisionError, step, wait_for

APP_WORKDIR = "/app"


def parallel(fn, items) -> list:
    """Run ``fn`` over ``items`` in threads; re-raise the first error."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(fn, items))


def common(client: docker.DockerClient) -> None:
    """Firewall and crontab on every host."""
    step("every host: ufw rules, root crontab")
    parallel(lambda h: containers.run(client.containers.get(h.name), "pynomaly-setup-common"),
             HOSTS)


def db_primary(client: docker.DockerClient, st: State, name: str = "db1") -> None:
    """The guide's database, roles and grants on the primary (container ``name``)."""
    step("db1: database pynomaly_prod, roles, grants, pg_stat_statements")
    env = {k.upper(): st.secret(k) for k in ("db_password", "db_audit_password",
                                              "db_replication_password", "db_exporter_password")}
    containers.run(client.containers.get(name), "pynomaly-setup-role", env=env)


# db1's PostgreSQL as a failed replica setup sees it; log lines that could carry a password (a
# statement with PASSWORD, logged by log_statement = 'mod') are left out of the error
PRIMARY_DIAGNOSIS = ("systemctl status --no-pager -n 15 postgresql@15-main 2>&1 || service postgresql status;"
                     " ss -ltn 'sport = :5432'; tail -n 15 /var/log/postgresql/postgresql-15-main.log"
                     " | grep -vi password")


def db_replica(client: docker.DockerClient, replica: str = "db2", primary: str = "db1") -> None:
    """db2 follows db1 (pg_basebackup). When that fails, the error also shows what db1's
    PostgreSQL was doing (its unit, its listening sockets, its log), so a failure explains itself."""
    step("db2: streaming replica of db1 (pg_basebackup)")
    try:
        containers.run(client.containers.get(replica), "pynomaly-setup-role")
    except ProvisionError as exc:
        _, seen = containers.run(client.containers.get(primary), PRIMARY_DIAGNOSIS, check=False, timeout=30)
        raise ProvisionError(f"{exc}\n--- {primary} at that moment ---\n{seen[-3000:]}") from None


def _redis(container, st: State, port: int, args: str) -> str:
    env = {"REDISCLI_AUTH": st.secret("redis_password")}
    _, out = containers.run(container, f"redis-cli --no-auth-warning -p {port} {args}", env=env)
    return out


def redis_cluster(client: docker.DockerClient, st: State) -> None:
    """Create the 6-node cluster; every master's replica on another host."""
    nodes = hosts_with("redis_cluster")
    first = client.containers.get(nodes[0].name)

    def all_pong() -> bool:
        return all("PONG" in _redis(client.containers.get(h.name), st, p, "ping")
                   for h in nodes for p in CLUSTER_PORTS)

    wait_for("the Redis Cluster nodes to answer", all_pong, timeout=60)
    if "cluster_state:ok" not in _redis(first, st, CLUSTER_PORTS[0], "cluster info"):
        step("cache1..3: redis-cli --cluster create (6 nodes, --cluster-replicas 1)")
        addrs = " ".join(f"{h.ip}:{p}" for p in CLUSTER_PORTS for h in nodes)
        _redis(first, st, CLUSTER_PORTS[0],
               f"--cluster create {addrs} --cluster-replicas 1 --cluster-yes")
    _spread_replicas(client, st, nodes)
    wait_for("cluster_state:ok on every node", lambda: all(
        "cluster_state:ok" in _redis(client.containers.get(h.name), st, p, "cluster info")
        for h in nodes for p in CLUSTER_PORTS), timeout=60)


def cluster_nodes(client: docker.DockerClient, st: State) -> list[dict]:
    """CLUSTER NODES as dicts: id, ip, port, master (bool), master_id."""
    out = _redis(client.containers.get(hosts_with("redis_cluster")[0].name), st,
                 CLUSTER_PORTS[0], "cluster nodes")
    nodes = []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 8:
            continue
        addr = f[1].split("@")[0]
        ip, port = addr.rsplit(":", 1)
        nodes.append({"id": f[0], "ip": ip, "port": int(port), "master": "master" in f[2],
                      "master_id": f[3] if f[3] != "-" else None})
    return nodes


def _spread_replicas(client: docker.DockerClient, st: State, hosts) -> None:
    """If a replica sits on its master's host, move replicas to the next host's master."""
    nodes = cluster_nodes(client, st)
    by_id = {n["id"]: n for n in nodes}
    if all(by_id[n["master_id"]]["ip"] != n["ip"] for n in nodes if not n["master"]):
        return
    step("cache1..3: moving replicas so none shares a host with its master")
    ips = [h.ip for h in hosts]
    masters = {n["ip"]: n for n in nodes if n["master"]}
    for n in nodes:
        if n["master"]:
            continue
        target = masters[ips[(ips.index(n["ip"]) + 1) % len(ips)]]
        if n["master_id"] != target["id"]:
            container = client.containers.get(next(h.name for h in hosts if h.ip == n["ip"]))
            _redis(container, st, n["port"], f"cluster replicate {target['id']}")


def web(client: docker.DockerClient) -> None:
    step("web1: /opt/pynomaly permissions, nginx configuration test and reload")
    containers.run(client.containers.get("web1"), "pynomaly-setup-role")


def app_env(st: State, port: int) -> dict[str, str]:
    """The app's environment: .env.production (rendered for web1) + ENVIRONMENT + PORT."""
    from .render import render
    from .roles import context

    env = {}
    text = render("web/env.production", context(host("web1"), st)).decode()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    env.update(ENVIRONMENT="production", PORT=str(port))
    return env


def app_is_current(container, image_id: str, web1_id: str) -> bool:
    container.reload()
    return (container.status == "running" and container.image.id == image_id
            and container.attrs["HostConfig"]["NetworkMode"] == f"container:{web1_id}")


def apps(client: docker.DockerClient, st: State, app_image: str | None,
         extra_env: dict[str, dict] | None = None) -> list[str]:
    """Run the app instances (3, or as scaled) in web1's network namespace; seed the login user.
    Instances beyond the count are removed; ``extra_env`` (name -> env) is for drifts."""
    if app_image is None:
        # TODO(provision/app): build_image() not available yet -> no app instances.
        raise ProvisionError("provision.app.build_image is missing: cannot start the app")
    web1 = client.containers.get("web1")
    image_id = client.images.get(app_image).id
    # Gunicorn (uid 1000) must be able to reopen its logs; an instance run as root (a drift) or a
    # root-created file would otherwise keep every new instance from starting.
    containers.run(web1, f"cd {LOG_DIR} && for f in access.log error.log; do [ -e $f ] && "
                         "chown 1000:1000 $f; done; true")
    names = []
    for n, port in enumerate(app_ports(), 1):
        name = app_container_name(n)
        names.append(name)
        existing = containers.get(client, name)
        if existing is not None and app_is_current(existing, image_id, web1.id):
            continue
        if existing is not None:
            existing.remove(force=True)
        step(f"web1: starting {name} on 127.0.0.1:{port}")
        client.containers.run(
            app_image, name=name, detach=True, network_mode=f"container:{web1.id}",
            environment={**app_env(st, port), **(extra_env or {}).get(name, {})},
            labels={LABEL: "1", "com.docker.compose.project": COMPOSE_PROJECT,
                    "com.docker.compose.service": APP_SERVICE,
                    "com.docker.compose.container-number": str(n),
                    "com.docker.compose.oneoff": "False"},
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
            volumes={LOG_VOLUME: {"bind": LOG_DIR, "mode": "rw"}},
        )
        # The first instance runs the migrations alone; the others start after it.
        _wait_app(client, web1, name, port, timeout=120 if n == 1 else 90)
        if n == 1:
            _after_migrations(client, st, name)
    for c in client.containers.list(all=True, filters={"label": f"com.docker.compose.service={APP_SERVICE}"}):
        if c.name not in names and c.labels.get(LABEL):
            step(f"web1: removing {c.name} (scaled in)")
            c.remove(force=True)
    return names


def _wait_app(client, web1, name: str, port: int, timeout: float) -> None:
    def healthy() -> bool:
        container = client.containers.get(name)
        if container.status == "exited":
            logs = container.logs(tail=30).decode(errors="replace")
            raise ProvisionError(f"{name} exited:\n{logs}")
        code, _ = containers.run(web1, f"curl -fsS -o /dev/null --max-time 3 "
                                       f"http://127.0.0.1:{port}/health", check=False)
        return code == 0

    try:
        wait_for(f"{name} to answer /health on 127.0.0.1:{port}", healthy, timeout=timeout)
    except ProvisionError as exc:
        if "exited" in str(exc):
            raise
        logs = client.containers.get(name).logs(tail=30).decode(errors="replace")
        raise ProvisionError(f"web1: {name} did not come up on port {port}:\n{logs}") from None


def _after_migrations(client, st: State, name: str) -> None:
    """Indexes (guide: create_production_indexes.py) and the login user."""
    app = client.containers.get(name)
    step("web1: production indexes and the login user (seed)")
    code, _ = containers.run(app, ["test", "-f", "scripts/create_production_indexes.py"],
                             check=False, user="pynomaly", workdir=APP_WORKDIR)
    if code == 0:
        containers.run(app, ["python3", "scripts/create_production_indexes.py"],
                       user="pynomaly", workdir=APP_WORKDIR)
    containers.run(app, ["python3", "-m", "src.pynomaly.seed"], user="pynomaly",
                   workdir=APP_WORKDIR,
                   env={"APP_USERNAME": st.secret("app_username"),
                        "APP_PASSWORD": st.secret("app_password")})


def backups(client: docker.DockerClient) -> None:
    step("db1: initial database backup; web1: initial application backup")
    db1 = client.containers.get("db1")
    containers.run(db1, "/opt/pynomaly/scripts/backup_db.sh")
    containers.run(db1, "ls /opt/backups/postgres/pynomaly_backup_*.sql.gz >/dev/null")
    containers.run(client.containers.get("web1"), "/opt/pynomaly/scripts/backup_app.sh")


def vacuum(client: docker.DockerClient) -> None:
    """The monthly task's VACUUM ANALYZE once, as the guide runs it (sudo -u postgres psql -d
    pynomaly_prod), so a fresh database has table statistics for every table."""
    step("db1: VACUUM ANALYZE of pynomaly_prod (the monthly maintenance task, once)")
    containers.run(client.containers.get("db1"),
                   "runuser -u postgres -- psql -d pynomaly_prod -qc 'VACUUM ANALYZE;'")


def aide(client: docker.DockerClient) -> None:
    step("every host: AIDE database")
    parallel(lambda h: containers.run(client.containers.get(h.name), "pynomaly-setup-aide"),
             HOSTS)


# The package index of the pockets that carry updates (security, updates), as this machine's
# `apt-get update` fetched them from the same mirror: the hosts' apt can then tell which upgrades
# are pending (SEC-SYSTEM-UPGRADED, CHK-SECURITY-UPDATES) without network access of their own.
APT_LISTS = "/var/lib/apt/lists"
APT_POCKETS = ("deb.debian.org_debian-security_dists_bookworm-security_",
               "deb.debian.org_debian_dists_bookworm-updates_")
APT_GENCACHES = "apt-cache gencaches >/dev/null"  # a no-op while the cache is fresh


def apt_index(client: docker.DockerClient, names: list[str] | None = None) -> None:
    """Copy the runner's index of the update pockets into every host that lacks it (idempotent),
    then build APT's package cache from it, as `apt-get update` does on a real host: a host whose
    cache is missing or stale gets it rebuilt by the first `sudo unattended-upgrade --dry-run`
    (root's APT configuration applies through sudo), a write the read-only audit must not make."""
    import io
    import tarfile
    from pathlib import Path

    names = names if names is not None else [h.name for h in HOSTS]
    files = [p for p in sorted(Path(APT_LISTS).glob("*")) if p.is_file() and p.name.startswith(APT_POCKETS)]
    if not files:
        step(f"no apt index of the update pockets in {APT_LISTS} on this machine: hosts get none")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in files:
            tar.add(p, arcname=p.name)
    data = buf.getvalue()

    def copy(name: str) -> None:
        c = client.containers.get(name)
        code, _ = containers.run(c, f"ls {APT_LISTS}/{APT_POCKETS[0]}InRelease", check=False)
        if files and code != 0:
            containers.run(c, f"mkdir -p {APT_LISTS}")
            c.put_archive(APT_LISTS, data)
        containers.run(c, APT_GENCACHES)

    parallel(copy, names)


def app_image(client: docker.DockerClient) -> str | None:
    return images.build_app(client)
