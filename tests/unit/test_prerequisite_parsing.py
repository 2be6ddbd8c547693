"""Prerequisites parsing (audit/probes/prerequisites.py), on captured host outputs (both
directions), and the probe on one round trip's output, including a host that printed nothing."""

from types import SimpleNamespace

import pytest
from packaging.version import Version

from audit.access import MARK, parse_sections
from audit.probes import prerequisites as prereq

# captured on web1 of the reference deployment (one round trip; trimmed)
WEB1 = {
    "os_release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"',
    "nproc": "2",
    "meminfo": "MemTotal:       24683656 kB",
    "root_disk": "overlay        270553174016 27522936832 81421357056      26% /",
    "rotational": "/sys/block/loop0/queue/rotational 1\n/sys/block/vda/queue/rotational 1",
    "nic_speed": "eth0 10000",
    "python": "Python 3.11.2",
    "postgres": "",
    "redis": "",
    "nginx": "nginx version: nginx/1.22.1",
    "certbot": "certbot 2.1.0",
    "docker": "",
    "compose": "",
}


def gather(outputs: dict[str, str]):
    text = "\n".join(f"{MARK}{k}\n{v}" for k, v in outputs.items())
    access = SimpleNamespace(collect=lambda host, commands: parse_sections(text, commands))
    return prereq.prerequisites(SimpleNamespace(access=access), SimpleNamespace(name="web1", roles=set()))


@pytest.mark.parametrize(("root", "rotational", "ssd"), [
    ("/dev/nvme0n1p2", "/sys/block/nvme0n1/queue/rotational 0", True),
    ("/dev/sda1", "/sys/block/sda/queue/rotational 1", False),
    ("/dev/vda", "/sys/block/loop0/queue/rotational 1\n/sys/block/vda/queue/rotational 0", True),
    ("overlay", "/sys/block/vda/queue/rotational 1", False),
    ("overlay", "/sys/block/vda/queue/rotational 0\n/sys/block/loop3/queue/rotational 1", True),
    ("overlay", "", False),  # no disk seen: not an SSD
])
def test_root_storage_media(root, rotational, ssd):
    assert prereq.root_is_ssd(root, rotational)[0] is ssd


def test_memory_and_disk_parsing():
    assert prereq.memory_gib("MemTotal:       16303448 kB\nMemAvailable: 1 kB") == pytest.approx(15.55, abs=0.01)
    assert prereq.memory_gib("MemTotal:       16303448 kB") >= 16 * prereq.MEMORY_SLACK  # a 16 GB machine passes
    assert prereq.root_disk("/dev/sda1 107374182400 1 1 1% /") == ("/dev/sda1", 107374182400)
    assert prereq.memory_gib("") is None
    assert prereq.root_disk("") == ("?", None)


def test_os_release_and_link_speeds():
    release = prereq.os_release('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n')
    assert release["ID"] == "ubuntu"
    assert release["VERSION_ID"] == "22.04"
    assert prereq.link_speeds("eth0 1000\neth1 -1\nwlan0 ") == {"eth0": 1000, "eth1": -1, "wlan0": None}


@pytest.mark.parametrize(("tool", "text", "version"), [
    ("nginx", "nginx version: nginx/1.22.1", "1.22.1"),
    ("redis", "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1", "7.0.15"),
    ("postgres", "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", "15.20"),
    ("python", "Python 3.11.2", "3.11.2"),
    ("docker", "24.0.7", "24.0.7"),
    ("compose", "1.29.2", "1.29.2"),
])
def test_versions_as_tools_print_them(tool, text, version):
    assert prereq.find_version(text, prereq.VERSION_AFTER.get(tool)) == Version(version)


def test_probe_on_a_captured_round_trip():
    facts = gather(WEB1)
    assert facts.os["ID"] == "debian"
    assert facts.cores == 2
    assert facts.memory_gib == pytest.approx(23.54, abs=0.01)
    assert (facts.root_device, facts.root_bytes) == ("overlay", 270553174016)
    assert facts.ssd is False  # the CI machine's virtio disk says rotational=1 (waived on the reference)
    assert facts.speeds == {"eth0": 10000}
    nginx = facts.sides("nginx")["installed"]
    assert nginx.value >= facts.norm("nginx", "1.20")
    assert nginx.value < facts.norm("nginx", "9.0")
    assert facts.version("certbot") == Version("2.1.0")


def test_a_host_that_printed_nothing_has_nothing_to_pass_on():
    facts = gather(dict.fromkeys(WEB1, ""))
    assert facts.cores is None
    assert facts.memory_gib is None
    assert facts.root_bytes is None
    assert facts.ssd is False
    assert facts.speeds == {}
    assert facts.os == {}
    missing = facts.sides("python")["installed"]
    assert missing.value is None
    assert missing.shown == "not installed"
    assert facts.version("certbot") is None
