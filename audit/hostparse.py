"""Parsers for host command outputs shared by the host-level check modules (network, hardening,
backups, checklist): ufw, iptables-save, fail2ban-client, apt, crontab, df, meminfo.

Pure functions over captured text, so that tests/unit can prove them in both directions.
"""

from __future__ import annotations

import configparser
import ipaddress
import re
from dataclasses import dataclass

# The inventory roles of the deployment's servers ("every host" in the guide): the `docker` role
# names the engine that runs the app containers, audited by the prerequisites only.
SERVER_ROLES = ("web", "app", "monitoring", "db_primary", "db_replica", "redis", "redis_cluster",
                "backup_db", "backup_app")

# ---------------------------------------------------------------- ufw


@dataclass(frozen=True)
class UfwRule:
    to: str          # "22/tcp", "5432/tcp", "Anywhere", "80,443/tcp"
    action: str      # "ALLOW IN", "DENY IN", "LIMIT IN", ...
    source: str      # "Anywhere", "172.28.77.0/25"

    @property
    def allows(self) -> bool:
        return self.action.upper().startswith(("ALLOW", "LIMIT"))

    @property
    def from_anywhere(self) -> bool:
        return self.source.lower().startswith("anywhere")


@dataclass(frozen=True)
class UfwStatus:
    active: bool
    defaults: dict[str, str]  # incoming/outgoing/routed -> deny|allow|reject|disabled
    rules: tuple[UfwRule, ...]

    def allowed(self, port: int, proto: str = "tcp") -> list[UfwRule]:
        """Allow rules that open `port`/`proto` (ports lists and ranges included)."""
        return [r for r in self.rules if r.allows and port_matches(r.to, port, proto)]


def port_matches(to: str, port: int, proto: str = "tcp") -> bool:
    """Does a ufw 'To' field ("22/tcp", "80,443/tcp", "6000:6007/tcp", "22", "Anywhere") cover port?"""
    to = to.split(" (v6)")[0].strip()
    if to.lower().startswith("anywhere"):
        return True
    spec, _, rproto = to.partition("/")
    if rproto and rproto != proto:
        return False
    if " " in spec:  # "172.28.77.11 22" (to an address)
        spec = spec.split()[-1]
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if lo.isdigit() and int(lo) <= port <= int(hi or lo):
            return True
    return False


def rule_ports(to: str, limit: int = 4096) -> set[int] | None:
    """The ports a ufw 'To' field opens; None for "Anywhere" or a range too wide to list."""
    to = to.split(" (v6)")[0].strip()
    if to.lower().startswith("anywhere"):
        return None
    spec = to.partition("/")[0].split()[-1]
    ports: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return None
        if int(hi or lo) - int(lo) > limit:
            return None
        ports |= set(range(int(lo), int(hi or lo) + 1))
    return ports


def parse_ufw_status(text: str) -> UfwStatus:
    """`ufw status verbose` -> UfwStatus (IPv6 rules ignored: the guide's rules are IPv4)."""
    active = bool(re.search(r"^Status:\s*active\b", text, re.M))
    defaults: dict[str, str] = {}
    m = re.search(r"^Default:\s*(.+)$", text, re.M)
    if m:
        for item in m.group(1).split(","):
            pm = re.match(r"\s*(\w+)\s*\((\w+)\)", item)
            if pm:
                defaults[pm.group(2)] = pm.group(1)
    rules = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"^--\s+--", line):
            in_table = True
            continue
        if not in_table or not line.strip():
            continue
        cols = re.split(r"\s{2,}", line.strip())
        if len(cols) < 3 or "(v6)" in line:
            continue
        rules.append(UfwRule(to=cols[0], action=cols[1], source=cols[2]))
    return UfwStatus(active=active, defaults=defaults, rules=tuple(rules))


def source_is_internal(source: str, network: str) -> bool:
    """A ufw 'From' that lies inside the deployment network."""
    try:
        return ipaddress.ip_network(source.split()[0], strict=False).subnet_of(ipaddress.ip_network(network))
    except ValueError:
        return False


# ---------------------------------------------------------------- iptables


def iptables_input_rules(save_text: str) -> tuple[str, list[str]]:
    """`iptables-save` -> (INPUT policy, the INPUT chain's -A lines, normalised)."""
    policy, rules, table = "", [], ""
    for line in save_text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif table == "filter" and line.startswith(":INPUT "):
            policy = line.split()[1]
        elif table == "filter" and line.startswith("-A INPUT "):
            rules.append(normalise_iptables_rule(line))
    return policy, rules


def normalise_iptables_rule(rule: str) -> str:
    """Make iptables-save's spelling comparable to the guide's: -m tcp dropped, state==conntrack."""
    rule = re.sub(r"\s+-m tcp\b", "", rule)
    rule = rule.replace("-m state --state", "-m conntrack --ctstate")
    rule = re.sub(r"--ctstate (\S+)", lambda m: "--ctstate " + ",".join(sorted(m.group(1).split(","))), rule)
    return " ".join(rule.split())


def iptables_missing_rules(save_text: str, expected_rules: list[str]) -> list[str]:
    """The guide's INPUT rules that the running rule set lacks (order kept; final DROP or policy DROP
    both satisfy "-A INPUT -j DROP")."""
    policy, rules = iptables_input_rules(save_text)
    missing = []
    for want in expected_rules:
        norm = normalise_iptables_rule(want)
        if norm in rules:
            continue
        if norm == "-A INPUT -j DROP" and policy == "DROP":
            continue
        missing.append(want)
    if rules and "-A INPUT -j DROP" in [normalise_iptables_rule(r) for r in expected_rules] and policy != "DROP":
        drop = "-A INPUT -j DROP"
        if drop in rules and rules[-1] != drop:
            missing.append("-A INPUT -j DROP (must be the last rule)")
    return missing


# ---------------------------------------------------------------- fail2ban


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


def ini_sections(text: str) -> dict[str, dict[str, str]]:
    """jail.local-style INI -> {section: {key: value}} (no interpolation, DEFAULT kept apart)."""
    parser = configparser.RawConfigParser(strict=False, default_section="__none__")
    parser.read_string(text)
    return {s: dict(parser.items(s)) for s in parser.sections()}


# ---------------------------------------------------------------- apt


@dataclass(frozen=True)
class PendingUpgrade:
    package: str
    installed: str
    candidate: str
    origin: str     # e.g. "Debian-Security:12/stable-security [amd64]"

    @property
    def security(self) -> bool:
        return "security" in self.origin.lower()


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


# ---------------------------------------------------------------- crontab


def crontab_entries(text: str) -> list[tuple[str, str]]:
    """crontab text -> [(schedule, command)] (comments, blanks and VAR=value lines dropped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or re.match(r"^[A-Za-z_]\w*\s*=", line):
            continue
        if line.startswith("@"):
            macro, _, cmd = line.partition(" ")
            out.append((macro, cmd.strip()))
            continue
        fields = line.split(None, 5)
        if len(fields) == 6:
            out.append((" ".join(fields[:5]), fields[5]))
    return out


# ---------------------------------------------------------------- usage


def df_usage(text: str) -> dict[str, int]:
    """`df -P -x tmpfs -x devtmpfs ...` -> {mountpoint: used percent}."""
    out = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[4].endswith("%") and fields[4][:-1].isdigit():
            out[" ".join(fields[5:])] = int(fields[4][:-1])
    return out


def memory_used_percent(meminfo: str) -> float:
    """/proc/meminfo -> used percent (MemTotal - MemAvailable) / MemTotal."""
    vals = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", meminfo, re.M)}
    total, avail = vals.get("MemTotal", 0), vals.get("MemAvailable")
    if not total or avail is None:
        raise ValueError("MemTotal/MemAvailable missing from /proc/meminfo")
    return 100.0 * (total - avail) / total


def script_commands(text: str) -> list[str]:
    """A shell script's command lines: comments and blank lines dropped, backslash continuations
    joined, runs of whitespace collapsed (shared by every check that reads a script)."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        out.append(" ".join((pending + line).split()))
        pending = ""
    return out
