"""Docker helpers: create a host container, copy files into it, run commands in it."""

from __future__ import annotations

import io
import tarfile
import time

import docker
from docker.errors import NotFound
from docker.models.containers import Container

from .roles import Dir, File
from .topology import LABEL, NETWORK, Host
from .ui import ProvisionError

STOP_TIMEOUT = 30


def get(client: docker.DockerClient, name: str) -> Container | None:
    try:
        return client.containers.get(name)
    except NotFound:
        return None


def run(container: Container, cmd: str | list[str], env: dict | None = None,
        check: bool = True, user: str = "root", workdir: str | None = None,
        timeout: int = 300) -> tuple[int, str]:
    """Run ``cmd`` (a shell string or argv) in ``container``; (exit code, output).

    Raises ProvisionError naming the host when ``check`` and the command fails, or
    when it runs longer than ``timeout`` seconds (coreutils timeout in the container).
    The environment is never echoed (it carries secrets).
    """
    argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    argv = ["timeout", "--kill-after=10", str(timeout), *argv]
    code, out = container.exec_run(argv, environment=env or {}, user=user, workdir=workdir)
    if code == 124:
        raise ProvisionError(f"{container.name}: `{argv[3:]}` did not finish within {timeout}s")
    text = out.decode(errors="replace") if out else ""
    if check and code != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        raise ProvisionError(f"{container.name}: `{shown}` exited {code}:\n{text[-2000:]}")
    return code, text


def user_ids(client: docker.DockerClient, image: str) -> dict[str, int]:
    """Map user and group names to ids in ``image`` ("u:postgres", "g:redis", ...)."""
    out = client.containers.run(image, entrypoint=["/bin/sh", "-c", "getent passwd; getent group"],
                                remove=True)
    ids: dict[str, int] = {}
    for line in out.decode().splitlines():
        fields = line.split(":")
        if len(fields) == 7:
            ids[f"u:{fields[0]}"] = int(fields[2])
        elif len(fields) == 4:
            ids[f"g:{fields[0]}"] = int(fields[2])
    return ids


def tar_of(items: list[File | Dir], ids: dict[str, int]) -> bytes:
    """A tar archive (paths relative to /) with the owners and modes of ``items``."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for item in items:
            user, group = item.owner.split(":")
            info = tarfile.TarInfo(item.dest.lstrip("/"))
            info.uid, info.gid = ids[f"u:{user}"], ids[f"g:{group}"]
            info.uname, info.gname = user, group
            info.mode, info.mtime = item.mode, now
            if isinstance(item, Dir):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(item.content)
                tar.addfile(info, io.BytesIO(item.content))
    return buf.getvalue()


def put(container: Container, items: list[File | Dir], ids: dict[str, int]) -> None:
    """Copy ``items`` into ``container`` (works before it is started)."""
    if not container.put_archive("/", tar_of(items, ids)):
        raise ProvisionError(f"{container.name}: copying configuration files failed")


def create_host(client: docker.DockerClient, h: Host, image: str, labels: dict[str, str],
                extra_hosts: dict[str, str] | None = None,
                binds: dict[str, dict] | None = None) -> Container:
    """Create (not start) the container of host ``h`` on the deployment network."""
    api = client.api
    host_config = api.create_host_config(
        port_bindings={f"{p}/tcp": [(h.public_ip, p), (h.second_ip, p)] for p in h.ports},
        cap_add=["NET_ADMIN"], init=True, shm_size="256m",
        extra_hosts=extra_hosts or {}, binds=binds or {},
        restart_policy={"Name": "unless-stopped"},
    )
    networking = api.create_networking_config(
        {NETWORK: api.create_endpoint_config(ipv4_address=h.ip, aliases=[h.name])})
    created = api.create_container(
        image, name=h.name, hostname=h.name, detach=True,
        ports=[(p, "tcp") for p in h.ports], host_config=host_config,
        networking_config=networking, labels={LABEL: "1", **labels},
        stop_signal="SIGTERM", stop_timeout=STOP_TIMEOUT,
    )
    return client.containers.get(created["Id"])
