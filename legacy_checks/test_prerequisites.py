"""Guide: Prerequisites - system requirements and software dependencies, per host over SSH.

All of it comes from `server.facts`, gathered in one remote command per host.
"""

from __future__ import annotations

import re

import pytest

from audit.evidence import attach, compare
from audit.marks import per_requirement
from audit.versions import at_least, find_version

GIB = 1024**3
GB = 1000**3


def os_release(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k: v.strip().strip('"') for k, v in pairs}


@pytest.mark.requirement("PRE-OS-RELEASE")
def test_operating_system_is_a_supported_release(server, expected):
    """"Operating System: Ubuntu 20.04 LTS or later, CentOS 8+, or RHEL 8+"."""
    release = os_release(server.facts["os_release"])
    allowed = expected("PRE-OS-RELEASE")
    attach("os-release", server.facts["os_release"])
    distro, version = release.get("ID", "?"), release.get("VERSION_ID", "")
    assert distro in allowed, f"{server.name}: {release.get('PRETTY_NAME', distro)} is not one of {sorted(allowed)}"
    assert at_least(find_version(version), allowed[distro]), (
        f"{server.name}: {distro} {version} is older than {allowed[distro]}")


def _cores(server) -> int:
    return int(server.facts["nproc"] or 0)


@pytest.mark.requirement("PRE-CPU-MIN")
def test_cpu_cores_meet_the_minimum(server, expected):
    """"CPU: Minimum 4 cores"."""
    compare("cpu cores", _cores(server), f">= {expected('PRE-CPU-MIN')}")
    assert _cores(server) >= expected("PRE-CPU-MIN"), f"{server.name}: {_cores(server)} cores"


@pytest.mark.requirement("PRE-CPU-RECOMMENDED")
def test_cpu_cores_meet_the_recommendation(server, expected):
    """"CPU: ... Recommended 8+ cores"."""
    compare("cpu cores", _cores(server), f">= {expected('PRE-CPU-RECOMMENDED')}")
    assert _cores(server) >= expected("PRE-CPU-RECOMMENDED"), f"{server.name}: {_cores(server)} cores"


def _memory_gib(server) -> float:
    match = re.search(r"MemTotal:\s+(\d+) kB", server.facts["meminfo"])
    return int(match.group(1)) * 1024 / GIB if match else 0.0


# MemTotal excludes what firmware and kernel reserve: a 16 GB machine shows ~15.6 GiB.
MEMORY_SLACK = 0.95


@per_requirement("PRE-MEMORY-MIN", "PRE-MEMORY-RECOMMENDED")
def test_memory_meets(server, expected, req_id):
    """"Memory: Minimum 16GB RAM, Recommended 32GB+ RAM" (MemTotal, 5% allowance for reservations)."""
    need = float(expected(req_id))
    have = _memory_gib(server)
    compare("memory GiB (MemTotal)", round(have, 2), f">= {need} x {MEMORY_SLACK}")
    assert have >= need * MEMORY_SLACK, f"{server.name}: {have:.1f} GiB of RAM, need {need} GiB"


def _root_disk(server) -> tuple[str, int]:
    fields = server.facts["root_disk"].split()
    return (fields[0], int(fields[1])) if len(fields) >= 2 else ("?", 0)


def _root_is_ssd(server) -> tuple[bool, str]:
    """The root filesystem's device is non-rotational; in a container (overlay root), every
    physical disk the host exposes must be."""
    source, _ = _root_disk(server)
    flags = dict(line.split()[0:2] for line in server.facts["rotational"].splitlines() if len(line.split()) == 2)
    disks = {p.split("/")[3]: v for p, v in flags.items() if not re.match(r".*/(loop|ram|zram|nbd)\d", p)}
    if source.startswith("/dev/"):
        dev = source.rsplit("/", 1)[1]
        owners = [d for d in disks if dev.startswith(d)]
        if owners:
            disk = max(owners, key=len)
            return disks[disk] == "0", f"{source} on {disk}: rotational={disks[disk]}"
    return bool(disks) and all(v == "0" for v in disks.values()), f"{source}; disks: {disks}"


@per_requirement("PRE-STORAGE-MIN", "PRE-STORAGE-RECOMMENDED")
def test_storage_size(server, expected, req_id):
    """"Storage: Minimum 100GB SSD, Recommended 500GB+ SSD": size of the root filesystem, decimal GB."""
    need_gb = float(expected(req_id))
    source, size = _root_disk(server)
    compare("root filesystem", {"device": source, "size_GB": round(size / GB, 1)}, {"size_GB": f">= {need_gb}"})
    assert size / GB >= need_gb, f"{server.name}: root filesystem {size / GB:.0f} GB < {need_gb:.0f} GB"


@pytest.mark.requirement("PRE-STORAGE-SSD")
def test_storage_is_ssd(server):
    """"Storage: ... SSD": the root filesystem's disk is non-rotational."""
    ssd, how = _root_is_ssd(server)
    attach("root filesystem and disks", f"{server.facts['root_disk']}\n{server.facts['rotational']}")
    assert ssd, f"{server.name}: root storage is not an SSD ({how})"


@pytest.mark.requirement("PRE-NETWORK")
def test_network_link_is_at_least_1gbps(server, expected):
    """"Network: 1Gbps network connection" (link speed of the host's interfaces, in Mb/s)."""
    speeds = {}
    for line in server.facts["nic_speed"].splitlines():
        name, _, speed = line.partition(" ")
        speeds[name] = int(speed) if speed.strip().lstrip("-").isdigit() else None
    compare("link speed Mb/s", speeds, f">= {expected('PRE-NETWORK')} on some interface")
    best = max((s for s in speeds.values() if s and s > 0), default=0)
    assert best >= expected("PRE-NETWORK"), f"{server.name}: fastest link {best or 'unknown'} Mb/s ({speeds})"


def assert_min_version(server, fact: str, req_id: str, minimum: str, after: str | None = None) -> None:
    """The shared body of every software-version check: found, and at least `minimum`."""
    text = server.facts[fact]
    found = find_version(text, after)
    compare(f"{fact} version", str(found) if found else text or "not installed", f">= {minimum}")
    assert found is not None, f"{server.name}: {fact} is not installed (or did not print a version)"
    assert at_least(found, minimum), f"{server.name}: {fact} {found} is older than {minimum}"


@pytest.mark.roles("docker")
@pytest.mark.requirement("PRE-DOCKER-VERSION")
def test_docker_engine_version(server, expected):
    """"Docker 20.10+"."""
    assert_min_version(server, "docker", "PRE-DOCKER-VERSION", expected("PRE-DOCKER-VERSION"))


@pytest.mark.roles("docker")
@pytest.mark.requirement("PRE-COMPOSE-VERSION")
def test_docker_compose_version(server, expected):
    """"Docker Compose 2.0+"."""
    assert_min_version(server, "compose", "PRE-COMPOSE-VERSION", expected("PRE-COMPOSE-VERSION"))


@pytest.mark.roles("app")
@pytest.mark.requirement("PRE-PYTHON-VERSION")
def test_python_version(server, expected):
    """"Python 3.11+"."""
    assert_min_version(server, "python", "PRE-PYTHON-VERSION", expected("PRE-PYTHON-VERSION"))


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("PRE-POSTGRES-VERSION")
def test_postgresql_version(server, expected):
    """"PostgreSQL 14+"."""
    assert_min_version(server, "postgres", "PRE-POSTGRES-VERSION", expected("PRE-POSTGRES-VERSION"),
                       after="(PostgreSQL)")


@pytest.mark.roles("redis", "redis_cluster")
@pytest.mark.requirement("PRE-REDIS-VERSION")
def test_redis_version(server, expected):
    """"Redis 7.0+"."""
    assert_min_version(server, "redis", "PRE-REDIS-VERSION", expected("PRE-REDIS-VERSION"), after="v=")


@pytest.mark.roles("web")
@pytest.mark.requirement("PRE-NGINX-VERSION")
def test_nginx_version(server, expected):
    """"NGINX 1.20+"."""
    assert_min_version(server, "nginx", "PRE-NGINX-VERSION", expected("PRE-NGINX-VERSION"), after="nginx/")


@pytest.mark.roles("web")
@pytest.mark.requirement("PRE-CERTBOT")
def test_certbot_is_installed(server):
    """"Certbot (for SSL certificates)"."""
    attach("certbot --version", server.facts["certbot"] or "not installed")
    assert find_version(server.facts["certbot"]), f"{server.name}: certbot is not installed"
