"""Images: a Debian 12 base made with mmdebstrap, the host layer, the app image."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound

from .ui import ProvisionError, step

FILES = Path(__file__).parent / "files"
IMAGE_DIR = FILES / "image"
PACKAGES = IMAGE_DIR / "packages.txt"
SUITE = "bookworm"
VARIANT = "apt"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
REPO = "pynomaly-ref"
MMDEBSTRAP_TIMEOUT = 900


def packages() -> list[str]:
    """The package list of the host image (comments and blanks dropped)."""
    lines = (ln.split("#", 1)[0].strip() for ln in PACKAGES.read_text().splitlines())
    return sorted({ln for ln in lines if ln})


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def base_tag() -> str:
    """Tag of the mmdebstrap image: a hash of suite, variant, mirrors, packages."""
    spec = "\n".join([SUITE, VARIANT, *MIRRORS, *packages()]).encode()
    return f"{REPO}/base:{_digest(spec)}"


def host_tag() -> str:
    """Tag of the host layer: base tag plus the content of files/image/."""
    parts = [base_tag().encode()]
    for path in sorted(IMAGE_DIR.rglob("*")):
        if path.is_file():
            mode = b"x" if os.access(path, os.X_OK) else b"-"
            parts += [str(path.relative_to(IMAGE_DIR)).encode(), mode, path.read_bytes()]
    return f"{REPO}/host:{_digest(*parts)}"


def exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except ImageNotFound:
        return False


def _ensure_mmdebstrap() -> None:
    if shutil.which("mmdebstrap"):
        return
    step("installing mmdebstrap (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    res = subprocess.run(["apt-get", "install", "-y", "-q", "mmdebstrap"], env=env,
                         capture_output=True, text=True)
    if res.returncode:
        raise ProvisionError(f"apt-get install mmdebstrap failed:\n{res.stderr[-2000:]}")


def build_base(client: docker.DockerClient) -> str:
    """Build (once) the Debian 12 root filesystem with every package and import it."""
    tag = base_tag()
    if exists(client, tag):
        return tag
    _ensure_mmdebstrap()
    step(f"building {tag} with mmdebstrap ({len(packages())} packages, ~1-3 min)")
    with tempfile.TemporaryDirectory(prefix="pynomaly-ref-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", f"--variant={VARIANT}", "--include=" + ",".join(packages()),
               "--aptopt=Acquire::Retries \"3\"",
               "--dpkgopt=path-exclude=/usr/share/man/*",
               "--dpkgopt=path-exclude=/usr/share/locale/*",
               # no daemon may start inside the chroot while packages install
               "--essential-hook=printf '#!/bin/sh\\nexit 101\\n' > \"$1/usr/sbin/policy-rc.d\"; "
               "chmod 755 \"$1/usr/sbin/policy-rc.d\"",
               "--customize-hook=rm -f \"$1/usr/sbin/policy-rc.d\"",
               SUITE, str(tar), *MIRRORS]
        for attempt in (1, 2):  # a transient mirror or cleanup error gets one retry
            try:
                res = subprocess.run(cmd, capture_output=True, text=True,
                                     timeout=MMDEBSTRAP_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise ProvisionError(
                    f"mmdebstrap did not finish within {MMDEBSTRAP_TIMEOUT}s") from None
            if res.returncode == 0:
                break
            if attempt == 2:
                raise ProvisionError(f"mmdebstrap failed:\n{res.stderr[-3000:]}")
            step("mmdebstrap failed; retrying once")
        step(f"importing {tag}")
        repo, version = tag.split(":")
        client.api.import_image_from_file(str(tar), repository=repo, tag=version)
    return tag


def prune_old(client: docker.DockerClient, keep: set[str]) -> None:
    """Drop earlier base/host tags of this repository that no container uses."""
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith((f"{REPO}/base:", f"{REPO}/host:")) and tag not in keep:
                with contextlib.suppress(APIError):  # still used by a container
                    client.images.remove(tag)


def build_host(client: docker.DockerClient) -> str:
    """Build (once) the host layer from files/image/ on top of the base."""
    tag = host_tag()
    if exists(client, tag):
        return tag
    base = build_base(client)
    step(f"building {tag}")
    try:
        client.images.build(path=str(IMAGE_DIR), tag=tag, buildargs={"BASE": base},
                            rm=True, forcerm=True, timeout=600)
    except BuildError as exc:
        log = "".join(str(c.get("stream", "")) for c in exc.build_log)[-3000:]
        raise ProvisionError(f"building {tag} failed: {exc.msg}\n{log}") from None
    return tag


def build_app(client: docker.DockerClient) -> str | None:
    """The app image from provision.app (another module owns it); None if absent."""
    try:
        from . import app
    except ImportError:
        return None
    if not hasattr(app, "build_image"):
        return None
    base = build_base(client)
    step("app image (provision.app.build_image)")
    try:
        return app.build_image(client, base)
    except RuntimeError as exc:
        raise ProvisionError(str(exc)) from None


def remove_all(client: docker.DockerClient) -> list[str]:
    """Remove every image of this repository (``down --purge``)."""
    removed = []
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith((f"{REPO}/base:", f"{REPO}/host:", "pynomaly:")):
                client.images.remove(tag, force=True)
                removed.append(tag)
    return removed
