"""up / down / status of the fleet deployment (`python -m provision --flavour fleet ...`)."""

from __future__ import annotations

import datetime as dt
import time

import docker
from docker.errors import APIError, NotFound

from .. import containers, docker_engine
from .. import deploy as ref_deploy
from .. import images as ref_images
from ..ui import step
from . import health, images, roles, setup
from .state import FleetState
from .topology import (
    AUDIT_USER,
    CONFIG_LABEL,
    GATEWAY,
    HOSTS,
    LABEL,
    NETWORK,
    PUBLIC_NAME,
    PUBLIC_URL,
    SUBNET,
    Host,
    app_container_name,
    host,
)

STOP_TIMEOUT = 30
SHM_SIZE = "256m"  # as the reference hosts (the disk-nearly-full drift fills /dev/shm)


def docker_volume(h: Host) -> str:
    """app1's /var/lib/docker: a volume (overlay2 cannot stack on the container's own overlay)."""
    return f"pynomaly-fleet_{h.name}-docker"


def ensure_network(client: docker.DockerClient) -> None:
    try:
        client.networks.get(NETWORK)
        return
    except NotFound:
        pass
    step(f"network {NETWORK} {SUBNET} (gateway {GATEWAY})")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET, gateway=GATEWAY)])
    client.networks.create(NETWORK, driver="bridge", ipam=ipam, labels={LABEL: "1"})


def _extra_hosts(h: Host) -> dict[str, str]:
    """web1 names the hosts it talks to in /etc/hosts: its restored iptables rules (netfilter-
    persistent, at boot) carry the nat table of the boot they were saved in, Docker's DNS included."""
    if h.firewall != "iptables":
        return {}
    names = {"alertmanager": "127.0.0.1"}
    names.update({o.name: o.ip for o in HOSTS if o.name != h.name})
    return names


def create_host(client: docker.DockerClient, h: Host, image: str, labels: dict[str, str]):
    """Create (not start) the container of ``h``: systemd as PID 1 (SYS_ADMIN, /run and
    /run/lock on tmpfs, the cgroup tree), NET_ADMIN for the firewall; app1 also runs Docker
    (seccomp and AppArmor unconfined, the cgroup tree writable, /var/lib/docker on a volume)."""
    api = client.api
    binds = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw" if h.docker_engine else "ro"}}
    security_opt, caps = None, ["SYS_ADMIN", "NET_ADMIN"]
    if h.docker_engine:
        # SYS_PTRACE: the engine's runc opens /proc/PID/ns/* of an app process that runs as
        # pynomaly (uid 1000); root without it is refused, and `docker exec` fails.
        caps.append("SYS_PTRACE")
        vol = docker_volume(h)
        try:
            client.volumes.get(vol)
        except NotFound:
            client.volumes.create(vol, labels={LABEL: "1"})
        binds[vol] = {"bind": "/var/lib/docker", "mode": "rw"}
        security_opt = ["seccomp=unconfined", "apparmor=unconfined"]
    host_config = api.create_host_config(
        port_bindings={f"{p}/tcp": [(h.public_ip, p)] for p in h.ports},
        cap_add=caps, security_opt=security_opt,
        tmpfs={"/run": "", "/run/lock": ""}, shm_size=SHM_SIZE, binds=binds,
        extra_hosts=_extra_hosts(h), restart_policy={"Name": "unless-stopped"},
    )
    networking = api.create_networking_config(
        {NETWORK: api.create_endpoint_config(ipv4_address=h.ip, aliases=[h.name])})
    created = api.create_container(
        image, name=h.container, hostname=h.name, detach=True,
        ports=[(p, "tcp") for p in h.ports], host_config=host_config, networking_config=networking,
        labels={LABEL: "1", **labels}, stop_signal="SIGRTMIN+3", stop_timeout=STOP_TIMEOUT,
    )
    return client.containers.get(created["Id"])


def _image_for(h: Host, host_images: dict[str, str]) -> str:
    return host_images[h.firewall]


def _current(client, st: FleetState, host_images: dict[str, str]) -> dict[str, str]:
    """Host name -> "ok" | "stopped" | "missing" | "changed"."""
    result = {}
    for h in HOSTS:
        c = containers.get(client, h.container)
        if c is None:
            result[h.name] = "missing"
        elif c.labels.get(CONFIG_LABEL) != roles.config_hash(h, st, _image_for(h, host_images)):
            result[h.name] = "changed"
        else:
            result[h.name] = "ok" if c.status == "running" else "stopped"
    return result


def _remove_containers(client: docker.DockerClient) -> list[str]:
    removed = []
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        c.remove(force=True)
        removed.append(c.name)
    return removed


def _create_hosts(client, st: FleetState, host_images: dict[str, str]) -> None:
    ids = {img: containers.user_ids(client, img) for img in set(host_images.values())}
    for h in HOSTS:
        image = _image_for(h, host_images)
        step(f"{h.name}: container {h.container} {h.ip}, published on {h.public_ip}:"
             f"{','.join(map(str, h.ports))} ({h.firewall}{', Docker engine' if h.docker_engine else ''})")
        labels = {"pynomaly-fleet.host": h.name, "pynomaly-fleet.roles": ",".join(h.groups),
                  CONFIG_LABEL: roles.config_hash(h, st, image)}
        c = create_host(client, h, image, labels)
        containers.put(c, roles.files_for(h, st), ids[image])
        c.start()


def _provision(client, st: FleetState, app_image: str | None) -> None:
    setup.wait_systemd(client)
    setup.common(client)
    setup.units(client)
    setup.db_primary(client, st)
    setup.redis_cluster(client, st)
    setup.db_replica(client)
    setup.web(client)
    setup.app(client, st, app_image, first=True)
    setup.backups(client)
    setup.vacuum(client)
    setup.aide(client)


def _deployment_record(client, st: FleetState, host_images: dict[str, str], app_image: str | None) -> dict:
    old = st.load()
    hosts = {}
    for h in HOSTS:
        hosts[h.name] = {"container": h.container, "ip": h.ip, "public_ip": h.public_ip, "ports": list(h.ports),
                         "roles": list(h.roles), "groups": list(h.groups), "units": list(h.all_units),
                         "firewall": h.firewall, "id": client.containers.get(h.container).id}
    return {
        "flavour": "fleet",
        "created_at": old.get("created_at") or dt.datetime.now(dt.UTC).isoformat(),
        "network": {"name": NETWORK, "subnet": SUBNET, "gateway": GATEWAY},
        "images": {"host": host_images["ufw"], "host_iptables": host_images["iptables"], "app": app_image},
        "public_url": PUBLIC_URL,
        "resolve": {PUBLIC_NAME: host("web1").public_ip},
        "audit_user": AUDIT_USER,
        "hosts": hosts,
        "apps": [{"name": app_container_name(n), "host": "app1"} for n in (1, 2, 3)],
        "drifts": old.get("drifts", []),
        "app_instances": 3,
    }


def up() -> None:
    """Bring the fleet up; on a healthy running one, change nothing."""
    started = time.monotonic()
    client = docker_engine.ensure_engine()
    st = FleetState()
    st.ensure()
    ref_deploy.install_deploy_repo(st)
    host_images = images.build_hosts(client)
    app_image = ref_images.build_app(client)
    ensure_network(client)
    current = _current(client, st, host_images)
    if all(v == "ok" for v in current.values()):
        step("all fleet hosts are running with the current configuration")
    elif all(v in ("ok", "stopped") for v in current.values()):
        stopped = [client.containers.get(host(n).container) for n, v in current.items() if v == "stopped"]
        for c in stopped:
            step(f"{c.name}: starting the stopped container")
            c.start()
        setup.wait_systemd(client, [h for h in HOSTS if h.container in {c.name for c in stopped}])
    else:
        if any(v != "missing" for v in current.values()):
            why = ", ".join(f"{k} {v}" for k, v in current.items() if v != "ok")
            step(f"recreating the fleet ({why})")
            _remove_containers(client)
        _create_hosts(client, st, host_images)
        _provision(client, st, app_image)
    setup.app(client, st, app_image, first=False)  # no-op when app1 runs the current image
    setup.apt_index(client)  # no-op when the hosts have it
    setup.sudoers(client)  # no-op when the hosts have the rules audit/sudo.py renders
    health.wait_healthy(client, st)
    record = _deployment_record(client, st, host_images, app_image)
    if st.load() != record:
        st.save(record)
    images.prune_old(client, set(host_images.values()))
    _summary(st, record, time.monotonic() - started)


def _summary(st: FleetState, record: dict, seconds: float) -> None:
    print(f"\nPynomaly fleet deployment is up ({seconds:.0f}s).")
    for name, h in record["hosts"].items():
        print(f"  {name:7} {h['ip']:13} ssh {AUDIT_USER}@{h['public_ip']}  {h['firewall']:8} "
              f"roles: {', '.join(h['roles'])}")
    print("  app     3 replicas by docker-compose on app1, published on 172.28.78.41:8000-8002")
    print(f"\n  URL      {PUBLIC_URL}/health  (resolve {PUBLIC_NAME} -> "
          f"{record['resolve'][PUBLIC_NAME]}, CA {st.ca})")
    print(f"  SSH      ssh -F {st.ssh_config} web1   (then sudo)")
    print(f"  state    {st.root} (secrets in {st.secrets_dir}, never printed)")
    if record["drifts"]:
        print(f"  drifts   {', '.join(record['drifts'])} applied (python -m provision --flavour fleet heal)")
    print("\n  audit:   pytest --hosts=fleet")


def down(purge: bool = False) -> None:
    """Remove the fleet's containers, network, volumes and state (and its own images with purge)."""
    client = docker_engine.client_or_none()
    st = FleetState()
    if client is not None:
        removed = _remove_containers(client)
        step(f"removed containers: {', '.join(removed) or 'none'}")
        try:
            client.networks.get(NETWORK).remove()
            step(f"removed network {NETWORK}")
        except NotFound:
            pass
        for vol in client.volumes.list(filters={"label": LABEL}):
            try:
                vol.remove(force=True)
                step(f"removed volume {vol.name}")
            except APIError as exc:
                step(f"volume {vol.name} not removed: {exc}")
        if purge:
            tags = images.remove_all(client)
            step(f"removed images: {', '.join(tags) or 'none'} (the shared base and app image stay)")
    st.remove()
    step(f"removed state {st.root}")


def status() -> int:
    """Print every host and unit; 0 when all are up, 1 otherwise."""
    client = docker_engine.client_or_none()
    if client is None:
        print("no Docker engine answers")
        return 1
    st = FleetState()
    down_count = 0
    for h in HOSTS:
        c = containers.get(client, h.container)
        if c is None or c.status != "running":
            print(f"{h.name:7} {'missing' if c is None else c.status}")
            down_count += 1
            continue
        _, system = containers.run(c, "systemctl is-system-running", check=False, timeout=10)
        print(f"{h.name:7} {h.ip} ({h.public_ip})  systemd {system.strip()}  firewall {h.firewall}")
        for unit, state in health.unit_states(c, h.all_units).items():
            print(f"    {unit:32} {state}")
            down_count += state != "active"
        if h.docker_engine:
            _, out = containers.run(c, "docker ps -a --filter label=com.docker.compose.service=pynomaly-app "
                                       "--format '{{.Names}} {{.Status}} {{.Ports}}'", check=False)
            for line in sorted(out.splitlines()):
                print(f"    {line}")
                down_count += "Up" not in line or "unhealthy" in line
    drifts = st.load().get("drifts", [])
    if drifts:
        print(f"drifts applied: {', '.join(drifts)}")
    return 1 if down_count else 0
