"""Advisories beyond the guide (checks/advisories.yml, ids ADV-*): gixy-ng on the running NGINX
configuration, sslyze's vulnerability scans, the guide's own defects found in the deployment's
scripts and settings, and the baseline a security reviewer expects (SSH, PostgreSQL, Redis,
Docker). Reported apart; they change the exit code only under --gate=hardened. What is read, and
how: audit/probes/advisories.py.
"""

from __future__ import annotations

import pytest

from audit import guide
from audit.marks import per_requirement
from audit.outcomes import CouldNotAudit
from audit.probes.advisories import (
    disk_alert_fires,
    hba_findings,
    other_bits,
    stale_columns,
    vulnerability_result,
)
from audit.probes.shell import script_commands

WEB = pytest.mark.roles("web")
APP = pytest.mark.roles("app")
EVERY_SERVER = pytest.mark.roles(*guide.SERVER_ROLES)
GIXY_RULES = ("ADV-NGINX-SERVER-TOKENS", "ADV-NGINX-WORKER-RLIMIT-NOFILE", "ADV-NGINX-ADD-HEADER-REDEFINITION",
              "ADV-NGINX-ALIAS-TRAVERSAL", "ADV-NGINX-STATUS-PAGE")
SSLYZE = {"ADV-TLS-HEARTBLEED": "heartbleed", "ADV-TLS-CCS-INJECTION": "openssl_ccs_injection",
          "ADV-TLS-ROBOT": "robot", "ADV-TLS-COMPRESSION": "tls_compression",
          "ADV-TLS-SECURE-RENEGOTIATION": "session_renegotiation",
          "ADV-TLS-CLIENT-RENEGOTIATION": "session_renegotiation", "ADV-TLS-FALLBACK-SCSV": "tls_fallback_scsv",
          "ADV-TLS-EARLY-DATA": "tls_1_3_early_data", "ADV-TLS-EXTENDED-MASTER-SECRET": "tls_extended_master_secret"}
SSH = ("ADV-SSH-ROOT-LOGIN", "ADV-SSH-PASSWORD-AUTH", "ADV-SSH-X11-FORWARDING")


# ---------------------------------------------------------------- gixy-ng

@WEB
@per_requirement(*GIXY_RULES)
def check_gixy_rule(judge, gixy, req_id):
    """gixy-ng's rule finds nothing in the configuration the running NGINX uses (nginx -T)."""
    plugin = judge.expected["plugin"]
    found = gixy.of(plugin)
    judge.that(not found, what=f"gixy-ng {plugin}", found=found or "no finding", expected="no finding",
               where=f"nginx -T ({', '.join(gixy.files)})")


@WEB
@pytest.mark.requirement("ADV-NGINX-GIXY-OTHER")
def check_gixy_other_rules(judge, gixy):
    """No other gixy-ng rule finds anything of medium or high severity."""
    want = judge.expected
    found = gixy.others(want["except"], want["severities"])
    judge.that(not found, what="gixy-ng, every other rule", found=found or "no finding", expected="no finding",
               where=f"nginx -T ({', '.join(gixy.files)})")


# ---------------------------------------------------------------- sslyze

@per_requirement(*SSLYZE)
def check_sslyze_scan(judge, tls_scan, req_id):
    """sslyze's vulnerability scan of the public endpoint says it is not vulnerable."""
    result = vulnerability_result(tls_scan, SSLYZE[req_id])
    want = judge.expected
    found = {k: result.get(k) for k in want}
    judge.that(all(found[k] in v if isinstance(v, list) else found[k] == v for k, v in want.items()),
               what=f"sslyze {SSLYZE[req_id]}", found=found, where=tls_scan.target)


# ---------------------------------------------------------------- the guide's own defects

@APP
@per_requirement("ADV-GUIDE-DEPLOY-HEALTH-CHECK", "ADV-GUIDE-DAILY-HEALTH-CHECK")
def check_health_check_can_fail(judge, health_checks, req_id):
    """curl -f fails only on 4xx/5xx: a health check whose URL is answered by the port-80
    server's "return 301" succeeds whatever the app's health. Its curl, run as written (without
    -f), must get the health endpoint's own answer, not a redirect."""
    check = health_checks["deploy" if "DEPLOY" in req_id else "daily"]
    if check.problem:
        if "audit_deploy_repo" in check.problem:
            raise CouldNotAudit(None, "the deployment repository", check.problem)
        judge.fail(f"{check.script}: {check.problem}")
    status = check.answer.get("status")
    judge.that(check.line is not None and status is not None and not 300 <= status < 400,
               what=f"{check.script}: the health check's curl", expected=judge.expected["status"],
               found={"line": check.line, "ran on this host": check.ran, "got": check.answer},
               where=check.script)


@APP
@pytest.mark.requirement("ADV-GUIDE-DISK-ALERT-FULL")
def check_disk_alert_fires_when_full(judge, maintenance):
    """"df -h | grep -E "9[0-9]%"": 100% has three digits, so a full disk never alerts."""
    want = judge.expected["fires_at"]
    fires = disk_alert_fires(script_commands(maintenance.scripts.get("daily", "")), want)
    judge.that(bool(fires) and all(fires.values()), what=f"{guide.MAINTENANCE_SCRIPTS['daily']}: disk alert",
               found=fires and {f"{p}% used": "alerts" if ok else "silent" for p, ok in fires.items()},
               expected={f"{p}% used": "alerts" for p in want})


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("ADV-GUIDE-PG-MEAN-TIME")
def check_slow_query_report_columns(judge, slow_query_report):
    """"SELECT query, mean_time, calls FROM pg_stat_statements ORDER BY mean_time DESC": the
    scripts that read pg_stat_statements use only the columns this server has."""
    report = slow_query_report
    renamed = judge.expected["renamed_in_13"]
    if not report.columns:
        raise CouldNotAudit(judge.host, "pg_stat_statements", "the view is not there in database postgres "
                                                              "(PG-STAT-STATEMENTS says why)")
    guide_query = {"the guide's query (no script of the deployment has one)":
                   "SELECT query, mean_time, calls FROM pg_stat_statements ORDER BY mean_time DESC LIMIT 10"}
    lines = report.uses or guide_query
    stale = {where: stale_columns(text, set(report.columns), renamed) for where, text in lines.items()}
    judge.that(not any(stale.values()), what=f"pg_stat_statements columns (PostgreSQL {report.version})",
               found={where: {"line": lines[where], "columns it lacks": cols} for where, cols in stale.items()},
               expected={"columns": sorted(c for c in report.columns if c.endswith("_time")), "renamed": renamed})


@pytest.mark.roles("db_primary")
@pytest.mark.requirement("ADV-GUIDE-DB-POOLS")
def check_pools_fit_in_max_connections(judge, db_pools):
    """3 instances x 4 workers x pool 20 = 240 > max_connections 200 (and up to 50 per worker with
    max_overflow 30): the app alone can take every connection."""
    p = db_pools
    found = {"app processes": p.processes, "app peak": p.app_peak, "app at pool_size": p.app_steady,
             f"{guide.APP_ROLE} CONNECTION LIMIT": p.connlimit, "app max (after the limit)": p.app_max,
             "max_connections": p.max_connections, "superuser reserve": p.reserved,
             "other roles' connections now": p.others, "room for the app": p.room}
    judge.that(p.app_max <= p.room, what="the app's database pools", found=found,
               expected="app max <= max_connections - reserve - other roles' connections", where=p.primary)


# ---------------------------------------------------------------- SSH

@EVERY_SERVER
@per_requirement(*SSH)
def check_sshd(judge, sshd, req_id):
    """sshd's effective settings (sshd -T) next to the guide's fail2ban sshd jail."""
    want = judge.expected
    found = {k: sshd.get(k) for k in want}
    judge.that(all(found[k] in v if isinstance(v, list) else found[k] == v for k, v in want.items()),
               what="sshd", found=found, where="sshd -T")


# ---------------------------------------------------------------- PostgreSQL

@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("ADV-PG-SSL")
def check_pg_ssl(judge, pg_settings):
    """ssl = on: the app's DATABASE_URL, replication and the exporter cross the network."""
    judge.sides(pg_settings.sides("ssl"), lambda v: v == judge.expected, what="ssl")


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("ADV-PG-HBA-HOSTSSL")
def check_pg_hba_requires_tls(judge, pg_hba):
    """Network rules are hostssl (or reject), and none trusts or takes a clear-text/MD5 password."""
    bad = hba_findings(list(pg_hba.rules), judge.expected["methods_refused"])
    judge.that(bool(pg_hba.rules) and not bad, what="pg_hba.conf rules", found=bad or f"{len(pg_hba.rules)} rules, "
               "all hostssl over the network", where=pg_hba.path)


# ---------------------------------------------------------------- Redis

@pytest.mark.roles("redis", "redis_cluster")
@pytest.mark.requirement("ADV-REDIS-DANGEROUS-COMMANDS")
def check_redis_dangerous_commands(judge, redis_commands):
    """The default user (the app's REDIS_URL login) may not run FLUSHALL, CONFIG SET, DEBUG, ..."""
    allowed = {f"port {port}: {cmd}": answer for port, answers in redis_commands.items()
               for cmd, answer in answers.items() if answer == "allowed"}
    judge.that(bool(redis_commands) and not allowed, what="dangerous commands for the default user",
               found=allowed or redis_commands, expected="refused (ACL) or renamed away", where="ACL DRYRUN default")


# ---------------------------------------------------------------- Docker

@pytest.mark.roles("docker")
@pytest.mark.requirement("ADV-DOCKER-SOCKET")
def check_docker_socket_mode(judge, docker_engine):
    """Write access to the engine socket is root on the host: others get no bit."""
    engine = docker_engine
    found = {"path": engine.socket, "mode": engine.socket_mode, "owner": engine.socket_owner,
             "other": other_bits(engine.socket_mode) if engine.socket_mode else None}
    judge.that(engine.socket_mode is not None and found["other"] == judge.expected["other"],
               what="the Docker engine socket", found=found, where="stat")


@pytest.mark.roles("docker")
@pytest.mark.requirement("ADV-DOCKER-NO-PLAIN-TCP")
def check_docker_no_plain_tcp(judge, docker_engine):
    """No `-H tcp://` without --tlsverify, running or in daemon.json."""
    judge.sides(docker_engine.sides(), lambda v: v == "none", what="TCP endpoints without --tlsverify")
