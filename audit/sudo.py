"""What the audit runs as root: every command behind `$SUDO` in the probes (and the access layer's
two own uses of sudo), with fixed arguments, in one list.

A host whose inventory says `ansible_become: true` is read through `sudo -n`; the sudoers file an
operator installs for the audit account is rendered from this list (`python -m audit.sudoers
--inventory NAME [--host HOST]`, audit/sudoers.py), and tests/unit/test_sudo.py fails when a probe
runs a `$SUDO` command that is not here, or when a command here is no probe's any more.

Each `Command` is a program name and its arguments, exactly as the probe passes them (after the
shell's quoting). An argument `<name>` is a parameter: the probe passes a shell variable or a
Python value of that name, and the sudoers file fixes it to the values of the inventory (the
catalogue's expected values with their overrides, the public name, the host's groups), one rule
per value. Where a value cannot be known before the audit (the newest backup's name, the cluster
directory of PostgreSQL's version), it is a `Pattern`: a sudoers glob made of fixed text and
one-character classes (`[0-9]`), which cannot match `/`, `..` or a space, so never another file;
the one `*` (a fail2ban jail's name) is an argument of a read-only client command, not a file.
No command here starts a shell, reads a file the guide does not name, or takes its input from
the audit account where that input could make it do more than read (`fail2ban-client -i`, `sh -c`,
an APT configuration of the account's choosing are not here: the probes parse as the account).

Program paths are the host's (`PATHS`, by distribution, or `--resolve` asks the hosts); sudo
matches a rule's path by the file it names, so /usr/sbin and /sbin are the same program on a
merged-/usr system (Debian 12, Ubuntu 20.04+, RHEL 8+).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from audit import guide

ONE_DIGIT = "[0-9]"


@dataclass(frozen=True)
class Pattern:
    """A sudoers glob for an argument whose exact value the audit learns on the host."""

    text: str


Value = str | Pattern


@dataclass(frozen=True)
class Target:
    """Whom the rules are for: one host's groups (None: every host of the inventory) and the values
    the probes will pass (`expected(REQ)`: the catalogue's value or the inventory's override)."""

    groups: frozenset[str] | None
    expected: Callable[[str], Any]
    public_host: str
    docker_url: str | None = None
    distro: str = "debian"
    sysvinit: bool = False
    cluster_ports: tuple[int, ...] = guide.CLUSTER_PORTS   # the host's audit_settings (redis_cluster)
    app_runtime: str = "docker"                           # the host's audit_settings (app)

    def has(self, roles: tuple[str, ...]) -> bool:
        return self.groups is None or not roles or bool(self.groups & set(roles))


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]                 # program, then arguments ("<name>": a parameter)
    area: str                             # the probe module (audit/probes/AREA.py) or "access"
    why: str                              # what it reads, for which checks
    roles: tuple[str, ...] = ()           # hosts of these inventory groups only; () every host
    unless: tuple[str, ...] = ()          # never on hosts of these groups
    opt_in: str = ""                      # "" the default audit, else the opt-in (writes, burst, load)
    sysvinit: bool = False                # only hosts without systemd (the init scripts' status)
    runtime: str = ""                     # only app hosts that run the app so (audit_settings.app_runtime)
    values: Callable[[Target], list[dict[str, Value]]] | None = field(default=None, compare=False)

    @property
    def params(self) -> list[str]:
        return [p for a in self.argv for p in re.findall(r"<(\w+)>", a)]

    def applies(self, target: Target) -> bool:
        if target.groups is not None and target.groups & set(self.unless):
            return False
        return target.has(self.roles) and (target.sysvinit or not self.sysvinit) and \
            (not self.runtime or target.groups is None or target.app_runtime == self.runtime)

    def lines(self, target: Target) -> list[tuple[Value, ...]]:
        """The argument vectors of this command for `target`, every parameter replaced."""
        rows = self.values(target) if self.values else [{}]
        out = []
        for row in rows:
            missing = set(self.params) - set(row)
            if missing:
                raise KeyError(f"{' '.join(self.argv)}: no value for {', '.join(sorted(missing))}")
            out.append(tuple(substitute(a, row) for a in self.argv))
        return list(dict.fromkeys(out))


def substitute(arg: str, row: dict[str, Value]) -> Value:
    """One argument with its parameters replaced: a Pattern when one of its values is."""
    parts = [row[p] if i % 2 else p for i, p in enumerate(re.split(r"<(\w+)>", arg))]
    if not any(isinstance(v, Pattern) for v in parts):
        return "".join(parts)
    return Pattern("".join(v.text if isinstance(v, Pattern) else glob_escape(v) for v in parts))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def digits(strftime: str) -> Pattern:
    """A file name pattern of the guide (`pynomaly_backup_%Y%m%d_%H%M%S.sql.gz`) as a sudoers glob
    that matches exactly the names it makes: one [0-9] per digit."""
    widths = {"%Y": 4, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2}
    parts = re.split(r"(%[YmdHMS])", strftime)
    return Pattern("".join(ONE_DIGIT * widths[p] if p in widths else glob_escape(p) for p in parts))


# ---------------------------------------------------------------- the values of the parameters

def rows(**columns: list[Value]) -> list[dict[str, Value]]:
    """Every combination of the given parameter values."""
    names = list(columns)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*columns.values())]


def on(t: Target, role: str) -> bool:
    return t.groups is None or role in t.groups


def with_domain(value: str, t: Target) -> str:
    return value.replace(guide.PLACEHOLDER_DOMAIN, t.public_host)


def config_files(t: Target) -> list[dict[str, Value]]:
    """The files network.file_command reads: jail.local, ufw's (ufw hosts), the saved iptables rules."""
    files = [guide.FAIL2BAN_JAIL]
    if t.groups is None or guide.IPTABLES_GROUP not in t.groups:
        files += ["/etc/ufw/ufw.conf", "/etc/default/ufw", "/etc/ufw/user.rules"]
    if on(t, guide.IPTABLES_GROUP):
        files.append(guide.IPTABLES_RULES)
    return rows(config_file=files)


# PostgreSQL's configuration files where the distribution's packages put them (the server names
# them: SHOW config_file, hba_file); its major version is the part not known in advance
PG_DIRS = {"debian": [f"/etc/postgresql/{ONE_DIGIT * 2}/main"],
           "rhel": [f"/var/lib/pgsql/{ONE_DIGIT * 2}/data", "/var/lib/pgsql/data"]}


def pg_files(t: Target) -> list[dict[str, Value]]:
    dirs = PG_DIRS.get(t.distro, PG_DIRS["debian"])
    return [{"pg_config_file": Pattern(f"{d}/postgresql.conf"), "pg_hba_file": Pattern(f"{d}/pg_hba.conf")}
            for d in dirs]


def backup_scripts(t: Target) -> list[dict[str, Value]]:
    return rows(backup_script=[s for role, s in (("backup_db", guide.BACKUP_DB_SCRIPT),
                                                 ("backup_app", guide.BACKUP_APP_SCRIPT)) if on(t, role)])


def backup_dirs(t: Target) -> list[dict[str, Value]]:
    return [{"backup_dir": d, "backup_glob": g} for role, d, g in (
        ("backup_db", guide.BACKUP_DB_DIR, "*.sql.gz"), ("backup_app", guide.BACKUP_APP_DIR, "*.tar.gz"))
        if on(t, role)]


def newest_backups(t: Target) -> list[dict[str, Value]]:
    """The guide's backup names (BAK-*: file_pattern), one [0-9] per digit of the time stamp."""
    db = digits(t.expected("BAK-DB-SCRIPT-DUMP")["file_pattern"]).text
    app = digits(t.expected("BAK-APP-SCRIPT-ARCHIVE")["file_pattern"]).text
    return [{"db_backup": Pattern(f"{glob_escape(guide.BACKUP_DB_DIR)}/{db}"),
             "app_backup": Pattern(f"{glob_escape(guide.BACKUP_APP_DIR)}/{app}")}]


def services(t: Target) -> list[dict[str, Value]]:
    from audit.probes.checklist import ALIASES, expected_services

    want = t.expected("CHK-SERVICES-RUNNING")
    roles = t.groups if t.groups is not None else {r for r in want if r != "all"}
    names = [s for s in expected_services(roles, want) if s != guide.APP_SERVICE]
    return rows(unit=[u for s in names for u in ALIASES.get(s, (s,))], init_d=["/etc/init.d"])


def redis_confs(t: Target) -> list[dict[str, Value]]:
    """redis.conf (redis) and each cluster node's file (redis_cluster), as Redis names them."""
    confs = [guide.REDIS_CONF] if on(t, "redis") else []
    confs += [f"/etc/redis/redis-{port}.conf" for port in t.cluster_ports] if on(t, "redis_cluster") else []
    return rows(redis_conf=confs)


def docker_socket(t: Target) -> list[dict[str, Value]]:
    url = t.docker_url or ""
    return rows(docker_socket=[url[len("unix://"):] if url.startswith("unix://") else "/var/run/docker.sock"])


def module_attr(module: str, name: str) -> Any:
    """A probe's own constant (an SQL text, a script), read where the probe keeps it."""
    import importlib

    return getattr(importlib.import_module(f"audit.probes.{module}"), name)


def module_value(module: str, name: str) -> Callable[[Target], list[dict[str, Value]]]:
    """A probe's own constant as the one value of the parameter of its name (lower case)."""
    return lambda _t: rows(**{name.lower(): [module_attr(module, name)]})


def expected(param: str, req_id: str, key: str | None = None) -> Callable[[Target], list[dict[str, Value]]]:
    """A parameter whose one value is a catalogue expectation (or the inventory's override)."""
    def values(t: Target) -> list[dict[str, Value]]:
        value = t.expected(req_id)
        return rows(**{param: [str(value[key] if key else value)]})
    return values


def each(**columns: tuple[str, ...]) -> Callable[[Target], list[dict[str, Value]]]:
    return lambda _t: rows(**{k: list(v) for k, v in columns.items()})


# ---------------------------------------------------------------- the commands

PSQL = ("runuser", "-u", "postgres", "--", "psql", "-qtAX")
SCRATCH = Pattern("pynomaly_restore_check_" + ONE_DIGIT * 10)  # the restore test's database, by its time
EXPORTER = "prometheus-postgres-exporter"
APP_FILES = (guide.COMPOSE_FILE, guide.START_SCRIPT, guide.ENV_FILE)
MAINTENANCE_FILES = (*guide.MAINTENANCE_SCRIPTS.values(), guide.API_KEY_SCRIPT)
DBS = ("db_primary", "db_replica")
READ_ALL = ("-r", "-H", "-a", "-e", "^")  # grep: every line of every file, after its path

COMMANDS: tuple[Command, ...] = (
    # the access layer (audit/access.py, audit/transport.py)
    Command(("true",), "access", "`sudo -n true`: sudo answers without a password before anything is read "
            "(refused, or asking for one: could not audit, naming sudo)"),
    Command(("docker", "system", "dial-stdio"), "access", "the Docker engine that runs the app containers, when "
            "audit_docker_url is ssh:// (containers, images, their processes, the app's config dump in them). "
            "The Docker API is as strong as root: grant it only on that host", roles=("docker",)),
    Command(("docker", "version", "--format", "{{.Server.Version}}"), "prerequisites",
            "PRE-DOCKER-VERSION", roles=("docker",)),
    # network (and the files network.file_command reads for hardening)
    Command(("iptables-save",), "network", "the firewall as it runs (ufw's chains, or the guide's iptables "
            "rules): NET-*, SEC-FIREWALL-*, CHK-FIREWALL-RULES-UP-TO-DATE"),
    Command(("ufw", "status", "verbose"), "network", "ufw's view of its rules", unless=(guide.IPTABLES_GROUP,)),
    Command(("cat", "<config_file>"), "network", "ufw's configuration (ufw hosts), the saved iptables rules "
            "(iptables hosts), fail2ban's jail.local", values=config_files),
    # hardening
    Command(("fail2ban-client", "ping"), "hardening", "SEC-FAIL2BAN-*: the server answers"),
    Command(("fail2ban-client", "status"), "hardening", "SEC-FAIL2BAN-*: the active jails"),
    Command(("fail2ban-client", "get", "<jail>", "<jail_key>"), "hardening", "SEC-FAIL2BAN-*: each active jail's "
            "values as it runs (the jail's name is any word: `get` only reads)",
            values=lambda t: rows(jail=[Pattern("*")], jail_key=list(module_attr("hardening", "JAIL_KEYS")))),
    Command(("grep", *READ_ALL, "/etc/fail2ban/jail.d", guide.FAIL2BAN_JAIL), "hardening",
            "SEC-FAIL2BAN-*: jail.d/*.conf, jail.local, jail.d/*.local as fail2ban reads them"),
    Command(("stat", "-c", "%n %s", "<aide_db>"), "hardening", "SEC-AIDE-DB-INITIALISED",
            values=expected("aide_db", "SEC-AIDE-DB-INITIALISED", "database")),
    Command(("flock", "-w", "120", "/etc/apt", "unattended-upgrade", "--dry-run"), "hardening",
            "SEC-UNATTENDED-UPGRADES: the guide's dry run, with root's own APT configuration (through sudo the "
            "account cannot choose another; a stale package cache is rebuilt, as the guide's command does)"),
    Command(("stat", "-c", "%a %U:%G %n", guide.APP_DIR, "<env_file>"), "hardening",
            "SEC-APP-DIR-MODE, SEC-ENV-FILE-MODE", roles=("app",),
            values=expected("env_file", "SEC-ENV-FILE-MODE", "path")),
    Command(("find", guide.APP_DIR, "(", "!", "-user", "<app_user>", "-o", "!", "-group", "<app_group>", ")"),
            "hardening", "SEC-APP-DIR-OWNER: what under the app directory someone else owns", roles=("app",),
            values=lambda t: rows(app_user=[t.expected("SEC-APP-DIR-OWNER")["owner"]],
                                  app_group=[t.expected("SEC-APP-DIR-OWNER")["group"]])),
    Command(("find", guide.APP_DIR, "-perm", "/o=rwx"), "hardening", "SEC-APP-DIR-MODE: what is open to others",
            roles=("app",)),
    Command((*PSQL, "-c", "SHOW config_file", "-c", "SHOW hba_file"), "hardening",
            "SEC-PG-CONF-MODE, SEC-PG-HBA-MODE: the files the server uses", roles=DBS),
    Command(("stat", "-c", "%a %U:%G %n", "<pg_config_file>", "<pg_hba_file>"), "hardening",
            "SEC-PG-CONF-MODE, SEC-PG-HBA-MODE: their modes", roles=DBS, values=pg_files),
    # checklist
    Command(("tail", "-n", "5000", "<auth_log>"), "checklist", "CHK-FAILED-LOGINS: sshd's log (Debian, RHEL)",
            values=each(auth_log=guide.AUTH_LOGS)),
    Command(("journalctl", "-q", "--no-pager", "-o", "short-iso", "--since", "-<window>s", "_COMM=sshd",
             "_COMM=sshd-session"), "checklist", "CHK-FAILED-LOGINS: sshd's journal, where it keeps no log file",
            values=lambda t: rows(window=[str(int(t.expected("CHK-FAILED-LOGINS")["window_seconds"]))])),
    Command(("service", "<unit>", "status"), "checklist", "CHK-SERVICES-RUNNING without systemd (init scripts)",
            sysvinit=True, values=services),
    Command(("<init_d>/<unit>", "status"), "checklist", "CHK-SERVICES-RUNNING without systemd nor `service`",
            sysvinit=True, values=services),
    Command((*PSQL, "-c", "CREATE DATABASE <scratch>"), "checklist",
            "CHK-BACKUP-INTEGRITY-VERIFIED: a scratch database", roles=("backup_db",), opt_in="writes",
            values=lambda t: rows(scratch=[SCRATCH])),
    Command((*PSQL, "-v", "ON_ERROR_STOP=1", "-d", "<scratch>"), "checklist", "CHK-BACKUP-INTEGRITY-VERIFIED: the "
            "newest dump restored into it: its SQL comes on standard input and runs as the PostgreSQL superuser "
            "(sudo cannot narrow an input)", roles=("backup_db",), opt_in="writes",
            values=lambda t: rows(scratch=[SCRATCH])),
    Command((*PSQL, "-d", "<scratch>", "-c", "<restore_count_sql>"), "checklist",
            "CHK-BACKUP-INTEGRITY-VERIFIED: the rows restored", roles=("backup_db",), opt_in="writes",
            values=lambda t: rows(scratch=[SCRATCH],
                                  restore_count_sql=[module_attr("checklist", "RESTORE_COUNT_SQL")])),
    Command((*PSQL, "-d", "<database>", "-c", "<restore_count_sql>"), "checklist",
            "CHK-BACKUP-INTEGRITY-VERIFIED: the rows live", roles=("backup_db",), opt_in="writes",
            values=lambda t: rows(database=[t.expected("BAK-DB-SCRIPT-DUMP")["database"]],
                                  restore_count_sql=[module_attr("checklist", "RESTORE_COUNT_SQL")])),
    Command((*PSQL, "-c", "DROP DATABASE IF EXISTS <scratch>"), "checklist",
            "CHK-BACKUP-INTEGRITY-VERIFIED: the scratch database dropped", roles=("backup_db",), opt_in="writes",
            values=lambda t: rows(scratch=[SCRATCH])),
    # maintenance
    Command(("stat", "-c", "%n %a %A", *MAINTENANCE_FILES), "maintenance", "MAINT-*-SCRIPT: the scripts' modes",
            roles=("app",)),
    Command(("grep", *READ_ALL, "/var/spool/cron"), "maintenance", "MAINT-*-CRON, BAK-CRON-*: the users' crontabs "
            "(Debian's crontabs/USER, RHEL's USER)", roles=("app",)),
    Command(("grep", "-R", *READ_ALL[1:], "/etc/crontab", "/etc/cron.d"), "maintenance",
            "MAINT-*-CRON: the system crontabs", roles=("app",)),
    Command(("find", guide.APP_LOG_DIR, "-name", "*.log.*", "-mtime", "+<max_age_days>"), "maintenance",
            "MAINT-WEEKLY-LOG-CLEANUP: rotated logs beyond the limit", roles=("app",),
            values=expected("max_age_days", "MAINT-WEEKLY-LOG-CLEANUP", "max_age_days")),
    Command(("openssl", "x509", "-noout", "-enddate", "-in", f"{guide.LETSENCRYPT_LIVE}/<public_host>/cert.pem"),
            "maintenance", "MAINT-WEEKLY-CERT-CHECK: the certificate's end date", roles=("app",),
            values=lambda t: rows(public_host=[t.public_host])),
    Command(("cat", "<maintenance_script>"), "maintenance", "MAINT-*: the daily, weekly and monthly scripts",
            roles=("app",), values=each(maintenance_script=tuple(guide.MAINTENANCE_SCRIPTS.values()))),
    # backups (root's crontab also holds certbot's renewal line: tls)
    Command(("crontab", "-l", "-u", "root"), "backups", "BAK-CRON-*, TLS-CERTBOT-RENEWAL: root's crontab",
            roles=("backup_db", "backup_app", "app", "web")),
    Command(("stat", "-c", "%a %U:%G", "<backup_script>"), "backups", "BAK-*-SCRIPT: the backup scripts' modes",
            roles=("backup_db", "backup_app"), values=backup_scripts),
    Command(("test", "-x", "<backup_script>"), "backups", "BAK-*-SCRIPT: executable",
            roles=("backup_db", "backup_app"), values=backup_scripts),
    Command(("cat", "<backup_script>"), "backups", "BAK-*-SCRIPT-*: what they run",
            roles=("backup_db", "backup_app"), values=backup_scripts),
    Command(("find", "<backup_dir>", "-maxdepth", "1", "-name", "<backup_glob>", "-printf", "%T@ %s %f\\n"),
            "backups", "BAK-*-RETENTION, BAK-*-RECENT, BAK-DB-TODAY: the backups' times and sizes",
            roles=("backup_db", "backup_app"), values=backup_dirs),
    Command(("find", "<backup_dir>", "-maxdepth", "1", "-name", "<backup_glob>", "-printf", "%T@ %p\\n"),
            "backups", "BAK-*-INTEGRITY: which backup is the newest", roles=("backup_db", "backup_app"),
            values=backup_dirs),
    Command(("gzip", "-t", "<db_backup>"), "backups", "BAK-DB-INTEGRITY: the newest dump is a whole gzip",
            roles=("backup_db",), values=newest_backups),
    Command(("gunzip", "-c", "<db_backup>"), "backups", "BAK-DB-INTEGRITY: the dump's first and last lines and "
            "its CREATE TABLE lines (it holds the database's data: only these lines leave the host)",
            roles=("backup_db",), values=newest_backups),
    Command(("test", "-d", guide.BACKUP_APP_DIR), "backups", "BAK-APP-*: the backup directory",
            roles=("backup_app",)),
    Command(("tar", "-tzf", "<app_backup>"), "backups", "BAK-APP-INTEGRITY: the newest archive's file list",
            roles=("backup_app",), values=newest_backups),
    Command(("cat", guide.LOGROTATE_CONF), "backups", "BAK-LOGROTATE-CONFIG", roles=("app",)),
    Command(("logrotate", "-d", guide.LOGROTATE_CONF), "backups", "BAK-LOGROTATE-CONFIG: valid (-d: a dry run)",
            roles=("app",)),
    # tls
    Command(("test", "-f", "<cert_file>"), "tls", "TLS-CERT-FILES: the files NGINX names are there", roles=("web",),
            values=lambda t: rows(cert_file=[with_domain(p, t) for p in t.expected("TLS-CERT-FILES").values()])),
    # app (and the Compose file of deployment_files, the env file of performance)
    Command(("stat", "-L", "-c", "%n", *APP_FILES), "app", "APP-*: which of the app's files exist",
            roles=("app",)),
    Command(("cat", "<app_file>"), "app", "APP-COMPOSE-*, APP-START-*, APP-ENV-*: the Compose file, the start "
            "script, the env file (sourced by the audit account, never as root; secrets judged, never kept)",
            roles=("app",), values=each(app_file=APP_FILES)),
    Command(("cat", "<env_file>"), "app", "APP-ENV-*: the env file, sourced by the audit account",
            roles=("app",), values=expected("env_file", "SEC-ENV-FILE-MODE", "path")),
    Command(("stat", "-L", "-c", "%a", guide.START_SCRIPT), "app", "APP-START-SCRIPT: executable", roles=("app",)),
    Command(("runuser", "-u", "<app_user>", "--", "env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "bash", "-c",
             "<gunicorn_dump>"), "performance", "PERF-* (Gunicorn on the host): the app's configuration dump, run "
            "as the app's own account with its env file", roles=("app",), runtime="gunicorn",
            values=lambda t: rows(app_user=[t.expected("SEC-APP-DIR-OWNER")["owner"]],
                                  gunicorn_dump=[module_attr("performance", "GUNICORN_DUMP")])),
    Command(("stat", "-c", "%n %s %Y", "<access_log>", "<error_log>"), "app", "APP-GUNICORN-*-LOG: being written",
            roles=("app",), values=lambda t: rows(access_log=[t.expected("APP-GUNICORN-ACCESS-LOG")],
                                                  error_log=[t.expected("APP-GUNICORN-ERROR-LOG")])),
    # nginx
    Command(("nginx", "-T"), "nginx", "NGINX-*, RATE-*, TLS-*: the configuration as NGINX reads it", roles=("web",)),
    Command(("nginx", "-t"), "nginx", "NGINX-CONFIG-VALID", roles=("web",)),
    Command(("cat", guide.NGINX_CONF), "nginx", "NGINX-*: nginx.conf when `nginx -T` fails (the includes are read "
            "as the audit account)", roles=("web",)),
    Command(("find", "/proc", "-mindepth", "3", "-maxdepth", "3", "-lname", "/var/log/nginx/*", "-ls"), "nginx",
            "NGINX-*-LOG: the log files NGINX's processes have open", roles=("web",)),
    # monitoring
    Command(("cat", guide.PROMETHEUS_CONFIG), "monitoring", "MON-*: prometheus.yml", roles=("monitoring",)),
    Command(("cat", "<rules_file>"), "monitoring", "MON-RULES-*, MON-ALERT-*: the rules file (the shipped rule "
            "tests run on a copy, as the audit account)", roles=("monitoring",),
            values=expected("rules_file", "MON-RULES-VALID", "file")),
    Command(("cat", "<dashboard_file>"), "monitoring", "MON-GRAFANA-DASHBOARD, when no Grafana API is declared",
            roles=("monitoring",), values=each(dashboard_file=(guide.GRAFANA_DASHBOARD,))),
    Command(("promtool", "check", "config", guide.PROMETHEUS_CONFIG), "monitoring", "MON-CONFIG-VALID",
            roles=("monitoring",)),
    Command(("promtool", "check", "rules", "<rules_file>"), "monitoring", "MON-RULES-VALID", roles=("monitoring",),
            values=expected("rules_file", "MON-RULES-VALID", "file")),
    Command(("systemctl", "stop", "<unit>"), "monitoring", "CHK-MONITORING-ALERTS-FUNCTIONAL: the PostgreSQL "
            "exporter stopped until DatabaseConnectionFailure arrives", roles=("monitoring",), opt_in="writes",
            values=each(unit=(EXPORTER,))),
    Command(("systemctl", "start", "<unit>"), "monitoring", "CHK-MONITORING-ALERTS-FUNCTIONAL: started again",
            roles=("monitoring",), opt_in="writes", values=each(unit=(EXPORTER,))),
    Command(("pkill", "-F", "/run/prometheus/<unit>.pid"), "monitoring", "CHK-MONITORING-ALERTS-FUNCTIONAL: the "
            "same without systemd, by its pid file", roles=("monitoring",), opt_in="writes", sysvinit=True,
            values=each(unit=(EXPORTER,))),
    Command(("service", "<unit>", "start"), "monitoring", "CHK-MONITORING-ALERTS-FUNCTIONAL: started again "
            "(init scripts)", roles=("monitoring",), opt_in="writes", sysvinit=True, values=each(unit=(EXPORTER,))),
    # load
    Command(("cat", "/var/log/nginx/timing.log"), "load", "PERF-*: NGINX's $request_time of the run's requests",
            roles=("web",), opt_in="load"),
    # postgres, redis
    Command((*PSQL, "-p", str(guide.PG_PORT), "-d", "postgres", "-c", "SET default_transaction_read_only = on",
             "-c", "<file_settings_sql>"), "postgres", "PG-* value rows on disk: pg_file_settings, in a read-only "
            "session of the postgres account", roles=DBS, values=module_value("postgres", "FILE_SETTINGS_SQL")),
    Command(("cat", "<redis_conf>"), "redis", "REDIS-*, REDIS-CLUSTER-* on disk: redis.conf and the cluster "
            "nodes' files (only the guide's directives leave the host)", roles=("redis", "redis_cluster"),
            values=redis_confs),
    # advisories (--gate=hardened): read by every default audit, never counted in it
    Command(("sshd", "-T"), "advisories", "ADV-SSH-*: sshd's effective configuration"),
    Command(("grep", "-r", "-H", "-n", "pg_stat_statements", guide.SCRIPTS_DIR), "advisories",
            "ADV-PG-SLOW-QUERY-REPORT: scripts that read pg_stat_statements", roles=("db_primary", "app")),
    Command(("cat", "<pg_hba_file>"), "advisories", "ADV-PG-HBA-TLS: pg_hba.conf", roles=DBS, values=pg_files),
    Command(("stat", "-L", "-c", "%a %U:%G", "<docker_socket>"), "advisories", "ADV-DOCKER-SOCKET: its mode",
            roles=("docker",), values=docker_socket),
    Command(("cat", "/etc/docker/daemon.json"), "advisories", "ADV-DOCKER-TCP: the engine's configuration",
            roles=("docker",)),
)


def commands_for(target: Target, opt_in: frozenset[str] = frozenset()) -> list[Command]:
    """The commands a host of `target` needs: the default audit's, and the opt-ins named."""
    return [c for c in COMMANDS if c.applies(target) and (not c.opt_in or c.opt_in in opt_in)]


def allows(argv: list[str], target: Target) -> Command | None:
    """The command of the list a probe's `$SUDO` use is, argument by argument: a literal equals
    the command's (or one of its values for `target`); a probe's variable `<name>` matches the
    command's parameter of that name."""
    for c in COMMANDS:
        if len(c.argv) != len(argv):
            continue
        lines = None
        for i, (want, got) in enumerate(zip(c.argv, argv, strict=True)):
            if got == want:
                continue
            lines = c.lines(target) if lines is None else lines
            if not any(line[i] == got for line in lines):
                break
        else:
            return c
    return None


# ---------------------------------------------------------------- for the probes

def grouped(ranks: list[tuple[str, int]], header: str = "") -> str:
    """The audit account's half of reading several files with one fixed `grep -H -e ^` as root:
    its `PATH:LINE` lines grouped back into files, ordered by the rank of the first regular
    expression (ERE) their path matches, then by path (files no expression matches are left
    out), each after `header` (an awk expression of the file's path `f` and name `b`), if any."""
    ranked = " ".join(f"if (f ~ /{rx.replace('/', chr(92) + '/')}/) k = {rank}; else" for rx, rank in ranks)
    split = ("awk '{i = index($0, \":\"); f = substr($0, 1, i - 1); " + ranked + " next; "
             "print k \"\\t\" f \"\\t\" substr($0, i + 1)}'")
    shown = f"print {header}; " if header else ""
    show = f"if ($2 != last) {{f = $2; b = f; sub(/.*\\//, \"\", b); {shown}last = $2}} "
    join = "awk -F '\\t' '{" + show + "sub(/^[^\\t]*\\t[^\\t]*\\t/, \"\"); print}'"
    return f"{split} | LC_ALL=C sort -s -t \"$(printf '\\t')\" -k1,1n -k2,2 | {join}"


# ---------------------------------------------------------------- where the programs are

# sudo runs the first one found in its secure_path; these are the files the packages install
# (Debian 12 / Ubuntu 22.04+: merged /usr). RHEL differs where listed; a split-/usr system (Debian
# 10, Ubuntu 18.04) keeps the /bin and /sbin ones there (`--distro debian-split-usr`).
PATHS = {
    "cat": "/usr/bin/cat", "crontab": "/usr/bin/crontab", "docker": "/usr/bin/docker",
    "fail2ban-client": "/usr/bin/fail2ban-client", "find": "/usr/bin/find", "flock": "/usr/bin/flock",
    "grep": "/usr/bin/grep", "gunzip": "/usr/bin/gunzip", "gzip": "/usr/bin/gzip",
    "iptables-save": "/usr/sbin/iptables-save",
    "journalctl": "/usr/bin/journalctl", "logrotate": "/usr/sbin/logrotate", "nginx": "/usr/sbin/nginx",
    "openssl": "/usr/bin/openssl", "pkill": "/usr/bin/pkill", "promtool": "/usr/bin/promtool",
    "runuser": "/usr/sbin/runuser", "service": "/usr/sbin/service", "sshd": "/usr/sbin/sshd", "stat": "/usr/bin/stat",
    "systemctl": "/usr/bin/systemctl", "tail": "/usr/bin/tail", "tar": "/usr/bin/tar", "test": "/usr/bin/test",
    "true": "/usr/bin/true", "ufw": "/usr/sbin/ufw",
}
DISTROS = {
    "debian": {},
    "debian-split-usr": {"cat": "/bin/cat", "grep": "/bin/grep", "gunzip": "/bin/gunzip", "gzip": "/bin/gzip",
                         "iptables-save": "/sbin/iptables-save", "journalctl": "/bin/journalctl",
                         "runuser": "/sbin/runuser", "systemctl": "/bin/systemctl", "tar": "/bin/tar",
                         "true": "/bin/true", "pkill": "/usr/bin/pkill"},
    "rhel": {"promtool": "/usr/local/bin/promtool"},  # no package: Prometheus' release tarball
}


def program_path(name: str, distro: str = "debian", resolved: dict[str, str] | None = None) -> str:
    if name.startswith("/"):
        return name
    if resolved and resolved.get(name):
        return resolved[name]
    return DISTROS[distro].get(name) or PATHS[name]
