"""Guide: Security Hardening - System Security (fail2ban, AIDE, rkhunter, upgrades) and
Application Security (ownership and modes of /opt/pynomaly, .env.production, PostgreSQL files).

Everything a host is asked comes from ONE `server.collect("hardening", ...)` round trip per host;
fail2ban's values are read from the running daemon (`fail2ban-client get`), not only its files.
"""

from __future__ import annotations

import pytest

from audit.evidence import attach, compare, mask_assignments
from audit.hostparse import (
    SERVER_ROLES,
    apt_index_files,
    apt_pending,
    fail2ban_answers,
    fail2ban_jails,
    ini_sections,
)
from audit.marks import per_requirement

PACKAGES = ("fail2ban", "aide", "rkhunter", "unattended-upgrades")
JAILS = ("sshd", "nginx-http-auth")
JAIL_KEYS = ("bantime", "findtime", "maxretry", "logpath")
JAIL_QUESTIONS = [(j, k) for j in JAILS for k in JAIL_KEYS]
APP_DIR = "/opt/pynomaly"
ENV_FILE = "/opt/pynomaly/.env.production"
PG_FILES = ("SHOW config_file", "SHOW hba_file")

EVERY_SERVER = pytest.mark.roles(*SERVER_ROLES)  # "every host": the servers, not the Docker engine


def hardening_commands(roles) -> dict[str, str]:
    """What this area reads from a host (by its roles)."""
    asked = "".join(f"get {j} {k}\\n" for j, k in JAIL_QUESTIONS)
    cmds = {
        "packages": "dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\\n' "
                    + " ".join(PACKAGES) + " 2>&1",
        "f2b_ping": "fail2ban-client ping 2>&1; echo rc=$?",
        "f2b_status": "fail2ban-client status 2>&1",
        "f2b_values": f"printf '{asked}' | fail2ban-client -i 2>&1",  # one client process for every value
        "jail_local": "cat /etc/fail2ban/jail.local 2>&1",
        "aide_db": "stat -c '%n %s' /var/lib/aide/aide.db 2>&1",
        # python-apt would write /var/cache/apt/*pkgcache.bin on a host without them: an apt
        # configuration (on tmpfs, removed after) keeps the package cache in memory. Two dry runs
        # at once (two xdist workers on one host) remove each other's pid file and fail: flock
        # on /etc/apt (an advisory lock; nothing written) runs them one after the other
        "unattended": "f=$(mktemp -p /dev/shm 2>/dev/null || mktemp); "
                      "printf 'Dir::Cache::pkgcache \"\";\\nDir::Cache::srcpkgcache \"\";\\n' > $f; "
                      "APT_CONFIG=$f flock -w 120 /etc/apt unattended-upgrade --dry-run >/dev/null 2>&1; "
                      "echo rc=$?; rm -f $f",
        "apt_lists": "ls /var/lib/apt/lists 2>/dev/null",
        # no lock, and the package cache built in memory: apt would otherwise rewrite pkgcache.bin
        "apt_simulate": "out=$(apt-get -s -o Debug::NoLocking=1 -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache="
                        " dist-upgrade 2>&1); rc=$?; "
                        "printf '%s\\n' \"$out\" | grep -E '^(Inst|E:|W:)'; echo rc=$rc",
    }
    if "app" in roles:
        cmds |= {
            "app_stat": f"stat -c '%U:%G %a %n' {APP_DIR} {ENV_FILE} 2>&1",
            "app_wrong_owner": f"find {APP_DIR} \\( ! -user pynomaly -o ! -group pynomaly \\) 2>&1 | head -20",
            "app_others": f"find {APP_DIR} -perm /o=rwx 2>&1 | head -20",
        }
    if {"db_primary", "db_replica"} & set(roles):
        show = " ".join(f"-c '{s}'" for s in PG_FILES)
        cmds["pg_files"] = (f"for f in $(runuser -u postgres -- psql -qtAX {show} 2>/dev/null); do "
                            "stat -c '%a %U:%G %n' $f; done")
    return cmds


def facts(server) -> dict[str, str]:
    return server.collect("hardening", hardening_commands(server.roles))


def packages(server) -> dict[str, str]:
    """package -> version, for the installed ones."""
    out = {}
    for line in facts(server)["packages"].splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "installed":
            out[parts[0]] = parts[2]
    return out


def _installed(server, package: str) -> None:
    found = packages(server)
    compare(f"{package} package", found.get(package, "not installed"), "installed")
    assert package in found, f"{server.name}: {package} is not installed"


# ---------------------------------------------------------------- fail2ban


@EVERY_SERVER
@pytest.mark.requirement("SEC-FAIL2BAN-RUNNING")
def test_fail2ban_is_installed_and_running(server):
    """"sudo apt install fail2ban ufw aide rkhunter" - and the daemon answers (fail2ban-client ping)."""
    _installed(server, "fail2ban")
    ping = facts(server)["f2b_ping"]
    attach("fail2ban-client ping", ping)
    assert "pong" in ping, f"{server.name}: fail2ban is not running ({ping.strip()})"


@EVERY_SERVER
@pytest.mark.requirement("SEC-FAIL2BAN-DEFAULTS")
def test_fail2ban_defaults(server, expected):
    """"[DEFAULT] bantime = 3600, findtime = 600, maxretry = 3" in /etc/fail2ban/jail.local."""
    want = expected("SEC-FAIL2BAN-DEFAULTS")
    text = facts(server)["jail_local"]
    attach("jail.local", mask_assignments(text))
    default = ini_sections(text).get("DEFAULT", {}) if "No such file" not in text else {}
    actual = {k: default.get(k) for k in ("bantime", "findtime", "maxretry")}
    compare("jail.local [DEFAULT]", actual, {k: str(want[k]) for k in actual})
    wrong = {k: v for k, v in actual.items() if v != str(want[k])}
    assert not wrong, f"{server.name}: {want['file']} [DEFAULT] differs: {wrong} (guide: {want})"


def _jail_check(server, jail: str, want: dict) -> None:
    data = facts(server)
    attach("fail2ban-client status", data["f2b_status"])
    attach("fail2ban-client -i: get JAIL KEY ...", data["f2b_values"])
    running = fail2ban_jails(data["f2b_status"])
    assert jail in running, f"{server.name}: fail2ban jail {jail} is not active (active: {running or 'none'})"
    live = fail2ban_answers(data["f2b_values"], JAIL_QUESTIONS).get(jail, {})
    section = ini_sections(data["jail_local"]).get(jail, {})
    actual = {"enabled": section.get("enabled"), "filter": section.get("filter"),
              "port": section.get("port"), "logpath": live.get("logpath"), "maxretry": live.get("maxretry"),
              "bantime": live.get("bantime"), "findtime": live.get("findtime")}
    wanted = {k: str(v).lower() for k, v in want.items()}
    compare(f"jail {jail} (daemon + jail.local)", actual, wanted)
    wrong = {k: actual.get(k) for k, v in wanted.items() if str(actual.get(k)).lower() != v}
    assert not wrong, f"{server.name}: jail {jail} differs from the guide: {wrong} (guide: {want})"


@EVERY_SERVER
@pytest.mark.requirement("SEC-FAIL2BAN-SSHD-JAIL")
def test_fail2ban_sshd_jail(server, expected):
    """"[sshd] enabled = true, port = ssh, filter = sshd, logpath = /var/log/auth.log, maxretry = 3"."""
    _jail_check(server, "sshd", expected("SEC-FAIL2BAN-SSHD-JAIL"))


@pytest.mark.roles("web")
@pytest.mark.requirement("SEC-FAIL2BAN-NGINX-HTTP-AUTH-JAIL")
def test_fail2ban_nginx_http_auth_jail(server, expected):
    """"[nginx-http-auth] enabled = true, filter = nginx-http-auth, logpath = /var/log/nginx/error.log,
    maxretry = 3"."""
    _jail_check(server, "nginx-http-auth", expected("SEC-FAIL2BAN-NGINX-HTTP-AUTH-JAIL"))


# ---------------------------------------------------------------- AIDE, rkhunter, upgrades


@EVERY_SERVER
@pytest.mark.requirement("SEC-AIDE-INSTALLED")
def test_aide_is_installed(server):
    """"sudo apt install fail2ban ufw aide rkhunter"."""
    _installed(server, "aide")


@EVERY_SERVER
@pytest.mark.requirement("SEC-AIDE-DB-INITIALISED")
def test_aide_database_is_initialised(server, expected):
    """AIDE needs its baseline (aide --init) before any integrity check can run."""
    path = expected("SEC-AIDE-DB-INITIALISED")["database"]
    seen = facts(server)["aide_db"].strip()
    attach("stat aide.db", seen)
    parts = seen.split()
    size = int(parts[1]) if len(parts) == 2 and parts[0] == path and parts[1].isdigit() else 0
    compare("AIDE database", {"path": path, "bytes": size}, {"path": path, "bytes": "> 0"})
    assert size > 0, f"{server.name}: AIDE database {path} is missing or empty ({seen})"


@EVERY_SERVER
@pytest.mark.requirement("SEC-RKHUNTER-INSTALLED")
def test_rkhunter_is_installed(server):
    """"sudo apt install fail2ban ufw aide rkhunter"."""
    _installed(server, "rkhunter")


@EVERY_SERVER
@pytest.mark.requirement("SEC-UNATTENDED-UPGRADES")
def test_unattended_upgrades(server):
    """Monthly tasks: "sudo unattended-upgrade --dry-run" - installed, and the dry run succeeds."""
    _installed(server, "unattended-upgrades")
    rc = facts(server)["unattended"].strip()
    compare("unattended-upgrade --dry-run", rc, "rc=0")
    assert rc == "rc=0", f"{server.name}: unattended-upgrade --dry-run failed ({rc})"


def pending_upgrades(server):
    """Upgrades the host's own package index offers (apt-get -s: read-only, no apt-get update).

    A host without any package index cannot be judged: that is 'could not audit', not a pass."""
    data = facts(server)
    index = apt_index_files(data["apt_lists"])
    attach("apt package index files (/var/lib/apt/lists)", "\n".join(index) or "none")
    if not index:
        raise RuntimeError(f"{server.name}: no apt package index in /var/lib/apt/lists: cannot tell "
                           "which upgrades are pending (apt update has never run)")
    attach("apt-get -s dist-upgrade (Inst lines)", data["apt_simulate"])
    if not data["apt_simulate"].rstrip().endswith("rc=0"):
        raise RuntimeError(f"{server.name}: apt-get -s dist-upgrade failed: {data['apt_simulate'][-300:]}")
    pending = apt_pending(data["apt_simulate"])
    return pending


@EVERY_SERVER
@pytest.mark.requirement("SEC-SYSTEM-UPGRADED")
def test_system_is_upgraded(server, expected):
    """"sudo apt update && sudo apt upgrade -y": no package is left upgradable."""
    limit = expected("SEC-SYSTEM-UPGRADED")["max_upgradable"]
    pending = pending_upgrades(server)
    compare("upgradable packages", [f"{p.package} {p.installed} -> {p.candidate}" for p in pending],
            f"at most {limit}")
    assert len(pending) <= limit, (f"{server.name}: {len(pending)} upgradable packages (max {limit}): "
                                   + ", ".join(p.package for p in pending[:10]))


# ---------------------------------------------------------------- application security


def _app_stat(server) -> dict[str, tuple[str, str]]:
    """path -> (owner:group, mode) for /opt/pynomaly and .env.production."""
    out = {}
    for line in facts(server)["app_stat"].splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].isdigit():
            out[parts[2]] = (parts[0], parts[1])
    return out


@pytest.mark.roles("app")
@pytest.mark.requirement("SEC-APP-DIR-OWNER")
def test_app_dir_owner(server, expected):
    """"sudo chown -R pynomaly:pynomaly /opt/pynomaly"."""
    want = expected("SEC-APP-DIR-OWNER")
    owner = f"{want['owner']}:{want['group']}"
    seen = _app_stat(server).get(want["path"], ("missing", ""))[0]
    wrong = [p for p in facts(server)["app_wrong_owner"].splitlines() if p.strip()]
    compare(f"owner of {want['path']} (recursive)", {"top": seen, "not owned": wrong}, {"top": owner, "not owned": []})
    assert seen == owner, f"{server.name}: {want['path']} is owned by {seen}, guide: {owner}"
    assert not wrong, f"{server.name}: not owned by {owner} under {want['path']}: {wrong[:5]}"


@pytest.mark.roles("app")
@pytest.mark.requirement("SEC-APP-DIR-MODE")
def test_app_dir_mode(server, expected):
    """"sudo chmod -R 750 /opt/pynomaly": 750 at the top, nothing under it open to others."""
    want = expected("SEC-APP-DIR-MODE")
    seen = _app_stat(server).get(want["path"], ("", "missing"))[1]
    others = [p for p in facts(server)["app_others"].splitlines() if p.strip()]
    compare(f"mode of {want['path']} (recursive)", {"top": seen, "open to others": others},
            {"top": want["mode"], "open to others": []})
    assert seen == want["mode"], f"{server.name}: {want['path']} is mode {seen}, guide: {want['mode']}"
    assert not others, f"{server.name}: grant permissions to others under {want['path']}: {others[:5]}"


@pytest.mark.roles("app")
@pytest.mark.requirement("SEC-ENV-FILE-MODE")
def test_env_file_mode(server, expected):
    """"sudo chmod 600 /opt/pynomaly/.env.production"."""
    want = expected("SEC-ENV-FILE-MODE")
    seen = _app_stat(server).get(want["path"], ("", "missing"))[1]
    compare(want["path"], seen, want["mode"])
    assert seen == want["mode"], f"{server.name}: {want['path']} is mode {seen}, guide: {want['mode']}"


@pytest.mark.roles("db_primary", "db_replica")
@per_requirement("SEC-PG-CONF-MODE", "SEC-PG-HBA-MODE")
def test_postgresql_file_mode(server, expected, req_id):
    """"sudo chmod 600 /var/lib/postgresql/14/main/postgresql.conf" and "... pg_hba.conf": the files
    the running server uses (SHOW config_file / hba_file)."""
    want = expected(req_id)
    files = {}
    for line in facts(server)["pg_files"].splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            files[parts[2].rsplit("/", 1)[-1]] = (parts[0], parts[2])
    attach("files in use (SHOW config_file / hba_file)", facts(server)["pg_files"])
    if want["file"] not in files:
        raise RuntimeError(f"{server.name}: PostgreSQL did not say which {want['file']} it uses")
    mode, path = files[want["file"]]
    compare(path, mode, want["mode"])
    assert mode == want["mode"], f"{server.name}: {path} is mode {mode}, guide: {want['mode']}"
