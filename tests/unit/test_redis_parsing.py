# ruff: noqa: E501 - CLUSTER NODES lines are captured verbatim
"""Redis parsing (audit/probes/redis.py), on outputs captured from the reference deployment,
both directions."""

import pytest

from audit.probes.redis import (
    affinity_findings,
    bind_findings,
    config_file,
    file_value,
    memory_bytes,
    parse_info,
    parse_nodes,
    save_points,
    topology_findings,
)

# CLUSTER NODES on cache2:7001 of the reference deployment
NODES = """\
2788205a7a9a52bfa37ad84654a8193d837e04c4 172.28.77.33:7001@17001 slave 218421da2b0ed52a40da5310b1216d3ab5300b88 0 1795671089344 2 connected
b10244cc158aff3cf65687c613fe381fa03c0b38 172.28.77.31:7001@17001 slave 1ffe0a87a647bec8c781e82e8e6464d3b7cf50cf 0 1795671090348 3 connected
218421da2b0ed52a40da5310b1216d3ab5300b88 172.28.77.32:7000@17000 master - 0 1795671088000 2 connected 5461-10922
17e0e54829f298999c4a4115d9ac44b5f2e807d6 172.28.77.32:7001@17001 myself,slave ecc9322dc4fa49309a10d9e24b56bf66d1dba1af 0 1795671089000 1 connected
ecc9322dc4fa49309a10d9e24b56bf66d1dba1af 172.28.77.31:7000@17000 master - 0 1795671089000 1 connected 0-5460
1ffe0a87a647bec8c781e82e8e6464d3b7cf50cf 172.28.77.33:7000@17000 master - 0 1795671089000 3 connected 10923-16383
"""
HOSTS = {"172.28.77.31": "cache1", "172.28.77.32": "cache2", "172.28.77.33": "cache3"}


def test_reference_cluster_is_compliant():
    nodes = parse_nodes(NODES)
    assert len(nodes) == 6
    assert topology_findings(nodes, 3, 1) == []
    assert affinity_findings(nodes, HOSTS) == []


def test_stopped_replica_breaks_topology():
    text = NODES.replace("3 connected\n", "3 disconnected\n", 1).replace(" slave 2188", " slave,fail 2188")
    problems = topology_findings(parse_nodes(text), 3, 1)
    assert any("0 healthy replica" in p for p in problems)


def test_moved_replica_breaks_topology():
    text = NODES.replace("slave 1ffe0a87a647bec8c781e82e8e6464d3b7cf50cf", "slave 218421da2b0ed52a40da5310b1216d3ab5300b88")
    problems = topology_findings(parse_nodes(text), 3, 1)
    assert any("has 2 healthy" in p for p in problems)
    assert any("has 0 healthy" in p for p in problems)


def test_failover_puts_two_masters_on_one_host():
    # cache1:7001 took over from cache3:7000
    text = (NODES.replace("b10244cc158aff3cf65687c613fe381fa03c0b38 172.28.77.31:7001@17001 slave 1ffe0a87a647bec8c781e82e8e6464d3b7cf50cf 0 1795671090348 3 connected",
                          "b10244cc158aff3cf65687c613fe381fa03c0b38 172.28.77.31:7001@17001 master - 0 1795671090348 4 connected 10923-16383")
                 .replace("1ffe0a87a647bec8c781e82e8e6464d3b7cf50cf 172.28.77.33:7000@17000 master - 0 1795671089000 3 connected 10923-16383",
                          "1ffe0a87a647bec8c781e82e8e6464d3b7cf50cf 172.28.77.33:7000@17000 slave b10244cc158aff3cf65687c613fe381fa03c0b38 0 1795671089000 4 connected"))
    nodes = parse_nodes(text)
    assert topology_findings(nodes, 3, 1) == []
    assert affinity_findings(nodes, HOSTS) == ["cache1 holds 2 masters"]


def test_replica_on_its_masters_host():
    nodes = parse_nodes(NODES)
    assert affinity_findings(nodes, {**HOSTS, "172.28.77.32": "cache1"})  # cache2 is cache1: same host


def test_cluster_info():
    info = parse_info("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n")
    assert info == {"cluster_state": "ok", "cluster_slots_assigned": "16384", "cluster_slots_ok": "16384"}


@pytest.mark.parametrize(("value", "nbytes"), [("4gb", 4 * 1024**3), ("4294967296", 4294967296), ("4g", 4 * 10**9),
                                                ("100mb", 100 * 1024**2)])
def test_memory_units(value, nbytes):
    assert memory_bytes(value) == nbytes


def test_memory_units_reject_garbage():
    with pytest.raises(ValueError):
        memory_bytes("4 gigabytes")


def test_save_points():
    guide = ((900, 1), (300, 10), (60, 10000))
    assert save_points("900 1 300 10 60 10000") == guide
    assert save_points("60 10000 900 1 300 10") == guide
    assert save_points([[900, 1], [300, 10], [60, 10000]]) == guide  # the catalogue's form
    assert save_points("3600 1") != guide
    assert save_points("") == ()


CONF = """\
bind 127.0.0.1 172.28.77.31
port 6379
protected-mode yes
maxmemory 4gb
save 900 1
save 300 10
save 60 10000
# save 1 1
"""


def test_config_file_values():
    d = config_file(CONF)
    assert file_value(d, "save") == "900 1 300 10 60 10000"
    assert file_value(d, "port") == "6379"
    assert file_value(d, "maxmemory-policy") is None


@pytest.mark.parametrize(("binds", "ok"), [
    (["127.0.0.1", "172.28.77.31"], True),
    (["127.0.0.1", "-::1"], True),
    (["0.0.0.0"], False),
    (["*", "-::*"], False),
    (["127.0.0.1", "10.9.9.9"], False),      # not this host's address
    (["172.28.77.31"], False),               # no loopback
])
def test_bind(binds, ok):
    assert (bind_findings(binds, {"172.28.77.31"}) == []) is ok


# the guide's directives of /etc/redis/redis-7000.conf on the reference cache2 (conf_command's output)
NODE_CONF = """bind 127.0.0.1 172.28.77.32
port 7000
protected-mode yes
maxmemory 4gb
maxmemory-policy allkeys-lru
save 900 1
save 300 10
save 60 10000
"""
# CONFIG GET of the same node (redis-py's mapping)
NODE_RUNNING = {"bind": "127.0.0.1 172.28.77.32", "port": "7000", "protected-mode": "yes", "maxmemory": "4294967296",
                "maxmemory-policy": "allkeys-lru", "save": "900 1 300 10 60 10000"}


def node(running=NODE_RUNNING, conf=NODE_CONF, path="/etc/redis/redis-7000.conf"):
    from audit.probes.redis import KEYS, ClusterNodeView

    directives = config_file(conf)
    return ClusterNodeView("cache2", 7000, {}, (), "", None, running, path, {k: file_value(directives, k) for k in KEYS})


def test_cluster_node_settings_running_and_in_its_file():
    from audit.judge import ON_DISK, RUNNING
    from audit.probes.redis import config_get

    for key in ("maxmemory", "maxmemory-policy", "save", "protected-mode", "bind"):
        sides = node().sides(key)
        assert sides[RUNNING].value == sides[ON_DISK].value, key
    live = node(running={**NODE_RUNNING, "maxmemory-policy": "volatile-lru"}).sides("maxmemory-policy")
    assert live[RUNNING].value == "volatile-lru"  # CONFIG SET without CONFIG REWRITE
    assert live[ON_DISK].value == "allkeys-lru"
    edited = node(conf=NODE_CONF.replace("protected-mode yes", "protected-mode no")).sides("protected-mode")
    assert (edited[RUNNING].value, edited[ON_DISK].value) == ("yes", "no")  # the file, not restarted
    assert list(node(running=None).sides("maxmemory")) == [ON_DISK]  # CONFIG refused: the file only
    assert list(node(path="").sides("maxmemory")) == [RUNNING]  # started without a file
    assert config_get(["maxmemory", "0", "save", ""]) == {"maxmemory": "0", "save": ""}
