"""Parsers of audit/probes/advisories.py on captured outputs, in both directions."""

from __future__ import annotations

import pytest

from audit.access import RedisAnswer
from audit.outcomes import CouldNotAudit
from audit.probes.advisories import (
    EngineFacts,
    GixyFacts,
    PoolFacts,
    command_allowed,
    curl_segment,
    disk_alert_fires,
    dockerd_hosts,
    dump_location,
    dump_text,
    gixy_findings,
    hba_findings,
    hba_rules,
    health_curl,
    other_bits,
    parse_sshd,
    parse_status,
    plain_tcp,
    run_gixy,
    safe_args,
    script_uses,
    stale_columns,
    vulnerability_result,
)
from audit.probes.shell import script_commands

GUIDE_NGINX = """user www-data;
worker_processes auto;
pid /run/nginx.pid;
events {
    worker_connections 1024;
}
http {
    add_header X-Frame-Options DENY;
    server {
        listen 80;
        server_name example.test;
        return 301 https://$server_name$request_uri;
    }
    server {
        listen 443 ssl http2;
        server_name example.test;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;
        add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
        add_header X-Frame-Options DENY;
        location /static/ {
            alias /opt/pynomaly/static/;
            add_header Cache-Control "public, immutable";
        }
    }
}
"""
HARDENED_NGINX = (GUIDE_NGINX.replace("pid /run/nginx.pid;", "pid /run/nginx.pid;\nworker_rlimit_nofile 4096;")
                  .replace("http {\n", "http {\n    server_tokens off;\n")
                  .replace('add_header Cache-Control "public, immutable";',
                           'add_header Cache-Control "public, immutable";\n'
                           '            add_header Strict-Transport-Security "max-age=31536000; includeSubDomains"'
                           ' always;\n            add_header X-Frame-Options DENY;'))


def _gixy(conf: str) -> GixyFacts:
    dump = dump_text({"/etc/nginx/nginx.conf": "\n" + conf})
    return GixyFacts(gixy_findings(run_gixy(dump), dump), ("/etc/nginx/nginx.conf",))


def test_gixy_finds_the_guides_flaws_and_none_once_hardened():
    guide = _gixy(GUIDE_NGINX)
    assert guide.of("version_disclosure")
    assert guide.of("worker_rlimit_nofile_vs_connections")
    assert guide.of("add_header_redefinition")
    assert guide.of("add_header_redefinition")[0].startswith("/etc/nginx/nginx.conf:")
    hardened = _gixy(HARDENED_NGINX)
    for plugin in ("version_disclosure", "worker_rlimit_nofile_vs_connections", "add_header_redefinition"):
        assert hardened.of(plugin) == [], plugin
    skip = ["version_disclosure", "worker_rlimit_nofile_vs_connections", "add_header_redefinition"]
    assert hardened.others(skip, ["MEDIUM", "HIGH"]) == []


def test_gixy_other_rules_catch_host_spoofing_and_alias_traversal():
    conf = HARDENED_NGINX.replace(
        "        location /static/ {",
        "        location /assets { alias /opt/pynomaly/static/; }\n"
        "        location /api/v2/ { proxy_pass http://127.0.0.1:8000; proxy_set_header Host $http_host; }\n"
        "        location /static/ {")
    facts = _gixy(conf)
    assert facts.of("alias_traversal")
    assert any("host_spoofing" in f for f in facts.others(["alias_traversal"], ["MEDIUM", "HIGH"]))


def test_gixy_without_a_report_is_could_not_audit(monkeypatch):
    import subprocess

    class Proc:
        returncode, stdout, stderr = 2, "", "File not found"

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Proc())
    with pytest.raises(CouldNotAudit, match="gixy-ng"):
        run_gixy("events {}")


def test_dump_location_maps_dump_lines_to_files():
    dump = dump_text({"/etc/nginx/nginx.conf": "\nuser x;\nevents {}\n", "/etc/nginx/mime.types": "\ntypes {}\n"})
    assert dump_location(dump, 3) == "/etc/nginx/nginx.conf:2"
    assert dump_location(dump, 5) == "/etc/nginx/mime.types:1"
    assert dump_location(dump, None) == "?"


# ---------------------------------------------------------------- sslyze

class Scan:
    target = "pynomaly.test:443 via 127.77.0.11"

    def __init__(self, info):
        self.info = info


def test_vulnerability_result_reads_the_scan_and_refuses_a_missing_one():
    scan = Scan({"heartbleed": {"is_vulnerable_to_heartbleed": False}, "robot": "ERROR",
                 "tls_1_3_early_data": {"supports_early_data": True}})
    assert vulnerability_result(scan, "heartbleed") == {"is_vulnerable_to_heartbleed": False}
    assert vulnerability_result(scan, "tls_1_3_early_data") == {"supports_early_data": True}
    with pytest.raises(CouldNotAudit, match="robot: ERROR"):
        vulnerability_result(scan, "robot")
    with pytest.raises(CouldNotAudit, match="tls_extended_master_secret: not run"):
        vulnerability_result(scan, "tls_extended_master_secret")


# ---------------------------------------------------------------- health checks

GUIDE_DAILY = """#!/bin/bash
# Check disk space
df -h | grep -E "9[0-9]%" && echo "ALERT: Disk space critical"
# Health check
curl -f http://localhost/health || echo "ALERT: Health check failed"
"""
HARDENED_DAILY = GUIDE_DAILY.replace('"9[0-9]%"', '"9[0-9]%|100%"').replace(
    "curl -f http://localhost/health", "curl -f http://localhost/health --location --resolve "
    "pynomaly.test:443:127.0.0.1 --cacert /etc/letsencrypt/live/pynomaly.test/chain.pem")


def test_health_curl_keeps_the_url_and_the_redirect_options_only():
    line = health_curl(script_commands(HARDENED_DAILY))
    assert line.startswith("curl -f http://localhost/health")
    args = safe_args(curl_segment(line))
    assert args == ["http://localhost/health", "--location", "--resolve", "pynomaly.test:443:127.0.0.1",
                    "--cacert", "/etc/letsencrypt/live/pynomaly.test/chain.pem"]
    assert safe_args(curl_segment("curl -fsSL -o /etc/passwd -d @x https://h/health")) == ["-L", "https://h/health"]
    assert health_curl(script_commands("echo hi\ncurl -f http://x/metrics\n")) is None


def test_parse_status_of_the_curl_run():
    assert parse_status("301 0 http://localhost/health") == {"status": 301, "redirects": 0,
                                                             "url": "http://localhost/health"}
    assert parse_status("200 1 https://pynomaly.test/health")["status"] == 200
    failed = parse_status("curl: (60) SSL certificate problem\n000 1 https://pynomaly.test/health")
    assert failed["status"] == 0
    assert "SSL" in failed["curl"]
    assert parse_status("")["status"] is None


def test_disk_alert_fires_on_a_full_disk_only_when_hardened():
    percents = [90, 95, 99, 100]
    assert disk_alert_fires(script_commands(GUIDE_DAILY), percents) == {90: True, 95: True, 99: True, 100: False}
    assert all(disk_alert_fires(script_commands(HARDENED_DAILY), percents).values())
    assert all(disk_alert_fires(["df -P | awk '{print $5}' | tr -d % | while read p; do [ $p -ge 90 ] && "
                                 "echo ALERT; done"], percents).values())
    assert disk_alert_fires(["echo nothing"], percents) is None


# ---------------------------------------------------------------- pg_stat_statements

RENAMED = {"mean_time": "mean_exec_time", "total_time": "total_exec_time"}


def test_stale_columns_of_the_guides_query_on_postgres_13_and_later():
    columns = {"query", "calls", "mean_exec_time", "total_exec_time"}
    guide = "psql -c \"SELECT query, mean_time, calls FROM pg_stat_statements ORDER BY mean_time DESC LIMIT 10;\""
    assert stale_columns(guide, columns, RENAMED) == ["mean_time"]
    assert stale_columns(guide.replace("mean_time", "mean_exec_time"), columns, RENAMED) == []
    assert stale_columns(guide, columns | {"mean_time"}, RENAMED) == []  # PostgreSQL 12


def test_script_uses_from_grep():
    out = script_uses("/opt/pynomaly/scripts/slow.sh:3:psql -c \"SELECT  query FROM pg_stat_statements\"\n", "db1")
    assert out == {"db1:/opt/pynomaly/scripts/slow.sh:3": "psql -c \"SELECT query FROM pg_stat_statements\""}
    assert script_uses("", "db1") == {}
    assert script_uses("/opt/pynomaly/scripts/slow.sh:2:# pg_stat_statements' mean_time is gone\n", "db1") == {}


# ---------------------------------------------------------------- pools

def test_pools_against_max_connections_and_the_role_limit():
    processes = {f"pynomaly-app-{i}": {"workers": 4, "pool_size": 20, "max_overflow": 30} for i in (1, 2, 3)}
    guide = PoolFacts("db1", processes, 200, 3, -1, 4, 12)
    assert (guide.app_steady, guide.app_peak, guide.app_max, guide.room) == (240, 600, 600, 193)
    assert guide.app_max > guide.room
    capped = PoolFacts("db1", processes, 200, 3, 150, 4, 12)
    assert capped.app_max == 150 <= capped.room
    small = PoolFacts("db1", {"a": {"workers": 2, "pool_size": 5, "max_overflow": 0}}, 200, 3, -1, 4, 0)
    assert small.app_max == 10 <= small.room


# ---------------------------------------------------------------- SSH, pg_hba, Redis, Docker

SSHD_T = """port 22
permitrootlogin without-password
passwordauthentication no
kbdinteractiveauthentication no
x11forwarding yes
permitemptypasswords no
"""


def test_parse_sshd():
    found = parse_sshd(SSHD_T)
    assert found["permitrootlogin"] == "without-password"
    assert found["x11forwarding"] == "yes"
    assert parse_sshd("sshd: no hostkeys available -- exiting.") == {}


PG_HBA = """local   all             postgres                                peer
host    all             pynomaly_audit      127.0.0.1/32        scram-sha-256
host    all             pynomaly_audit      all                 reject
host    pynomaly_prod   pynomaly_user       172.28.77.11/32       scram-sha-256
host    replication     replicator          172.28.77.22/32   scram-sha-256
"""
REFUSED = ["trust", "password", "md5"]


def test_pg_hba_network_rules_need_hostssl():
    rules = hba_rules(PG_HBA)
    assert len(rules) == 5
    bad = hba_findings(rules, REFUSED)
    assert [b.split(":")[0] for b in bad] == ["line 4", "line 5"]
    hardened = PG_HBA.replace("host    pynomaly_prod", "hostssl pynomaly_prod").replace("host    replication",
                                                                                     "hostssl replication")
    assert hba_findings(hba_rules(hardened), REFUSED) == []
    assert hba_findings(hba_rules("host all all 127.0.0.1 255.255.255.255 trust\n"), REFUSED) == [
        "line 1: host all all 127.0.0.1 255.255.255.255 trust (method trust)"]


def test_redis_acl_dryrun_answers():
    assert command_allowed("OK") is True
    assert command_allowed(RedisAnswer("ResponseError", "User default has no permissions to run the 'flushall' "
                                                        "command")) is False
    assert command_allowed(RedisAnswer("ResponseError", "Command 'flushall' not found")) is False
    assert command_allowed(RedisAnswer("ResponseError", "unknown subcommand 'DRYRUN'")) is None


def test_docker_socket_and_tcp_endpoints():
    assert other_bits("660") == "---"
    assert other_bits("666") == "rw-"
    assert dockerd_hosts("/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock") == (
        ["fd://"], False)
    hosts, tls = dockerd_hosts("dockerd -H unix:///var/run/docker.sock -H tcp://0.0.0.0:2375")
    assert plain_tcp(hosts, tls) == ["tcp://0.0.0.0:2375"]
    assert plain_tcp(*dockerd_hosts("dockerd --host=tcp://0.0.0.0:2376 --tlsverify")) == []
    engine = EngineFacts("/var/run/docker.sock", "660", "root:docker", ("dockerd -H fd://",), None)
    assert {k: r.value for k, r in engine.sides().items()} == {"running": "none"}
    drifted = EngineFacts("/var/run/docker.sock", "660", "root:docker", ("dockerd -H fd://",),
                          {"hosts": ["tcp://127.0.0.1:2375"]})
    assert drifted.sides()["on disk"].value == ["tcp://127.0.0.1:2375"]
