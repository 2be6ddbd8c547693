"""Find a Docker engine, or install Debian's docker.io and start dockerd."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess

import docker
from docker.errors import DockerException

from .ui import ProvisionError, step, wait_for

DOCKERD_LOG = "/var/log/dockerd.log"
START_LOCK = "/run/pynomaly-dockerd.lock"  # two provisions (the flavours' tests run side by side) start one dockerd


def _ping() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except DockerException:
        return None


def client_or_none() -> docker.DockerClient | None:
    """A client to a running engine, or None (never installs anything)."""
    return _ping()


def ensure_engine() -> docker.DockerClient:
    """Return a client to a running engine, installing/starting one as needed."""
    client = _ping()
    if client:
        return client
    if os.geteuid() != 0:
        raise ProvisionError("no Docker engine answers and provision is not root: "
                             "run as root so it can install docker.io and start dockerd")
    with open(START_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other provision may be starting it right now
        return _ping() or _start_engine()


def _start_engine() -> docker.DockerClient:
    if not shutil.which("dockerd"):
        step("installing Debian's docker.io (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "docker.io", "mmdebstrap"]):
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode:
                raise ProvisionError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    step(f"starting dockerd --userland-proxy=false (log: {DOCKERD_LOG})")
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(["dockerd", "--userland-proxy=false"], stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        return wait_for("dockerd to answer", _ping, timeout=60)
    except ProvisionError as exc:
        raise ProvisionError(f"{exc}; see {DOCKERD_LOG}") from None
