"""`python -m provision loadgen up N | down | status`: Locust worker hosts for the load checks
(issue 20), each with its own client address on the reference deployment's network.

A load generator `lgK` is a container of its own on `pynomaly-ref` (172.28.77.20K, outside the
"internal" /25, so NGINX sees an outside client), reached over SSH like the deployment's hosts
(published on 127.77.0.20K:22, root with the deployment's key, its own host key). It runs sshd
only: it is not a deployment host and is never audited against the guide. Locust is installed
from a wheelhouse built here (pip cannot reach PyPI from inside the containers): the Locust
version of this machine's suite, for the image's Python, unpacked into
/usr/local/lib/python3.X/dist-packages of an image `pynomaly-ref/loadgen:<hash>` built on the
host image, so `python3 -m locust` works there.

`up N` writes `.state/loadgen/inventory.yml`: inventories/local.yml with absolute paths and the
N hosts in the group `loadgen` (the load checks start and stop their workers there over SSH):
`pytest --hosts=.state/loadgen/inventory.yml -m load`. `down` removes the containers and it.
Nothing of the deployment itself changes; `python -m provision down` removes them too (label).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import docker
import yaml
from docker.errors import APIError, BuildError

from audit.inventory import absolutise_paths

from . import containers, docker_engine, images, pki
from .roles import Dir, File
from .state import ROOT, State
from .topology import PUBLIC_NAME, Host, host
from .ui import ProvisionError, step

MAX_WORKERS = 8
ROLE = "loadgen"
IMAGE_REPO = f"{images.REPO}/loadgen"
LOCAL_INVENTORY = ROOT / "inventories" / "local.yml"
WORKER_LABEL = "pynomaly-ref.loadgen"


def worker(n: int) -> Host:
    """Load generator n (1..MAX_WORKERS): lgN at 172.28.77.20N, SSH on 127.77.0.20N."""
    if not 1 <= n <= MAX_WORKERS:
        raise ProvisionError(f"loadgen: 1..{MAX_WORKERS} workers")
    return Host(f"lg{n}", f"172.28.77.{200 + n}", f"127.77.0.{200 + n}", (22,), (ROLE,), ())


class LoadgenState:
    """.state/loadgen/: host keys, known_hosts (the deployment's and the workers'), the wheelhouse,
    the generated inventory."""

    def __init__(self, st: State | None = None):
        self.st = st or State()
        self.root = self.st.root / "loadgen"
        self.known_hosts = self.root / "known_hosts"
        self.inventory = self.root / "inventory.yml"
        self.record = self.root / "loadgen.json"

    def host_key(self, name: str) -> Path:
        return self.root / "ssh" / name / "ssh_host_ed25519_key"

    def ensure_keys(self, hosts: list[Host]) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for h in hosts:
            key = self.host_key(h.name)
            if not key.exists():
                private, public = pki.ssh_keypair()
                pki.write_private(key, private)
                key.with_suffix(".pub").write_bytes(public + f" root@{h.name}\n".encode())

    def write_known_hosts(self, hosts: list[Host]) -> None:
        lines = [self.st.known_hosts.read_text().rstrip("\n")] if self.st.known_hosts.exists() else []
        for h in hosts:
            kind, key = self.host_key(h.name).with_suffix(".pub").read_text().split()[:2]
            lines.append(f"[{h.public_ip}]:22,{h.public_ip} {kind} {key}")
        self.known_hosts.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- Locust for the image's Python

def image_python(client: docker.DockerClient, image: str) -> str:
    """"3.11": the python3 of the host image (the wheels must be built for it)."""
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    out = client.containers.run(image, entrypoint=["python3", "-c", code], remove=True)
    return out.decode().strip()


def locust_version() -> str:
    """The suite's own Locust (the master runs it): workers must run the same version."""
    try:
        return metadata.version("locust")
    except metadata.PackageNotFoundError:
        raise ProvisionError("Locust is not installed in this Python (the suite's .venv has it)") from None


def build_site(target: Path, wheels: Path, version: str, python: str) -> None:
    """Locust `version` and its dependencies as wheels for CPython `python` on x86_64 Linux
    (pip download on this machine, kept in `wheels`), unpacked into `target` (pip install
    --target, no index)."""
    abi = "cp" + python.replace(".", "")
    platform = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", abi]
    for tag in ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                "manylinux_2_5_x86_64", "linux_x86_64"):
        platform += ["--platform", tag]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    if not any(wheels.glob("locust-*.whl")):
        step(f"loadgen: wheelhouse of locust=={version} for Python {python} (pip download)")
        _pip([*pip, "download", f"locust=={version}", *platform, "-d", str(wheels)])
    shutil.rmtree(target, ignore_errors=True)
    _pip([*pip, "install", "--no-index", "--find-links", str(wheels), "--no-compile", *platform,
          "--target", str(target), f"locust=={version}"])
    for path in target.glob("bin"):  # console scripts point at this machine's interpreter
        shutil.rmtree(path)


def _pip(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if res.returncode:
        raise ProvisionError(f"`{' '.join(cmd[2:5])} ...` failed:\n{res.stderr[-2000:]}")


def image_tag(host_image: str, version: str) -> str:
    return f"{IMAGE_REPO}:{images._digest(host_image.encode(), version.encode())}"


def build_image(client: docker.DockerClient, host_image: str) -> str:
    """pynomaly-ref/loadgen:<hash>: the host image with Locust in python3's dist-packages."""
    version = locust_version()
    tag = image_tag(host_image, version)
    if images.exists(client, tag):
        return tag
    python = image_python(client, host_image)
    with tempfile.TemporaryDirectory(prefix="pynomaly-loadgen-") as tmp:
        site = Path(tmp) / "site"
        build_site(site, LoadgenState().root / f"wheels-{version}-py{python}", version, python)
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {host_image}\n"
            f"COPY site /usr/local/lib/python{python}/dist-packages/\n"
            "RUN python3 -c 'import locust, gevent, zmq, psutil; print(locust.__version__)'\n")
        step(f"building {tag} (Locust {version} for Python {python})")
        try:
            client.images.build(path=tmp, tag=tag, rm=True, forcerm=True, timeout=600)
        except BuildError as exc:
            log = "".join(str(c.get("stream", "")) for c in exc.build_log)[-3000:]
            raise ProvisionError(f"building {tag} failed: {exc.msg}\n{log}") from None
    for image in client.images.list(name=IMAGE_REPO):  # older tags that no container uses
        for old in image.tags:
            if old != tag:
                with contextlib.suppress(APIError):  # still used by a container
                    client.images.remove(old)
    return tag


# ---------------------------------------------------------------- containers

def running(client: docker.DockerClient) -> list:
    """The load generator containers, by number."""
    found = client.containers.list(all=True, filters={"label": WORKER_LABEL})
    return sorted(found, key=lambda c: int(c.labels.get(WORKER_LABEL, "0")))


def _create(client: docker.DockerClient, h: Host, n: int, image: str, lg: LoadgenState) -> None:
    key = lg.host_key(h.name)
    items = [
        Dir("/etc/pynomaly"),
        File("/etc/pynomaly/services", b"ssh\n"),  # sshd only: not a deployment host
        File("/etc/ssh/ssh_host_ed25519_key", key.read_bytes(), 0o600),
        File("/etc/ssh/ssh_host_ed25519_key.pub", key.with_suffix(".pub").read_bytes()),
        Dir("/root/.ssh", 0o700),
        File("/root/.ssh/authorized_keys", lg.st.key.with_suffix(".pub").read_bytes(), 0o600),
    ]
    labels = {WORKER_LABEL: str(n), "pynomaly-ref.host": h.name, "pynomaly-ref.roles": ROLE}
    step(f"{h.name}: load generator {h.ip}, SSH on {h.public_ip}:22")
    c = containers.create_host(client, h, image, labels, extra_hosts={PUBLIC_NAME: host("web1").ip})
    containers.put(c, items, {"u:root": 0, "g:root": 0})
    c.start()


def _wait_ssh(lg: LoadgenState, hosts: list[Host], timeout: float = 60) -> None:
    """Every worker answers `python3 -m locust --version` over SSH (the way the suite reaches it)."""
    deadline = time.monotonic() + timeout
    pending = list(hosts)
    last = ""
    while pending and time.monotonic() < deadline:
        for h in list(pending):
            res = subprocess.run(
                ["ssh", "-i", str(lg.st.key), "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={lg.known_hosts}",
                 "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                 "-o", "ControlPath=none", f"root@{h.public_ip}", "python3 -m locust --version"],
                capture_output=True, text=True, timeout=30, check=False)
            if res.returncode == 0:
                pending.remove(h)
            else:
                last = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.returncode}"]
                last = last[0]
        if pending:
            time.sleep(1)
    if pending:
        raise ProvisionError(f"loadgen: {', '.join(h.name for h in pending)} did not answer over SSH "
                             f"within {timeout:.0f} s: {last}")


def inventory_text(hosts: list[Host], known_hosts: Path, base: Path = LOCAL_INVENTORY) -> str:
    """inventories/local.yml with absolute paths and `hosts` in the group loadgen: each reaches
    the public name at web1's address on the deployment network (its own client address)."""
    data = yaml.safe_load(base.read_text())
    absolutise_paths(data, base.parent)
    children = data["all"].setdefault("children", {})
    children[ROLE] = {"hosts": {h.name: {"ansible_host": h.public_ip, "audit_known_hosts": str(known_hosts),
                                         "audit_resolve": {PUBLIC_NAME: host("web1").ip}} for h in hosts}}
    head = (f"# Generated by `python -m provision loadgen up {len(hosts)}` from {base.name}: do not edit.\n"
            f"# pytest --hosts={known_hosts.parent / 'inventory.yml'} -m load\n")
    return head + yaml.safe_dump(data, sort_keys=False)


def up(count: int) -> list[Host]:
    """Exactly `count` load generators (lg1..lgN), answering over SSH, and their inventory."""
    hosts = [worker(n) for n in range(1, count + 1)]
    client = docker_engine.client_or_none()
    st = State()
    record = st.load()
    if client is None or not record:
        raise ProvisionError("no deployment: run `python -m provision up` first")
    lg = LoadgenState(st)
    image = build_image(client, record["images"]["host"])
    lg.ensure_keys(hosts)
    lg.write_known_hosts(hosts)
    keep = {h.name for h in hosts}
    for c in running(client):
        if c.name not in keep or c.image.tags[:1] != [image]:
            step(f"{c.name}: removing")
            c.remove(force=True)
    present = {c.name: c for c in running(client)}
    for n, h in enumerate(hosts, 1):
        c = present.get(h.name)
        if c is None:
            _create(client, h, n, image, lg)
        elif c.status != "running":
            c.start()
    _wait_ssh(lg, hosts)
    lg.inventory.write_text(inventory_text(hosts, lg.known_hosts))
    lg.record.write_text(json.dumps({"image": image, "workers": [{"name": h.name, "ip": h.ip, "ssh": h.public_ip}
                                                                  for h in hosts]}, indent=1) + "\n")
    step(f"{count} load generator(s): {', '.join(f'{h.name} {h.ip}' for h in hosts)}")
    step(f"inventory: {lg.inventory}  (pytest --hosts={lg.inventory} -m load)")
    return hosts


def down() -> None:
    """Remove every load generator container and the generated inventory (keys are kept)."""
    client = docker_engine.client_or_none()
    removed = []
    if client is not None:
        for c in running(client):
            c.remove(force=True)
            removed.append(c.name)
    lg = LoadgenState()
    for path in (lg.inventory, lg.record):
        path.unlink(missing_ok=True)
    step(f"removed load generators: {', '.join(removed) or 'none'}")


def status() -> int:
    client = docker_engine.client_or_none()
    if client is None:
        print("no Docker engine answers")
        return 1
    found = running(client)
    for c in found:
        n = int(c.labels[WORKER_LABEL])
        print(f"{c.name:5} {worker(n).ip:15} ssh root@{worker(n).public_ip}  {c.status}")
    if not found:
        print("no load generator (python -m provision loadgen up N)")
    return 0 if all(c.status == "running" for c in found) else 1
