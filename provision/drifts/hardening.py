"""Security hardening drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import APT_GENCACHES, BACKUPS, ENV_FILE, Drift, edit_file, pretend_removed

# A local repository whose Release says Debian-Security, offering a newer rkhunter (an empty
# package, so that unattended-upgrade --dry-run still succeeds); only its own list is fetched.
SECREPO = f"{BACKUPS}/secrepo"
SECLIST = "/etc/apt/sources.list.d/pynomaly-drift.list"
_CONTROL = r"Package: rkhunter\nVersion: %s\nArchitecture: all\nMaintainer: drift <root@h>\nDescription: drift\n"
_RELEASE = (r"Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\nCodename: bookworm-security\n"
            r"Version: 12\nArchitectures: all amd64\nComponents: main\n")
SECURITY_UPDATE = "\n".join([
    "set -e",
    f"R={SECREPO}",
    "rm -rf $R; mkdir -p $R/pkg/DEBIAN",
    "V=$(dpkg-query -W -f='${Version}' rkhunter)+deb12u9",
    f"printf '{_CONTROL}' \"$V\" > $R/pkg/DEBIAN/control",
    "F=rkhunter_${V}_all.deb",
    "dpkg-deb -b $R/pkg $R/$F >/dev/null",
    "cd $R && rm -rf pkg",
    "{ dpkg-deb -f $F; echo \"Filename: ./$F\"; echo \"Size: $(stat -c %s $F)\";",
    "  echo \"SHA256: $(sha256sum $F | cut -d' ' -f1)\"; echo; } > Packages",
    f"printf '{_RELEASE}' > Release",
    f"echo \"deb [trusted=yes] file:$R ./\" > {SECLIST}",
    f"apt-get update -qq -o Dir::Etc::sourcelist={SECLIST} -o Dir::Etc::sourceparts=-"
    " -o APT::Get::List-Cleanup=0 >/dev/null 2>&1",
    "apt-get -s dist-upgrade | grep -q '^Inst rkhunter'",
])
SECURITY_HEAL = (f"rm -rf {SECREPO} {SECLIST} /var/lib/apt/lists/_var_lib_pynomaly-drift_secrepo_*"
                 f" && {APT_GENCACHES}")

_defaults_apply, _defaults_heal = edit_file(
    "cache2", "/etc/fail2ban/jail.local", "'0,/^bantime = 3600$/s//bantime = 600/'", "true", "jail.local")
_aide_apply, _aide_heal = pretend_removed("cache1", "aide", "/usr/bin/aide")
_rkh_apply, _rkh_heal = pretend_removed("cache3", "rkhunter", "/usr/bin/rkhunter")
_uu_apply, _uu_heal = pretend_removed("db2", "unattended-upgrades", "/usr/bin/unattended-upgrade")

DRIFTS: tuple[Drift, ...] = (
    Drift("fail2ban-stopped",
          ("SEC-FAIL2BAN-RUNNING", "SEC-FAIL2BAN-SSHD-JAIL", "CHK-SERVICES-RUNNING"),
          "db1: service fail2ban stop",
          lambda c: c.sh("db1", "service fail2ban stop >/dev/null"),
          lambda c: c.sh("db1", "service fail2ban start >/dev/null")),
    Drift("env-file-world-readable", ("SEC-ENV-FILE-MODE", "SEC-APP-DIR-MODE"),
          f"web1: chmod 644 {ENV_FILE} (guide: 600; also grants 'others' read under /opt/pynomaly)",
          lambda c: c.sh("web1", f"chmod 644 {ENV_FILE}"),
          lambda c: c.sh("web1", f"chmod 600 {ENV_FILE}")),
    Drift("pg-hba-mode", ("SEC-PG-HBA-MODE",),
          "db1: chmod 644 /etc/postgresql/15/main/pg_hba.conf (guide: 600)",
          lambda c: c.sh("db1", "chmod 644 /etc/postgresql/15/main/pg_hba.conf"),
          lambda c: c.sh("db1", "chmod 600 /etc/postgresql/15/main/pg_hba.conf")),
    Drift("pg-conf-mode", ("SEC-PG-CONF-MODE",),
          "db2: chmod 644 /etc/postgresql/15/main/postgresql.conf (guide: 600)",
          lambda c: c.sh("db2", "chmod 644 /etc/postgresql/15/main/postgresql.conf"),
          lambda c: c.sh("db2", "chmod 600 /etc/postgresql/15/main/postgresql.conf")),
    Drift("fail2ban-default-bantime", ("SEC-FAIL2BAN-DEFAULTS",),
          "cache2: jail.local [DEFAULT] bantime = 600 (guide: 3600; file only, daemon not reloaded)",
          _defaults_apply, _defaults_heal),
    # running vs on disk (issue 19)
    Drift("fail2ban-not-reloaded", ("SEC-FAIL2BAN-DEFAULTS",),
          "cache3: jail.local [DEFAULT] findtime = 60, not reloaded (the jails still run findtime 600)",
          *edit_file("cache3", "/etc/fail2ban/jail.local", "'0,/^findtime = 600$/s//findtime = 60/'", "true",
                     "fail2ban-not-reloaded")),
    Drift("fail2ban-not-persisted", ("SEC-FAIL2BAN-SSHD-JAIL",),
          "cache1: fail2ban-client set sshd maxretry 10 (live only: jail.local still says 3, the next reload "
          "reverts it)",
          lambda c: c.sh("cache1", "fail2ban-client set sshd maxretry 10 >/dev/null"),
          lambda c: c.sh("cache1", "fail2ban-client set sshd maxretry 3 >/dev/null")),
    Drift("fail2ban-nginx-jail-stopped", ("SEC-FAIL2BAN-NGINX-HTTP-AUTH-JAIL",),
          "web1: fail2ban-client stop nginx-http-auth",
          lambda c: c.sh("web1", "fail2ban-client stop nginx-http-auth >/dev/null"),
          lambda c: c.sh("web1", "fail2ban-client reload >/dev/null"
                                 " && fail2ban-client status nginx-http-auth >/dev/null")),
    Drift("aide-removed", ("SEC-AIDE-INSTALLED",),
          "cache1: aide removed as dpkg sees it (status deinstall, /usr/bin/aide gone; db kept)",
          _aide_apply, _aide_heal),
    Drift("aide-db-missing", ("SEC-AIDE-DB-INITIALISED",),
          "cache3: /var/lib/aide/aide.db moved away (no baseline)",
          lambda c: c.sh("cache3", f"mkdir -p {BACKUPS} && mv /var/lib/aide/aide.db {BACKUPS}/aide.db"),
          lambda c: c.sh("cache3", f"mv {BACKUPS}/aide.db /var/lib/aide/aide.db")),
    Drift("rkhunter-removed", ("SEC-RKHUNTER-INSTALLED",),
          "cache3: rkhunter removed as dpkg sees it (status deinstall, /usr/bin/rkhunter gone)",
          _rkh_apply, _rkh_heal),
    Drift("unattended-upgrades-removed", ("SEC-UNATTENDED-UPGRADES",),
          "db2: unattended-upgrades removed as dpkg sees it (status deinstall, binary gone)",
          _uu_apply, _uu_heal),
    Drift("app-dir-foreign-owner", ("SEC-APP-DIR-OWNER",),
          "web1: chown root:root /opt/pynomaly/docker-compose.prod.yml (guide: chown -R pynomaly:pynomaly)",
          lambda c: c.sh("web1", "chown root:root /opt/pynomaly/docker-compose.prod.yml"),
          lambda c: c.sh("web1", "chown pynomaly:pynomaly /opt/pynomaly/docker-compose.prod.yml")),
    Drift("security-update-pending", ("SEC-SYSTEM-UPGRADED", "CHK-SECURITY-UPDATES"),
          "cache2: a local Debian-Security repository offers a newer rkhunter (one pending security upgrade)",
          lambda c: c.sh("cache2", SECURITY_UPDATE),
          lambda c: c.sh("cache2", SECURITY_HEAL)),
)
