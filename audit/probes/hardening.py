"""Security Hardening (guide: System Security, Application Security): the packages (fail2ban,
AIDE, rkhunter, unattended-upgrades), fail2ban as the daemon runs it (`fail2ban-client get` of
every active jail) and as its files set it (jail.d/*.conf, jail.local, jail.d/*.local, in the order
fail2ban reads them: what the next reload applies), AIDE's database, the pending upgrades (the
host's own package index, read only) and the dry run of unattended-upgrade, the ownership and modes of /opt/pynomaly and
.env.production, and the modes of the PostgreSQL files the server uses. ONE round trip per host.

Read-only: `apt-get -s` takes no lock and builds its cache in memory; the dry run of
unattended-upgrade also gets an in-memory cache (an apt configuration on tmpfs, removed after)
and runs under `flock /etc/apt` (two dry runs at once on one host remove each other's pid file).
"""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import dataclass, field

from audit import guide
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit
from audit.probes.network import file_command, file_text, split_rc, with_rc
from audit.sudo import grouped

PACKAGES = ("fail2ban", "aide", "rkhunter", "unattended-upgrades")
JAIL_KEYS = ("bantime", "findtime", "maxretry", "logpath")
DEFAULT_KEYS = ("bantime", "findtime", "maxretry")
JAIL_DIR = "/etc/fail2ban"
# every active jail's values as fail2ban's interactive client prints them, the questions first. As
# root, ONE interactive client answers them all (a Python start each costs ~0.1 s of the host's CPU:
# 8 gets were 1.1 s per host); through sudo, one `fail2ban-client get` each, since the interactive
# client takes any command on its input and is not granted
_ASKED = "for jail in $jails; do for jail_key in " + " ".join(JAIL_KEYS) + "; do echo \"%s\"; done; done"
F2B_VALUES = ("jails=$($SUDO fail2ban-client status 2>/dev/null | sed -n 's/.*Jail list:[[:space:]]*//p' "
              "| tr -d ' ' | tr ',' ' '); [ -n \"$jails\" ] || exit 0; " + _ASKED % "asked get $jail $jail_key"
              + "; if [ -z \"$SUDO\" ]; then { " + _ASKED % "get $jail $jail_key" + "; } | fail2ban-client -i 2>&1; "
              "else for jail in $jails; do for jail_key in " + " ".join(JAIL_KEYS) + "; do printf 'fail2ban> '; "
              "$SUDO fail2ban-client get \"$jail\" \"$jail_key\" 2>&1; done; done; fi")
# jail.d/*.conf, jail.local, jail.d/*.local in fail2ban's order: one fixed grep as root, each file's
# lines grouped back as the audit account
F2B_FILES = (f"$SUDO grep -r -H -a -e ^ {JAIL_DIR}/jail.d {guide.FAIL2BAN_JAIL} 2>/dev/null | " + grouped(
    [(rf"^{JAIL_DIR}/jail\.d/[^./][^/]*\.conf$", 0), (rf"^{JAIL_DIR}/jail\.local$", 1),
     (rf"^{JAIL_DIR}/jail\.d/[^./][^/]*\.local$", 2)], '"### file " f'))
PG_FILES = {"pg_conf_mode": "SEC-PG-CONF-MODE", "pg_hba_mode": "SEC-PG-HBA-MODE"}  # value rows: key -> requirement


# ---------------------------------------------------------------- parsing (unit-tested)

def installed_packages(text: str) -> dict[str, str]:
    """`dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\\n'` (or rpm's same format)
    -> {package: version} of the installed ones."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "installed":
            out[parts[0]] = parts[2]
    return out


def fail2ban_jails(status_text: str) -> list[str]:
    """`fail2ban-client status` -> active jail names."""
    m = re.search(r"Jail list:\s*(.*)$", status_text, re.M)
    return [j.strip() for j in m.group(1).split(",") if j.strip()] if m else []


def fail2ban_values(text: str) -> dict[str, dict[str, str]]:
    """Lines "JAIL KEY value..." (from `fail2ban-client get JAIL KEY`) -> {jail: {key: value}}.

    logpath prints "Current monitored log file(s): `- /path": the paths are kept."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        jail, key, value = parts[0], parts[1], (parts[2] if len(parts) > 2 else "")
        if key == "logpath":
            value = " ".join(re.findall(r"(/\S+)", value))
        out.setdefault(jail, {})[key] = value.strip()
    return out


def fail2ban_answers(text: str, asked: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """`fail2ban-client -i` fed "get JAIL KEY" lines (in `asked` order) -> {jail: {key: value}}.

    Each answer follows a "fail2ban> " prompt; the banner comes before the first one."""
    answers = text.split("fail2ban> ")[1:len(asked) + 1]  # after the last one: the EOF complaint
    lines = [f"{j} {k} {' '.join(a.split())}" for (j, k), a in zip(asked, answers, strict=False)]
    return fail2ban_values("\n".join(lines))


def asked_answers(text: str) -> dict[str, dict[str, str]]:
    """F2B_VALUES' output: "asked get JAIL KEY" lines, then the interactive client's answers."""
    asked = [tuple(line.split()[2:4]) for line in text.splitlines() if line.startswith("asked get ")]
    rest = "\n".join(line for line in text.splitlines() if not line.startswith("asked "))
    return fail2ban_answers(rest, [a for a in asked if len(a) == 2])


def jail_files(text: str) -> list[tuple[str, str]]:
    """F2B_FILES' output -> [(path, text)] in the order fail2ban reads them."""
    parts = re.split(r"^### file (\S+)\n", text, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def merged_sections(files: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """The sections of several jail files, a later file's key winning (fail2ban's order)."""
    out: dict[str, dict[str, str]] = {}
    for _, text in files:
        try:
            sections = ini_sections(text)
        except configparser.Error:
            continue
        for name, items in sections.items():
            out.setdefault(name, {}).update(items)
    return out


def seconds_of(value: str | None) -> str | None:
    """A fail2ban time ("3600", "10m", "1h") in seconds, as `fail2ban-client get` prints it."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(-?\d+)\s*(s|m|h|d|w)?\s*", str(value))
    if not m:
        return str(value).strip()
    return str(int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2) or "s"])


def ini_sections(text: str) -> dict[str, dict[str, str]]:
    """jail.local-style INI -> {section: {key: value}} (no interpolation, DEFAULT kept apart)."""
    parser = configparser.RawConfigParser(strict=False, default_section="__none__")
    parser.read_string(text)
    return {s: dict(parser.items(s)) for s in parser.sections()}


@dataclass(frozen=True)
class PendingUpgrade:
    package: str
    installed: str
    candidate: str
    origin: str     # e.g. "Debian-Security:12/stable-security [amd64]"

    @property
    def security(self) -> bool:
        return "security" in self.origin.lower()

    def __str__(self) -> str:
        return f"{self.package} {self.installed} -> {self.candidate} ({self.origin})"


def apt_pending(simulate_text: str) -> list[PendingUpgrade]:
    """`apt-get -s dist-upgrade` -> the packages it would upgrade ("Inst" lines with a version)."""
    out = []
    for line in simulate_text.splitlines():
        m = re.match(r"^Inst (\S+) \[([^\]]+)\] \((\S+) (.*)\)\s*$", line)
        if m:
            out.append(PendingUpgrade(m.group(1), m.group(2), m.group(3), m.group(4)))
    return out


def apt_index_files(listing: str) -> list[str]:
    """`ls /var/lib/apt/lists` -> the package index files (Packages, compressed or not)."""
    return [f for f in listing.split() if re.search(r"_Packages(\.\w+)?$", f)]


@dataclass(frozen=True)
class FileStat:
    path: str
    owner: str       # user:group
    mode: str        # octal, e.g. "600"


def stat_lines(text: str) -> dict[str, FileStat]:
    """`stat -c '%a %U:%G %n'` lines -> {path: FileStat}."""
    out = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].isdigit() and ":" in parts[1]:
            out[parts[2]] = FileStat(parts[2], parts[1], parts[0])
    return out


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class HardeningFacts:
    """One host's system and application security."""

    host: str
    env_file: str                                # .env.production's path (SEC-ENV-FILE-MODE)
    packages: dict[str, str]                     # installed package -> version
    fail2ban_ping: str                           # `fail2ban-client ping`'s answer
    jails: tuple[str, ...]                       # active jails (fail2ban-client status)
    jail_values: dict[str, dict[str, str]]       # the daemon's values (fail2ban-client get JAIL KEY)
    jail_local: dict[str, dict[str, str]] | None  # jail.local's sections; None when it is missing
    aide_db: dict[str, int]                      # AIDE database path -> bytes (absent when missing)
    dry_run: str                                 # `unattended-upgrade --dry-run`: "rc=N"
    index_files: tuple[str, ...]                 # the host's apt package index
    simulate: str                                # `apt-get -s dist-upgrade`: Inst/E:/W: lines
    simulate_rc: int | None
    files: dict[str, FileStat] = field(default_factory=dict)   # app dir, env file, PostgreSQL files in use
    not_owned: tuple[str, ...] = ()              # under the app dir, not owned by the guide's owner (first 20)
    open_to_others: tuple[str, ...] = ()         # under the app dir, granting others anything (first 20)
    pg_files: dict[str, str] = field(default_factory=dict)  # "postgresql.conf"/"pg_hba.conf" -> path in use
    jail_file_texts: tuple[tuple[str, str], ...] = ()  # (path, text) of the jail files, in fail2ban's order

    def _on_disk(self, jail: str, key: str) -> str | None:
        """A jail's key as its files set it: its own section, else [DEFAULT] (jail.conf aside)."""
        value = self.jail_sections.get(jail, {}).get(key, self.jail_sections.get("DEFAULT", {}).get(key))
        return seconds_of(value) if key in ("bantime", "findtime") else value

    def jail_sides(self, name: str) -> dict[str, Reading]:
        """A jail as the daemon runs it (active, its times, retries and log: fail2ban-client) and as
        its files declare it (the same keys, and the port and filter the daemon does not tell)."""
        live = self.jail_values.get(name, {})
        running = {"enabled": str(name in self.jails).lower(), **{k: live.get(k) for k in JAIL_KEYS}}
        on_disk = {k: self._on_disk(name, k) for k in ("enabled", "port", "filter", *JAIL_KEYS)}
        files = ", ".join(path for path, _ in self.jail_file_texts) or f"{guide.FAIL2BAN_JAIL} (missing)"
        return {RUNNING: Reading(running, running, "fail2ban-client status / get"),
                ON_DISK: Reading(on_disk, on_disk, files)}

    def default_sides(self) -> dict[str, Reading]:
        """[DEFAULT] bantime/findtime/maxretry: as the files set them, and as the daemon runs them
        in each active jail whose own section does not set the key (it inherits the default)."""
        inherited = {j: {k: self.jail_values.get(j, {}).get(k) for k in DEFAULT_KEYS
                         if k not in self.jail_sections.get(j, {})} for j in self.jails}
        values: dict[str, set] = {}
        for items in inherited.values():
            for k, v in items.items():
                values.setdefault(k, set()).add(v)
        running = {k: (next(iter(v)) if len(v) == 1 else sorted(map(str, v))) for k, v in values.items()}
        default = self.jail_sections.get("DEFAULT", {})
        on_disk = {k: seconds_of(default.get(k)) if k != "maxretry" else default.get(k) for k in DEFAULT_KEYS}
        files = ", ".join(path for path, _ in self.jail_file_texts) or f"{guide.FAIL2BAN_JAIL} (missing)"
        out = {ON_DISK: Reading(on_disk, on_disk, f"[DEFAULT] of {files}")}
        if running:
            out = {RUNNING: Reading({j: v for j, v in inherited.items() if v}, running,
                                    "fail2ban-client get, in the jails that inherit the default"), **out}
        return out

    @property
    def jail_sections(self) -> dict[str, dict[str, str]]:
        return merged_sections(list(self.jail_file_texts))

    def tree(self, path: str, attribute: str) -> dict[str, str]:
        """`path`'s owner or mode ("missing" when it is not there), and every path under it that
        differs: not owned by the guide's owner, or granting others any permission."""
        top = self.files.get(path)
        flagged = {"owner": (self.not_owned, "another owner"), "mode": (self.open_to_others, "open to others")}
        paths, why = flagged[attribute]
        return {path: getattr(top, attribute) if top else "missing", **{p: why for p in paths}}

    def pending(self) -> list[PendingUpgrade]:
        """Upgrades the host's own package index offers; CouldNotAudit without an index (apt
        update has never run) or when the simulation fails."""
        if not self.index_files:
            raise CouldNotAudit(self.host, "apt package index", "no index in /var/lib/apt/lists: cannot tell "
                                                                "which upgrades are pending (apt update never ran)")
        if self.simulate_rc != 0:
            raise CouldNotAudit(self.host, "apt-get -s dist-upgrade", f"it failed: {self.simulate[-300:]}")
        return apt_pending(self.simulate)

    def sides(self, key: str) -> dict[str, Reading]:
        """Value rows: the mode of .env.production (env_file_mode) or of the PostgreSQL file in use
        (pg_conf_mode, pg_hba_mode), as the file has it."""
        if key == "env_file_mode":
            path = self.env_file
        else:
            name = {"pg_conf_mode": "postgresql.conf", "pg_hba_mode": "pg_hba.conf"}[key]
            if name not in self.pg_files:
                raise CouldNotAudit(self.host, "PostgreSQL", f"it did not say which {name} it uses "
                                                             "(SHOW config_file / hba_file as postgres)")
            path = self.pg_files[name]
        stat = self.files.get(path)
        return {"file": Reading(f"{stat.mode} ({stat.owner})" if stat else "missing", stat and stat.mode, path)}

    def norm(self, key: str, expected) -> str:
        return str(expected["mode"])


def commands(roles, owner: str, aide_db: str, env_file: str) -> dict[str, str]:
    """What this area reads from a host (by its roles)."""
    app_user, app_group = owner.split(":")
    cmds = {
        "packages": "if command -v dpkg-query >/dev/null; then dpkg-query -W -f='${Package} ${db:Status-Status} "
                    "${Version}\\n' " + " ".join(PACKAGES) + "; else rpm -q --qf '%{NAME} installed %{VERSION}\\n' "
                    + " ".join(PACKAGES) + "; fi",
        "f2b_ping": "$SUDO fail2ban-client ping 2>&1",
        "f2b_status": "$SUDO fail2ban-client status 2>&1",
        "f2b_values": F2B_VALUES,  # one client for every value of every active jail
        "jail_local": file_command(guide.FAIL2BAN_JAIL),
        "jail_files": F2B_FILES,
        "aide_db": f"$SUDO stat -c '%n %s' {shlex.quote(aide_db)}",
        # python-apt would write /var/cache/apt/*pkgcache.bin on a host without them: an apt
        # configuration (on tmpfs, removed after) keeps the package cache in memory. Through sudo
        # the environment is reset and root's own configuration applies (an account that chose
        # root's APT configuration could make APT run anything): a stale cache is rebuilt, as the
        # guide's own `sudo unattended-upgrade --dry-run` does. Two dry runs at once on one host
        # remove each other's pid file and fail: flock on /etc/apt (an advisory lock; nothing
        # written) runs them one after the other
        "unattended": "f=$(mktemp -p /dev/shm 2>/dev/null || mktemp); "
                      "printf 'Dir::Cache::pkgcache \"\";\\nDir::Cache::srcpkgcache \"\";\\n' > $f; "
                      "APT_CONFIG=$f $SUDO flock -w 120 /etc/apt unattended-upgrade --dry-run >/dev/null 2>&1; "
                      "echo rc=$?; rm -f $f",
        "apt_lists": "ls /var/lib/apt/lists",
        # no lock, and the package cache built in memory: apt would otherwise rewrite pkgcache.bin
        "apt_simulate": with_rc("out=$(apt-get -s -o Debug::NoLocking=1 -o Dir::Cache::pkgcache= "
                                "-o Dir::Cache::srcpkgcache= dist-upgrade 2>&1); rc=$?; "
                                "printf '%s\\n' \"$out\" | grep -E '^(Inst|E:|W:)'; (exit $rc)"),
    }
    if "app" in roles:
        cmds |= {
            "app_stat": f"$SUDO stat -c '%a %U:%G %n' {guide.APP_DIR} {shlex.quote(env_file)} 2>&1",
            "app_wrong_owner": f"$SUDO find {guide.APP_DIR} \\( ! -user {app_user} -o ! -group {app_group} \\) "
                               "| head -20",
            "app_others": f"$SUDO find {guide.APP_DIR} -perm /o=rwx | head -20",
        }
    if {"db_primary", "db_replica"} & set(roles):
        cmds["pg_files"] = ("$SUDO runuser -u postgres -- psql -qtAX -c 'SHOW config_file' -c 'SHOW hba_file' "
                            "| { read -r pg_config_file; read -r pg_hba_file; [ -n \"$pg_hba_file\" ] && "
                            "$SUDO stat -c '%a %U:%G %n' \"$pg_config_file\" \"$pg_hba_file\"; }")
    return cmds


@probe()
def hardening(session, host) -> HardeningFacts:
    """fail2ban, AIDE, rkhunter, upgrades, and the modes of the guide's files (one round trip)."""
    want = session.expected("SEC-APP-DIR-OWNER")
    aide_db = session.expected("SEC-AIDE-DB-INITIALISED")["database"]
    env_file = session.expected("SEC-ENV-FILE-MODE")["path"]
    out = session.access.collect(host, commands(host.roles, f"{want['owner']}:{want['group']}", aide_db, env_file))
    jail_local = file_text(host.name, guide.FAIL2BAN_JAIL, out["jail_local"])
    if "app" in host.roles and not stat_lines(out["app_stat"]) and "No such file" not in out["app_stat"]:
        raise CouldNotAudit(host.name, guide.APP_DIR, f"stat said: {out['app_stat'][:200] or 'nothing'}")
    aide = out["aide_db"].split()
    simulate, rc = split_rc(out["apt_simulate"])
    pg_files = stat_lines(out.get("pg_files", ""))
    return HardeningFacts(
        host=host.name, env_file=env_file, packages=installed_packages(out["packages"]), fail2ban_ping=out["f2b_ping"],
        jails=tuple(fail2ban_jails(out["f2b_status"])), jail_values=asked_answers(out["f2b_values"]),
        jail_local=ini_sections(jail_local) if jail_local is not None else None,
        aide_db={aide[0]: int(aide[1])} if len(aide) == 2 and aide[1].isdigit() else {},
        dry_run=out["unattended"].strip(), index_files=tuple(apt_index_files(out["apt_lists"])),
        simulate=simulate, simulate_rc=rc, files={**stat_lines(out.get("app_stat", "")), **pg_files},
        not_owned=tuple(out.get("app_wrong_owner", "").splitlines()),
        open_to_others=tuple(out.get("app_others", "").splitlines()),
        pg_files={p.rsplit("/", 1)[-1]: p for p in pg_files},
        jail_file_texts=tuple(jail_files(out["jail_files"])))
