"""The fleet's host images, on top of the reference's mmdebstrap base (one base, built once):

- `pynomaly-fleet/host:<hash>`: + systemd, Docker and Compose (files/fleet/image/);
- `pynomaly-fleet/host-iptables:<hash>`: + iptables-persistent, which removes ufw (web1).

Their own repository names: the reference's `prune_old` and `down --purge` match only
`pynomaly-ref/...` and `pynomaly:` tags, and the fleet's own never touch those.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import docker
from docker.errors import APIError, BuildError

from .. import images as ref_images
from ..ui import ProvisionError, step

IMAGE_DIR = ref_images.FILES / "fleet" / "image"
IPTABLES_DIR = IMAGE_DIR / "iptables"
REPO = "pynomaly-fleet"


def _tree_digest(first: str, root) -> str:
    parts = [first.encode()]
    for path in sorted(root.rglob("*")):
        if path.is_file() and (root == IPTABLES_DIR or IPTABLES_DIR not in path.parents):
            mode = b"x" if os.access(path, os.X_OK) else b"-"
            parts += [str(path.relative_to(root)).encode(), mode, path.read_bytes()]
    return ref_images._digest(*parts)


def host_tag() -> str:
    """The reference base tag plus the content of files/fleet/image/ (without iptables/)."""
    return f"{REPO}/host:{_tree_digest(ref_images.base_tag(), IMAGE_DIR)}"


def iptables_tag() -> str:
    return f"{REPO}/host-iptables:{_tree_digest(host_tag(), IPTABLES_DIR)}"


def _build(client: docker.DockerClient, path, tag: str, base: str) -> str:
    if ref_images.exists(client, tag):
        return tag
    step(f"building {tag}")
    try:
        client.images.build(path=str(path), tag=tag, buildargs={"BASE": base}, rm=True,
                            forcerm=True, timeout=900, labels={"pynomaly-fleet.image": "1"})
    except BuildError as exc:
        log = "".join(str(c.get("stream", "")) for c in exc.build_log)[-3000:]
        raise ProvisionError(f"building {tag} failed: {exc.msg}\n{log}") from None
    return tag


def build_hosts(client: docker.DockerClient) -> dict[str, str]:
    """{"ufw": host image, "iptables": iptables host image}, built once each."""
    base = ref_images.build_base(client)
    host = _build(client, IMAGE_DIR, host_tag(), base)
    return {"ufw": host, "iptables": _build(client, IPTABLES_DIR, iptables_tag(), host)}


def prune_old(client: docker.DockerClient, keep: set[str]) -> None:
    """Drop earlier fleet host tags that no container uses."""
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{REPO}/") and tag not in keep:
                with contextlib.suppress(APIError):
                    client.images.remove(tag)


def remove_all(client: docker.DockerClient) -> list[str]:
    """Remove the fleet's own images (`down --purge`); the shared base and app image stay."""
    removed = []
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{REPO}/"):
                with contextlib.suppress(APIError):
                    client.images.remove(tag, force=True)
                    removed.append(tag)
    return removed


def load_into(container_name: str, image: str, timeout: int = 600) -> None:
    """`docker save IMAGE | docker exec -i CONTAINER docker load`: the app image into app1's engine
    (no registry here; the guide's deploy step pulls it)."""
    step(f"{container_name}: docker save {image} | docker load (~40 s)")
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        res = subprocess.run(["docker", "exec", "-i", container_name, "docker", "load", "-q"],
                             stdin=save.stdout, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        save.kill()
        raise ProvisionError(f"docker load into {container_name} did not finish within {timeout}s") from None
    finally:
        if save.stdout:
            save.stdout.close()
    save_rc = save.wait(timeout=60)
    if save_rc or res.returncode:
        err = (save.stderr.read().decode(errors="replace") if save.stderr else "") + res.stderr
        raise ProvisionError(f"docker save {image} | docker load in {container_name} failed:\n{err[-2000:]}")
