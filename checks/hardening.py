"""Guide: Security Hardening - System Security (fail2ban, AIDE, rkhunter, upgrades) and Application
Security (ownership and modes of /opt/pynomaly). What is read, and how: audit/probes/hardening.py.

The modes of .env.production and of the PostgreSQL files in use are catalogue value rows
(SEC-ENV-FILE-MODE, SEC-PG-CONF-MODE, SEC-PG-HBA-MODE) judged by checks/values.py.
"""

from __future__ import annotations

import pytest

from audit import guide
from audit.marks import per_requirement

EVERY_SERVER = pytest.mark.roles(*guide.SERVER_ROLES)


def _installed(judge, hardening, package: str) -> None:
    judge.that(package in hardening.packages, what=f"{package} package",
               found=hardening.packages.get(package, "not installed"), expected="installed", where="dpkg-query")


# ---------------------------------------------------------------- fail2ban

@EVERY_SERVER
@pytest.mark.requirement("SEC-FAIL2BAN-RUNNING")
def check_fail2ban_is_installed_and_running(judge, hardening):
    """"sudo apt install fail2ban ufw aide rkhunter" - and the daemon answers (fail2ban-client ping)."""
    _installed(judge, hardening, "fail2ban")
    judge.that("pong" in hardening.fail2ban_ping, what="fail2ban-client ping", found=hardening.fail2ban_ping,
               expected="pong")


@EVERY_SERVER
@pytest.mark.requirement("SEC-FAIL2BAN-DEFAULTS")
def check_fail2ban_defaults(judge, hardening):
    """"[DEFAULT] bantime = 3600, findtime = 600, maxretry = 3" in /etc/fail2ban/jail.local: in the
    files (what the next reload applies) and as the daemon runs them in the jails that inherit them."""
    want = {k: str(judge.expected[k]) for k in ("bantime", "findtime", "maxretry")}
    judge.sides(hardening.default_sides(), lambda found: all(str(v) == want[k] for k, v in found.items()),
                what="fail2ban [DEFAULT]", expected=want)


def _jail(judge, hardening, jail: str) -> None:
    want = {k: str(v).lower() for k, v in judge.expected.items()}
    judge.sides(hardening.jail_sides(jail),
                lambda side: all(str(v).lower() == want[k] for k, v in side.items() if k in want),
                what=f"fail2ban jail {jail}")


@EVERY_SERVER
@pytest.mark.requirement("SEC-FAIL2BAN-SSHD-JAIL")
def check_fail2ban_sshd_jail(judge, hardening):
    """"[sshd] enabled = true, port = ssh, filter = sshd, logpath = /var/log/auth.log, maxretry = 3"."""
    _jail(judge, hardening, "sshd")


@pytest.mark.roles("web")
@pytest.mark.requirement("SEC-FAIL2BAN-NGINX-HTTP-AUTH-JAIL")
def check_fail2ban_nginx_http_auth_jail(judge, hardening):
    """"[nginx-http-auth] enabled = true, filter = nginx-http-auth, logpath = /var/log/nginx/error.log,
    maxretry = 3"."""
    _jail(judge, hardening, "nginx-http-auth")


# ---------------------------------------------------------------- AIDE, rkhunter, upgrades

@EVERY_SERVER
@per_requirement("SEC-AIDE-INSTALLED", "SEC-RKHUNTER-INSTALLED")
def check_package_installed(judge, hardening, req_id):
    """"sudo apt install fail2ban ufw aide rkhunter"."""
    _installed(judge, hardening, judge.expected)


@EVERY_SERVER
@pytest.mark.requirement("SEC-AIDE-DB-INITIALISED")
def check_aide_database_is_initialised(judge, hardening):
    """AIDE needs its baseline (aide --init) before any integrity check can run."""
    path = judge.expected["database"]
    size = hardening.aide_db.get(path, 0)
    judge.that(size > 0, what="AIDE database", found={"path": path, "bytes": size if path in hardening.aide_db
                                                      else "missing"}, expected={"path": path, "bytes": "> 0"})


@EVERY_SERVER
@pytest.mark.requirement("SEC-UNATTENDED-UPGRADES")
def check_unattended_upgrades(judge, hardening):
    """Monthly tasks: "sudo unattended-upgrade --dry-run" - installed, and the dry run succeeds."""
    _installed(judge, hardening, judge.expected)
    judge.equal(hardening.dry_run, what="unattended-upgrade --dry-run", expected="rc=0")


@EVERY_SERVER
@pytest.mark.requirement("SEC-SYSTEM-UPGRADED")
def check_system_is_upgraded(judge, hardening):
    """"sudo apt update && sudo apt upgrade -y": no package is left upgradable (the host's own
    index, apt-get -s: an empty list is apt's answer, proven by its index and exit status)."""
    limit = judge.expected["max_upgradable"]
    pending = [str(p) for p in hardening.pending()]
    judge.that(len(pending) <= limit, what="upgradable packages", found=pending, expected=f"at most {limit}",
               where="apt-get -s dist-upgrade", allow_empty=True)


# ---------------------------------------------------------------- application security

@pytest.mark.roles("app")
@pytest.mark.requirement("SEC-APP-DIR-OWNER")
def check_app_dir_owner(judge, hardening):
    """"sudo chown -R pynomaly:pynomaly /opt/pynomaly"."""
    path, owner = judge.expected["path"], f"{judge.expected['owner']}:{judge.expected['group']}"
    judge.each(hardening.tree(path, "owner"), lambda o: o == owner, what=f"owner under {path}", expected=owner)


@pytest.mark.roles("app")
@pytest.mark.requirement("SEC-APP-DIR-MODE")
def check_app_dir_mode(judge, hardening):
    """"sudo chmod -R 750 /opt/pynomaly": 750 at the top, nothing under it open to others."""
    path, mode = judge.expected["path"], judge.expected["mode"]
    judge.each(hardening.tree(path, "mode"), lambda m: m == mode, what=f"mode under {path}",
               expected=f"{mode} at the top, nothing open to others")
