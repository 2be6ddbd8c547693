"""Guide: Prerequisites - system requirements and software dependencies, on every host. What is
read, and how: audit/probes/prerequisites.py (one round trip per host).

The minimum versions of Docker, Compose, Python, PostgreSQL, Redis and NGINX are catalogue value
rows (checks/values.py): the installed version, at least the guide's.
"""

from __future__ import annotations

import pytest

from audit.marks import per_requirement
from audit.probes.prerequisites import GB, MEMORY_SLACK, find_version


@pytest.mark.requirement("PRE-OS-RELEASE")
def check_operating_system_is_a_supported_release(judge, prerequisites):
    """"Operating System: Ubuntu 20.04 LTS or later, CentOS 8+, or RHEL 8+"."""
    allowed, release = judge.expected, prerequisites.os
    distro, version = release.get("ID"), find_version(release.get("VERSION_ID", ""))
    judge.that(distro in allowed and version is not None and version >= find_version(allowed[distro]),
               what="operating system", found=release.get("PRETTY_NAME") or prerequisites.os_text,
               where="/etc/os-release", expected=f"one of {allowed} (ID: minimum VERSION_ID)")


@per_requirement("PRE-CPU-MIN", "PRE-CPU-RECOMMENDED")
def check_cpu_cores(judge, prerequisites, req_id):
    """"CPU: Minimum 4 cores, Recommended 8+ cores"."""
    cores = prerequisites.cores
    judge.that(cores is not None and cores >= judge.expected, what="CPU cores", found=cores, where="nproc",
               expected=f">= {judge.expected}")


@per_requirement("PRE-MEMORY-MIN", "PRE-MEMORY-RECOMMENDED")
def check_memory(judge, prerequisites, req_id):
    """"Memory: Minimum 16GB RAM, Recommended 32GB+ RAM" (MemTotal, 5% allowance for reservations)."""
    have, need = prerequisites.memory_gib, float(judge.expected)
    judge.that(have is not None and have >= need * MEMORY_SLACK, what="memory (GiB)", where="MemTotal",
               found=None if have is None else round(have, 2), expected=f">= {need} x {MEMORY_SLACK}")


@per_requirement("PRE-STORAGE-MIN", "PRE-STORAGE-RECOMMENDED")
def check_storage_size(judge, prerequisites, req_id):
    """"Storage: Minimum 100GB SSD, Recommended 500GB+ SSD": size of the root filesystem, decimal GB."""
    size = prerequisites.root_bytes
    judge.that(size is not None and size / GB >= float(judge.expected), what="root filesystem (GB)",
               found=None if size is None else round(size / GB, 1), where=f"df / ({prerequisites.root_device})",
               expected=f">= {judge.expected}")


@pytest.mark.requirement("PRE-STORAGE-SSD")
def check_storage_is_ssd(judge, prerequisites):
    """"Storage: ... SSD": the root filesystem's disk is non-rotational."""
    judge.that(prerequisites.ssd, what="root storage", found=prerequisites.ssd_how, expected="SSD (rotational=0)",
               where="/sys/block/*/queue/rotational")


@pytest.mark.requirement("PRE-NETWORK")
def check_network_link_is_at_least_1gbps(judge, prerequisites):
    """"Network: 1Gbps network connection" (link speed of the host's interfaces, in Mb/s)."""
    best = max((s for s in prerequisites.speeds.values() if s and s > 0), default=None)
    judge.that(best is not None and best >= judge.expected, what="fastest link (Mb/s)",
               found=prerequisites.speeds or None, where="/sys/class/net/*/speed",
               expected=f">= {judge.expected} on some interface")


@pytest.mark.roles("web")
@pytest.mark.requirement("PRE-CERTBOT")
def check_certbot_is_installed(judge, prerequisites):
    """"Certbot (for SSL certificates)"."""
    judge.that(prerequisites.version("certbot") is not None, what="certbot --version",
               found=prerequisites.outputs["certbot"] or "not installed", expected="installed")
