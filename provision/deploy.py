"""up / down / status of the reference deployment."""

from __future__ import annotations

import datetime as dt
import time

import docker
from docker.errors import APIError, NotFound

from . import containers, docker_engine, health, images, roles, scale, setup
from .state import State
from .topology import (
    GATEWAY,
    HOSTS,
    LABEL,
    LOG_DIR,
    LOG_VOLUME,
    NETWORK,
    PUBLIC_NAME,
    PUBLIC_URL,
    SUBNET,
    app_container_name,
    app_count,
    app_ports,
    host,
)
from .ui import step

CONFIG_LABEL = "pynomaly-ref.config"


def ensure_network(client: docker.DockerClient) -> None:
    try:
        client.networks.get(NETWORK)
        return
    except NotFound:
        pass
    step(f"network {NETWORK} {SUBNET} (gateway {GATEWAY})")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET,
                                                                        gateway=GATEWAY)])
    client.networks.create(NETWORK, driver="bridge", ipam=ipam, labels={LABEL: "1"})


def ensure_volume(client: docker.DockerClient) -> None:
    try:
        client.volumes.get(LOG_VOLUME)
    except NotFound:
        client.volumes.create(LOG_VOLUME, labels={LABEL: "1"})


DEPLOY_REPO = "deploy-repo"  # provision/files/deploy-repo -> .state/deploy-repo (audit_deploy_repo)


def install_deploy_repo(st: State) -> None:
    """A fresh copy of the deployment repository (workflow + deploy.sh) for the CI/CD checks;
    drifts edit the copy, never the committed files."""
    import shutil

    from .render import FILES

    target = st.root / DEPLOY_REPO
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(FILES / DEPLOY_REPO, target)


def _remove_containers(client: docker.DockerClient) -> list[str]:
    removed = []
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        c.remove(force=True)
        removed.append(c.name)
    return removed


def _current(client, st: State, image: str) -> dict[str, str]:
    """Host name -> "ok" | "stopped" | "missing" | "changed"."""
    result = {}
    for h in HOSTS:
        c = containers.get(client, h.name)
        if c is None:
            result[h.name] = "missing"
        elif c.labels.get(CONFIG_LABEL) != roles.config_hash(h, st, image):
            result[h.name] = "changed"
        else:
            result[h.name] = "ok" if c.status == "running" else "stopped"
    return result


def _create_hosts(client, st: State, image: str) -> None:
    ids = containers.user_ids(client, image)
    for h in HOSTS:
        step(f"{h.name}: container {h.ip}, published on {h.public_ip}:{','.join(map(str, h.ports))}")
        extra = {"alertmanager": "127.0.0.1"} if h.has("monitoring") else None
        binds = {LOG_VOLUME: {"bind": LOG_DIR, "mode": "rw"}} if h.has("app") else None
        labels = {"pynomaly-ref.host": h.name, "pynomaly-ref.roles": ",".join(h.roles),
                  CONFIG_LABEL: roles.config_hash(h, st, image)}
        c = containers.create_host(client, h, image, labels, extra, binds)
        containers.put(c, roles.files_for(h, st), ids)
        c.start()


def _provision(client, st: State, app_image: str | None) -> None:
    setup.common(client)
    setup.db_primary(client, st)
    setup.redis_cluster(client, st)
    setup.db_replica(client)
    setup.web(client)
    setup.apps(client, st, app_image)
    setup.backups(client)
    setup.vacuum(client)
    setup.aide(client)


def _deployment_record(client, st: State, host_image: str, app_image: str | None) -> dict:
    old = st.load()
    hosts = {}
    for h in HOSTS:
        hosts[h.name] = {"ip": h.ip, "public_ip": h.public_ip, "ports": list(h.ports),
                         "roles": list(h.roles), "services": list(h.all_services),
                         "container": client.containers.get(h.name).id}
    apps = [{"name": app_container_name(n), "port": port,
             "container": client.containers.get(app_container_name(n)).id}
            for n, port in enumerate(app_ports(), 1)]
    return {
        "created_at": old.get("created_at") or dt.datetime.now(dt.UTC).isoformat(),
        "network": {"name": NETWORK, "subnet": SUBNET, "gateway": GATEWAY},
        "images": {"host": host_image, "app": app_image},
        "public_url": PUBLIC_URL,
        "resolve": {PUBLIC_NAME: host("web1").public_ip},
        "hosts": hosts,
        "apps": apps,
        "drifts": old.get("drifts", []),
        "app_instances": len(apps),
    }


def up() -> None:
    """Bring the deployment up; on a healthy running one, change nothing."""
    started = time.monotonic()
    client = docker_engine.ensure_engine()
    st = State()
    st.ensure()
    install_deploy_repo(st)
    host_image = images.build_host(client)
    app_image = images.build_app(client)
    ensure_network(client)
    ensure_volume(client)
    current = _current(client, st, host_image)
    if all(v == "ok" for v in current.values()):
        step("all host containers are running with the current configuration")
    elif all(v in ("ok", "stopped") for v in current.values()):
        for name, v in current.items():
            if v == "stopped":
                step(f"{name}: starting the stopped container")
                client.containers.get(name).start()
    else:
        if any(v != "missing" for v in current.values()):
            why = ", ".join(f"{k} {v}" for k, v in current.items() if v != "ok")
            step(f"recreating the deployment ({why})")
            _remove_containers(client)
        _create_hosts(client, st, host_image)
        _provision(client, st, app_image)
    setup.apps(client, st, app_image)  # no-op when the instances are current
    scale.configure(client, app_count())  # upstream/targets/replicas follow `scale N` (no-op at 3)
    setup.apt_index(client)  # no-op when the hosts have it
    health.wait_healthy(client, st)
    record = _deployment_record(client, st, host_image, app_image)
    old = st.load()
    if {k: v for k, v in old.items()} != record:
        st.save(record)
    images.prune_old(client, {images.base_tag(), host_image})
    _summary(st, record, time.monotonic() - started)


def _summary(st: State, record: dict, seconds: float) -> None:
    print(f"\nPynomaly reference deployment is up ({seconds:.0f}s).")
    for name, h in record["hosts"].items():
        print(f"  {name:7} {h['ip']:13} ssh root@{h['public_ip']}  roles: {', '.join(h['roles'])}")
    ports = ", ".join(str(a["port"]) for a in record["apps"])
    print(f"  app     {len(record['apps'])} instances in web1's network namespace on {ports}")
    print(f"\n  URL      {PUBLIC_URL}/health  (resolve {PUBLIC_NAME} -> "
          f"{record['resolve'][PUBLIC_NAME]}, CA {st.ca})")
    print(f"  SSH      ssh -F {st.ssh_config} web1")
    print(f"  state    {st.root} (secrets in {st.secrets_dir}, never printed)")
    if record["drifts"]:
        print(f"  drifts   {', '.join(record['drifts'])} applied (python -m provision heal)")
    print("\n  audit:   pytest --hosts=local")


def down(purge: bool = False) -> None:
    """Remove containers, network and state (and images with ``purge``)."""
    client = docker_engine.client_or_none()
    st = State()
    app_image = st.load().get("images", {}).get("app")
    if client is not None:
        removed = _remove_containers(client)
        step(f"removed containers: {', '.join(removed) or 'none'}")
        try:
            client.networks.get(NETWORK).remove()
            step(f"removed network {NETWORK}")
        except NotFound:
            pass
        try:
            client.volumes.get(LOG_VOLUME).remove(force=True)
            step(f"removed volume {LOG_VOLUME}")
        except NotFound:
            pass
        if purge:
            tags = images.remove_all(client)
            if app_image:
                try:
                    client.images.remove(app_image, force=True)
                    tags.append(app_image)
                except (NotFound, APIError):
                    pass
            step(f"removed images: {', '.join(tags) or 'none'}")
    st.remove()
    step(f"removed state {st.root}")


def status() -> int:
    """Print every host and service; 0 when all run, 1 otherwise."""
    client = docker_engine.client_or_none()
    if client is None:
        print("no Docker engine answers")
        return 1
    st = State()
    down = 0
    for h in HOSTS:
        c = containers.get(client, h.name)
        if c is None or c.status != "running":
            print(f"{h.name:7} {'missing' if c is None else c.status}")
            down += 1
            continue
        print(f"{h.name:7} {h.ip} ({h.public_ip})")
        for svc, ok in health.service_states(c, h.all_services).items():
            print(f"    {svc:30} {'running' if ok else 'stopped'}")
            down += not ok
    print("apps")
    for n, port in enumerate(app_ports(), 1):
        c = containers.get(client, app_container_name(n))
        state = c.status if c is not None else "missing"
        print(f"    {app_container_name(n):30} {state} (port {port})")
        down += state != "running"
    drifts = st.load().get("drifts", [])
    if drifts:
        print(f"drifts applied: {', '.join(drifts)}")
    return 1 if down else 0
