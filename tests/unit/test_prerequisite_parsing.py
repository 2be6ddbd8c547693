"""Prerequisite checks' parsing, on captured host outputs (both directions)."""

from types import SimpleNamespace

import pytest

from audit.facts import FACT_COMMANDS, MARK, parse_facts
from checks import test_prerequisites as prereq


def fake(**facts):
    return SimpleNamespace(name="h1", facts={k: facts.get(k, "") for k in FACT_COMMANDS})


@pytest.mark.parametrize(("root", "rotational", "ssd"), [
    ("/dev/nvme0n1p2 512110190592 1 1 1% /", "/sys/block/nvme0n1/queue/rotational 0", True),
    ("/dev/sda1 512110190592 1 1 1% /", "/sys/block/sda/queue/rotational 1", False),
    ("/dev/vda 270000000000 1 1 1% /", "/sys/block/loop0/queue/rotational 1\n/sys/block/vda/queue/rotational 0", True),
    ("overlay 270000000000 1 1 1% /", "/sys/block/vda/queue/rotational 1", False),
    ("overlay 270000000000 1 1 1% /", "/sys/block/vda/queue/rotational 0\n/sys/block/loop3/queue/rotational 1", True),
])
def test_root_storage_media(root, rotational, ssd):
    assert prereq._root_is_ssd(fake(root_disk=root, rotational=rotational))[0] is ssd


def test_memory_and_disk_parsing():
    server = fake(meminfo="MemTotal:       16303448 kB\nMemAvailable: 1 kB",
                  root_disk="/dev/sda1 107374182400 1 1 1% /")
    assert prereq._memory_gib(server) == pytest.approx(15.55, abs=0.01)
    assert prereq._memory_gib(server) >= 16 * prereq.MEMORY_SLACK  # a 16 GB machine passes
    assert prereq._root_disk(server) == ("/dev/sda1", 107374182400)


def test_os_release_parsing():
    release = prereq.os_release('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n')
    assert release["ID"] == "ubuntu"
    assert release["VERSION_ID"] == "22.04"


def test_facts_sections_split_and_missing_ones_are_empty():
    facts = parse_facts(f"{MARK}nproc\n8\n{MARK}python\nPython 3.11.2\n")
    assert facts["nproc"] == "8"
    assert facts["python"] == "Python 3.11.2"
    assert facts["redis"] == ""
