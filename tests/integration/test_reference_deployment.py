"""The reference deployment answers over the network, as an auditor reaches it.

The session fixture `deployment` (conftest.py) runs `python -m provision up`'s code.
Every connection from here goes to a 127.77.0.x address: SSH directly, PostgreSQL,
Redis and Prometheus through SSH port forwarding, HTTPS with pynomaly.test pinned
to 127.77.0.11. The last test takes the deployment down and brings it up again.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
import time

import psycopg
import pytest
import redis
import requests

from audit.probes.network import probe_port
from provision import containers, deploy, drifts
from provision.state import State
from provision.topology import APP_PORTS, HOSTS, LABEL, LOG_VOLUME, NETWORK, PUBLIC_NAME, app_container_name, host

pytestmark = pytest.mark.integration

ST = State()


def ssh_base(h) -> list[str]:
    return ["ssh", "-i", str(ST.key), "-o", f"UserKnownHostsFile={ST.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
            "-o", "ControlPath=none", "-o", "ConnectTimeout=10", f"root@{h.public_ip}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tunnel(host_name: str, remote_port: int):
    """``ssh -L`` to 127.0.0.1:remote_port on ``host_name``; yields the local port."""
    port = free_port()
    cmd = ssh_base(host(host_name))
    cmd[1:1] = ["-N", "-o", "ExitOnForwardFailure=yes",
                "-L", f"127.0.0.1:{port}:127.0.0.1:{remote_port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert proc.poll() is None, f"ssh -L to {host_name} failed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, f"tunnel to {host_name}:{remote_port} not ready"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module", autouse=True)
def up(deployment):
    """The deployment is up for every test of this module."""
    return deployment


@pytest.mark.parametrize("h", HOSTS, ids=lambda h: h.name)
def test_ssh_with_state_key_and_known_hosts(h):
    res = subprocess.run(ssh_base(h) + ["hostname; service ssh status >/dev/null && echo ok"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [h.name, "ok"]


def test_ports_published_only_on_loopback(deployment):
    client = deploy.docker_engine.client_or_none()
    for h in HOSTS:
        bindings = client.containers.get(h.name).attrs["HostConfig"]["PortBindings"]
        published = {int(k.split("/")[0]) for k in bindings}
        assert published == set(h.ports), h.name
        for binds in bindings.values():
            # its loopback address, and the second one of the 12-host benchmark (DEVIATIONS 34)
            assert sorted(b["HostIp"] for b in binds) == sorted([h.public_ip, h.second_ip]), (h.name, binds)
            assert all(ipaddress.ip_address(b["HostIp"]).is_loopback for b in binds), (h.name, binds)


def test_postgres_is_internal_only_from_outside():
    """5432 is published on 127.77.0.21, but ufw drops it: the runner is outside. Docker's
    userland proxy may accept the TCP connection itself, so only PostgreSQL's own answer to an
    SSLRequest counts as open (as the audit's exposure probe judges it)."""
    answer = probe_port(host("db1").public_ip, 5432, "postgres", timeout=3)
    assert not answer.open, answer


def test_sql_on_primary_through_tunnel_with_app_credentials():
    with tunnel("db1", 5432) as port, psycopg.connect(
            host="127.0.0.1", port=port, dbname="pynomaly_prod", user="pynomaly_user",
            password=ST.secret("db_password"), connect_timeout=10) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        assert conn.execute("SHOW shared_buffers").fetchone()[0] == "8GB"
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        assert users >= 1  # the seeded login user
        senders = conn.execute("SHOW max_wal_senders").fetchone()[0]
        assert senders == "3"


def test_audit_role_is_read_only_through_tunnel():
    with tunnel("db1", 5432) as port, psycopg.connect(
            host="127.0.0.1", port=port, dbname="pynomaly_prod", user="pynomaly_audit",
            password=ST.secret("db_audit_password"), connect_timeout=10) as conn:
        assert conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE audit_write_probe (x int)")


def test_replica_is_read_only_through_tunnel():
    with tunnel("db2", 5432) as port, psycopg.connect(
            host="127.0.0.1", port=port, dbname="pynomaly_prod", user="pynomaly_user",
            password=ST.secret("db_password"), connect_timeout=10) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE replica_write_probe (x int)")


def test_redis_requires_auth_through_tunnel():
    with tunnel("cache1", 6379) as port:
        anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        r = redis.Redis(host="127.0.0.1", port=port, password=ST.secret("redis_password"),
                        socket_timeout=5)
        assert r.ping() is True
        assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}


def test_redis_cluster_ok_with_all_slots_and_spread_replicas():
    with tunnel("cache2", 7000) as port:
        r = redis.Redis(host="127.0.0.1", port=port, password=ST.secret("redis_password"),
                        socket_timeout=5, decode_responses=True)
        info = r.execute_command("CLUSTER INFO")
        info = info if isinstance(info, dict) else dict(
            line.split(":", 1) for line in info.splitlines() if ":" in line)
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == 16384
        assert int(info["cluster_known_nodes"]) == 6
        raw = r.execute_command("CLUSTER NODES")
    nodes = [line.split() for line in (raw if isinstance(raw, str) else "").splitlines() if line]
    if nodes:  # redis-py may pre-parse CLUSTER NODES; the ip check needs the raw form
        ip = {n[0]: n[1].split(":")[0] for n in nodes}
        replicas = [n for n in nodes if "slave" in n[2]]
        assert len(replicas) == 3
        assert all(ip[n[3]] != ip[n[0]] for n in replicas)


def curl(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(ST.ca),
         "--resolve", f"{PUBLIC_NAME}:443:{host('web1').public_ip}",
         "--resolve", f"{PUBLIC_NAME}:80:{host('web1').public_ip}",
         "-D", "-", *extra, url], capture_output=True, text=True, timeout=30)


def test_https_health_through_nginx_with_the_ca():
    res = curl(f"https://{PUBLIC_NAME}/health")
    assert res.returncode == 0, res.stderr
    head, _, body = res.stdout.partition("\n\n")  # text mode: \r\n -> \n
    assert head.startswith("HTTP/2 200"), head
    assert "strict-transport-security: max-age=31536000; includesubdomains" in head.lower()
    assert json.loads(body)["status"] == "ok"


def test_static_location_keeps_security_headers():
    res = curl(f"https://{PUBLIC_NAME}/static/app.css")
    head = res.stdout.lower()
    assert head.startswith("http/2 200"), head
    for header in ("x-frame-options: deny", "x-content-type-options: nosniff",
                   "strict-transport-security:", "cache-control: public, immutable"):
        assert header in head


def test_http_redirects_to_https():
    res = curl(f"http://{PUBLIC_NAME}/health")
    assert res.stdout.startswith("HTTP/1.1 301"), res.stdout
    assert f"location: https://{PUBLIC_NAME}/health" in res.stdout.lower()


def test_prometheus_targets_up_through_tunnel():
    with tunnel("web1", 9090) as port:
        deadline = time.monotonic() + 60
        while True:
            data = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
            targets = data["data"]["activeTargets"]
            health = {t["labels"]["instance"]: t["health"] for t in targets}
            if len(targets) == 6 and all(v == "up" for v in health.values()):
                break
            assert time.monotonic() < deadline, health
            time.sleep(3)
        am = requests.get(f"http://127.0.0.1:{port}/api/v1/alertmanagers", timeout=5).json()
        assert am["data"]["activeAlertmanagers"], am


def test_app_instances_are_compose_style(deployment):
    client = deploy.docker_engine.client_or_none()
    web1_id = client.containers.get("web1").id
    for n, _ in enumerate(APP_PORTS, 1):
        c = client.containers.get(app_container_name(n))
        assert c.labels["com.docker.compose.project"] == "pynomaly"
        assert c.labels["com.docker.compose.service"] == "pynomaly-app"
        assert c.labels["com.docker.compose.container-number"] == str(n)
        policy = c.attrs["HostConfig"]["RestartPolicy"]
        assert policy == {"Name": "on-failure", "MaximumRetryCount": 3}
        assert c.attrs["HostConfig"]["NetworkMode"] == f"container:{web1_id}"
        assert "ENVIRONMENT=production" in c.attrs["Config"]["Env"]


def test_drift_ids_are_in_the_catalogue():
    assert drifts.unknown_ids() == {}


def test_drift_and_heal_round_trip():
    drifts.apply("redis-eviction-policy")
    try:
        assert "redis-eviction-policy" in ST.load()["drifts"]
        with tunnel("cache1", 6379) as port:
            r = redis.Redis(host="127.0.0.1", port=port, password=ST.secret("redis_password"))
            assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        drifts.heal()
    assert ST.load()["drifts"] == []
    with tunnel("cache1", 6379) as port:
        r = redis.Redis(host="127.0.0.1", port=port, password=ST.secret("redis_password"))
        assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}


def test_second_up_changes_nothing_and_is_fast(deployment):
    client = deploy.docker_engine.client_or_none()
    before = {c.name: c.id for c in client.containers.list(filters={"label": LABEL})}
    record = ST.deployment_json.read_text()
    started = time.monotonic()
    deploy.up()
    assert time.monotonic() - started < 30
    after = {c.name: c.id for c in client.containers.list(filters={"label": LABEL})}
    assert after == before
    assert ST.deployment_json.read_text() == record


def test_up_starts_a_daemon_found_stopped(deployment):
    """`up` brings the deployment up, it does not only wait for it: a daemon that something
    stopped (fail2ban on db1 here) is started again, and `up` says so."""
    db1 = deploy.docker_engine.client_or_none().containers.get("db1")
    with drifts.lock():
        containers.run(db1, "service fail2ban stop >/dev/null")
        assert containers.run(db1, "service fail2ban status", check=False)[0] != 0
        deploy.up()
        assert containers.run(db1, "service fail2ban status", check=False)[0] == 0


def test_down_leaves_nothing_then_up_again(deployment):
    """Last: `down` removes containers, network, volume and state; `up` restores them."""
    client = deploy.docker_engine.client_or_none()
    deploy.down()
    try:
        assert client.containers.list(all=True, filters={"label": LABEL}) == []
        assert client.networks.list(names=[NETWORK]) == []
        assert [v for v in client.volumes.list() if v.name == LOG_VOLUME] == []
        assert not ST.root.exists()
    finally:
        deploy.up()  # leave the deployment as the session found it
    assert deploy.status() == 0
