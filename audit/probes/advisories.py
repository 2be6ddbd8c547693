"""Advisories beyond the guide (checks/advisories.yml): what the checks of checks/advisories.py
judge, read from the live deployment.

- `gixy` (per web host): gixy-ng on the configuration the running NGINX uses: the `nginx -T`
  dump the `nginx` probe read, written to a temporary folder on the runner and analysed by
  gixy-ng in a process of its own (gixy keeps global state); its findings with the file and
  line of the dump they point at.
- sslyze's vulnerability scans (Heartbleed, ROBOT, compression, renegotiation, CCS injection,
  fallback SCSV, TLS 1.3 early data, Extended Master Secret) are `tls_scan.info`: the one scan of
  the public endpoint runs them with the guide's (a second scan cost 0.5 s of the runner's CPU).
- `health_checks` (per app host): the health-check curl of the daily maintenance script and of
  the deployment repository's deploy.sh, run once on the host with the script's own URL and
  redirect options (-f left out, the status written out): what that curl really gets.
- `slow_query_report` (per primary): the columns pg_stat_statements has on this server, and the
  lines of the deployment's scripts (primary and app hosts) that read it.
- `db_pools` (the deployment): the app's pools (instances, Gunicorn workers, pool sizes from
  the instances' own config dumps) and the primary's connection slots, reserve, the app role's
  CONNECTION LIMIT and the other roles' connections.
- `sshd` (per host): `sshd -T`. `pg_hba` (per database host): the hba_file the server uses.
- `redis_commands` (per Redis host): ACL DRYRUN of the dangerous commands for the default user
  (the app's login), on every Redis port of the host.
- `docker_engine` (per Docker host): the engine socket's mode, dockerd's command lines (running)
  and daemon.json (on disk).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit import guide
from audit.access import RedisAnswer
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit
from audit.probes.shell import script_commands, words

# ---------------------------------------------------------------- gixy-ng

GIXY_SECONDS = 120
SEVERITIES = ("UNSPECIFIED", "LOW", "MEDIUM", "HIGH")


def dump_text(files: dict[str, str]) -> str:
    """An `nginx -T` dump again, from the files the `nginx` probe split it into (same lines)."""
    return "".join(f"# configuration file {path}:{body if body.startswith(chr(10)) else chr(10) + body}"
                   for path, body in files.items())


def dump_location(dump: str, line: int | None) -> str:
    """`path:line` of the file a line of the dump belongs to."""
    if not line:
        return "?"
    path, start = "?", 0
    for number, text in enumerate(dump.splitlines()[:line], start=1):
        match = re.match(r"^# configuration file (.+?):\s*$", text)
        if match:
            path, start = match.group(1), number
    return f"{path}:{line - start}"


@dataclass(frozen=True)
class GixyFinding:
    plugin: str
    severity: str
    summary: str
    reason: str
    where: str                          # file:line in the configuration
    block: str                          # the configuration gixy quotes

    def shown(self) -> str:
        return f"{self.where} [{self.severity}] {self.plugin}: {self.reason or self.summary}"


def gixy_findings(report: list[dict], dump: str) -> tuple[GixyFinding, ...]:
    """gixy-ng's JSON report -> findings (dump lines mapped to the configuration files)."""
    return tuple(GixyFinding(str(r.get("plugin")), str(r.get("severity") or "UNSPECIFIED"),
                             str(r.get("summary") or ""), " ".join(str(r.get("reason") or "").split()),
                             dump_location(dump, r.get("line")), str(r.get("config") or "").strip())
                 for r in report)


def run_gixy(dump: str) -> list[dict]:
    """gixy-ng (this Python's) on the dump, in a process of its own; its JSON report."""
    with tempfile.TemporaryDirectory(prefix="gixy-") as tmp:
        path = Path(tmp, "nginx-T.conf")
        path.write_text(dump)
        proc = subprocess.run([sys.executable, "-m", "gixy", "-f", "json", str(path)], capture_output=True,
                              text=True, timeout=GIXY_SECONDS, check=False, stdin=subprocess.DEVNULL)
    try:
        report = json.loads(proc.stdout or "null")
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, list):
        raise CouldNotAudit(None, "gixy-ng", f"no JSON report (exit {proc.returncode}): "
                                              f"{' '.join((proc.stderr or proc.stdout).split())[-300:]}")
    return report


@dataclass(frozen=True)
class GixyFacts:
    """gixy-ng's findings on one web host's running configuration."""

    findings: tuple[GixyFinding, ...]
    files: tuple[str, ...]              # the configuration files analysed

    def of(self, plugin: str) -> list[str]:
        return [f.shown() for f in self.findings if f.plugin == plugin]

    def others(self, skip: list[str], severities: list[str]) -> list[str]:
        return [f.shown() for f in self.findings if f.plugin not in skip and f.severity in severities]


@probe(needs=("nginx",))
def gixy(session, host) -> GixyFacts:
    """gixy-ng on the configuration the running NGINX uses (its nginx -T dump)."""
    nginx = session.facts.get("nginx", host.name)
    if not nginx.config.files:
        raise CouldNotAudit(host.name, "NGINX configuration", "nginx -T printed no configuration file")
    dump = dump_text(nginx.config.files)
    return GixyFacts(gixy_findings(run_gixy(dump), dump), tuple(nginx.config.files))


# ---------------------------------------------------------------- sslyze

def vulnerability_result(tls_scan, command: str) -> dict:
    """sslyze's result of one vulnerability scan; CouldNotAudit when the scan did not complete."""
    result = tls_scan.info.get(command)
    if not isinstance(result, dict):
        raise CouldNotAudit(None, f"the public endpoint {tls_scan.target}", f"sslyze {command}: {result or 'not run'}")
    return result


# ---------------------------------------------------------------- health checks (curl)

CURL_VALUE_OPTIONS = {"--resolve", "--connect-to", "--cacert", "--capath", "-H", "--header", "--max-redirs",
                      "--proto", "--proto-redir", "-u", "--user", "-A", "--user-agent", "--interface"}
CURL_FLAGS = {"-L", "--location", "-k", "--insecure", "-4", "-6", "--http1.1", "--http2", "-g", "--globoff"}
STATUS = "%{http_code} %{num_redirects} %{url_effective}"


def curl_segment(line: str) -> list[str]:
    """The words of the first `curl ...` command of a script line (up to ||, &&, ;, |)."""
    out: list[str] = []
    for word in words(line):
        if out and word in ("||", "&&", ";", "|", "&"):
            break
        if out or word == "curl":
            out.append(word)
    return out


def health_curl(lines: list[str]) -> str | None:
    """The first command line that runs curl on a /health URL."""
    return next((ln for ln in lines if curl_segment(ln) and any("/health" in w for w in curl_segment(ln))), None)


def safe_args(segment: list[str]) -> list[str]:
    """The URL and the options that decide where the request goes and whether redirects are
    followed (the flags of a combined short option, e.g. -fsSL, kept when they are -L or -k);
    nothing that writes, uploads or reads a file besides a CA."""
    out, words_ = [], iter(segment[1:])
    for word in words_:
        if word in CURL_VALUE_OPTIONS:
            value = next(words_, None)
            if value is not None:
                out += [word, value]
        elif word in CURL_FLAGS:
            out.append(word)
        elif re.fullmatch(r"-[a-zA-Z]+", word):
            out += [f"-{c}" for c in word[1:] if f"-{c}" in CURL_FLAGS]
        elif re.match(r"^https?://", word):
            out.append(word)
    return out


def status_command(args: list[str]) -> str:
    return (f"curl -sS -o /dev/null --max-time 10 -w {shlex.quote(STATUS)} "
            + " ".join(shlex.quote(a) for a in args) + " 2>&1")


def parse_status(text: str) -> dict:
    """`%{http_code} %{num_redirects} %{url_effective}` (curl's own error first when it failed)."""
    match = re.search(r"(\d{3}) (\d+) (\S+)\s*$", text.strip())
    if not match:
        return {"status": None, "redirects": None, "url": None, "curl": " ".join(text.split())[:200]}
    error = text[: match.start()].strip()
    return {"status": int(match.group(1)), "redirects": int(match.group(2)), "url": match.group(3),
            **({"curl": " ".join(error.split())[:200]} if error else {})}


@dataclass(frozen=True)
class HealthCheck:
    script: str
    line: str | None = None             # the script's health-check line (None: none found)
    ran: str | None = None              # what was run on the host
    answer: dict = field(default_factory=dict)
    problem: str | None = None          # why the script could not be read


@probe(needs=("maintenance",))
def health_checks(session, host) -> dict[str, HealthCheck]:
    """The daily script's and deploy.sh's health-check curl, run on this app host as written."""
    out: dict[str, HealthCheck] = {}
    daily = guide.MAINTENANCE_SCRIPTS["daily"]
    text = session.facts.get("maintenance", host.name).scripts.get("daily", "")
    out["daily"] = HealthCheck(daily, health_curl(script_commands(text))) if text else \
        HealthCheck(daily, problem="missing or unreadable")
    repo = session.inventory.setting("audit_deploy_repo")
    script = Path(repo or ".", "scripts", "deploy.sh")
    if not repo:
        out["deploy"] = HealthCheck(str(script), problem="the inventory names no deployment repository "
                                                         "(all.vars.audit_deploy_repo)")
    elif not script.is_file():
        out["deploy"] = HealthCheck(str(script), problem="missing")
    else:
        out["deploy"] = HealthCheck(str(script), health_curl(script_commands(script.read_text())))
    commands = {name: status_command(safe_args(curl_segment(hc.line))) for name, hc in out.items() if hc.line}
    answers = session.access.collect(host, commands) if commands else {}
    return {name: HealthCheck(hc.script, hc.line, commands.get(name), parse_status(answers[name]), hc.problem)
            if name in answers else hc for name, hc in out.items()}


# ---------------------------------------------------------------- the daily disk alert

SAMPLE = "/dev/sda1  100G  {used}G  {free}G  {p}% /"


def disk_alert_fires(lines: list[str], percents: list[int]) -> dict[int, bool] | None:
    """Whether the daily script's disk alert fires at each usage: its `grep [-E] PATTERN` run on
    a df line of that usage, or its `-ge N` comparison; None when there is no such line."""
    for line in lines:
        if not re.search(r"\bdf\b", line) or "ALERT" not in line:
            continue
        parts = words(line)
        if "grep" in parts:
            args = [w for w in parts[parts.index("grep") + 1:] if w not in ("&&", "||", "|", ";")]
            extended = any(w.startswith("-") and ("E" in w or "P" in w) for w in args)
            pattern = next((w for w in args if not w.startswith("-")), None)
            if pattern is None:
                return None
            if not extended:  # basic regular expressions: \| \( \) are the operators
                pattern = pattern.replace(r"\|", "|").replace(r"\(", "(").replace(r"\)", ")")
            try:
                rx = re.compile(pattern)
            except re.error:
                return None
            return {p: bool(rx.search(SAMPLE.format(used=p, free=100 - p, p=p))) for p in percents}
        match = re.search(r"(?:-ge|>=)\s*(\d{1,3})\b", line)
        if match:
            return {p: p >= int(match.group(1)) for p in percents}
    return None


# ---------------------------------------------------------------- pg_stat_statements (troubleshooting)

COLUMNS_SQL = ("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('pg_stat_statements') "
               "AND attnum > 0 AND NOT attisdropped")
SCRIPT_USES = f"$SUDO grep -r -H -n pg_stat_statements {guide.SCRIPTS_DIR} 2>/dev/null; true"


def script_uses(text: str, host: str) -> dict[str, str]:
    """`grep -Hn` lines -> {host:path:line: text}."""
    out = {}
    for line in text.splitlines():
        path, _, rest = line.partition(":")
        number, _, body = rest.partition(":")
        if number.isdigit() and not body.lstrip().startswith("#"):  # comments run nothing
            out[f"{host}:{path}:{number}"] = " ".join(body.split())
    return out


def stale_columns(text: str, columns: set[str], renamed: dict[str, str]) -> list[str]:
    """Old pg_stat_statements column names a line uses that this server does not have."""
    return sorted({w for w in re.findall(r"[a-z_]+", text) if w in renamed and w not in columns})


@dataclass(frozen=True)
class SlowQueryFacts:
    version: str
    columns: frozenset[str]
    uses: dict[str, str]                # host:path:line -> the script line reading pg_stat_statements


@probe(needs=("pg_settings",))
def slow_query_report(session, host) -> SlowQueryFacts:
    """pg_stat_statements' columns (database postgres, where the guide's query runs) and the
    deployment's script lines that read it (this primary and the app hosts)."""
    version = session.facts.get("pg_settings", host.name).running.get("server_version")
    columns = {r["attname"] for r in session.access.query(host, COLUMNS_SQL, database="postgres")}
    uses: dict[str, str] = {}
    for other in {host.name: host, **{h.name: h for h in session.inventory.hosts_with_role("app")}}.values():
        uses |= script_uses(session.access.collect(other, {"uses": SCRIPT_USES})["uses"], other.name)
    return SlowQueryFacts(version.setting if version else "?", frozenset(columns), uses)


# ---------------------------------------------------------------- pools vs max_connections

POOL_SQL = f"""SELECT (SELECT rolconnlimit FROM pg_roles WHERE rolname = '{guide.APP_ROLE}') AS connlimit,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('client backend', 'walsender')
     AND usename IS DISTINCT FROM '{guide.APP_ROLE}' AND pid <> pg_backend_pid()) AS others,
  (SELECT count(*) FROM pg_stat_activity WHERE usename = '{guide.APP_ROLE}') AS app_now"""


@dataclass(frozen=True)
class PoolFacts:
    primary: str
    processes: dict[str, dict]          # Gunicorn master -> {workers, pool_size, max_overflow}
    max_connections: int
    reserved: int                       # superuser_reserved_connections (+ reserved_connections, 16+)
    connlimit: int | None               # pynomaly_user's CONNECTION LIMIT (-1: none; None: no role)
    others: int                         # other roles' connections now (clients and WAL senders)
    app_now: int

    @property
    def app_peak(self) -> int:
        return sum(p["workers"] * (p["pool_size"] + p["max_overflow"]) for p in self.processes.values())

    @property
    def app_steady(self) -> int:
        return sum(p["workers"] * p["pool_size"] for p in self.processes.values())

    @property
    def room(self) -> int:
        return self.max_connections - self.reserved - self.others

    @property
    def app_max(self) -> int:
        capped = self.connlimit is not None and self.connlimit >= 0
        return min(self.app_peak, self.connlimit) if capped else self.app_peak


def pool_processes(masters, instances: dict) -> dict[str, dict]:
    """Per Gunicorn master: its --workers (1 when unset) and the pool of its instance's config
    dump (the first dump's when its own is missing)."""
    any_config = next(iter(instances.values()), None)
    out = {}
    for m in masters:
        config = (instances.get(m.where) or any_config)
        db = (getattr(config, "config", None) or {}).get("database") or {}
        if "pool_size" not in db:
            raise CouldNotAudit(None, f"the app's config dump ({m.where})", "no database pool_size in it")
        out[m.where] = {"workers": int(m.command.value("--workers") or 1), "pool_size": int(db["pool_size"]),
                        "max_overflow": max(int(db.get("max_overflow") or 0), 0)}
    return out


@probe(per_host=False)
def db_pools(session) -> PoolFacts:
    """The app's pools (every app host) against the primary's connection slots."""
    primaries = session.inventory.hosts_with_role("db_primary")
    if not primaries:
        raise CouldNotAudit(None, f"inventory {session.inventory.name}", "no host in group db_primary")
    primary = primaries[0]
    processes: dict[str, dict] = {}
    for host in session.inventory.hosts_with_role("app"):
        masters = session.facts.get("app", host.name).masters()
        instances = session.facts.get("app_config", host.name).instances
        processes |= pool_processes(masters, instances)
    if not processes:
        raise CouldNotAudit(None, "the app", "no Gunicorn master found on the app hosts")
    settings = session.facts.get("pg_settings", primary.name).running
    row = session.access.query(primary, POOL_SQL)[0]
    reserved = sum(int(settings[k].setting) for k in ("superuser_reserved_connections", "reserved_connections")
                   if k in settings)
    return PoolFacts(primary.name, processes, int(settings["max_connections"].setting), reserved,
                     row["connlimit"], int(row["others"]), int(row["app_now"]))


# ---------------------------------------------------------------- SSH

def parse_sshd(text: str) -> dict[str, str]:
    """`sshd -T` -> {keyword: value} (lower-case keywords, first value of repeated ones)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value and re.fullmatch(r"[a-z0-9]+", key):
            out.setdefault(key, value.strip())
    return out


@probe()
def sshd(session, host) -> dict[str, str]:
    """sshd's effective configuration (`sshd -T`: its files as sshd reads them)."""
    text = session.access.collect(host, {"t": "$SUDO sshd -T 2>&1"})["t"]
    found = parse_sshd(text)
    if "permitrootlogin" not in found:
        raise CouldNotAudit(host.name, "sshd -T", " ".join(text.split())[:200] or "printed nothing (sudo?)")
    return found


# ---------------------------------------------------------------- PostgreSQL pg_hba.conf

LOOPBACK = ("127.0.0.1/32", "::1/128", "localhost", "127.0.0.0/8", "samehost")


def hba_rules(text: str) -> list[dict]:
    """pg_hba.conf -> rules {line, type, database, user, address, method} (comments dropped)."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields or fields[0].startswith("include"):
            continue
        kind = fields[0]
        if kind == "local" and len(fields) >= 4:
            out.append({"line": number, "type": kind, "database": fields[1], "user": fields[2], "address": "",
                        "method": fields[3]})
        elif kind.startswith("host") and len(fields) >= 5:
            address, rest = (fields[3], fields[4:])
            if re.fullmatch(r"[\d.]+", address) and len(rest) >= 2 and re.fullmatch(r"[\d.]+", rest[0]):
                address, rest = f"{address} {rest[0]}", rest[1:]
            out.append({"line": number, "type": kind, "database": fields[1], "user": fields[2], "address": address,
                        "method": rest[0]})
    return out


def hba_findings(rules: list[dict], refused: list[str]) -> list[str]:
    """Rules that let a login in over the network without TLS, or with a weak method."""
    bad = []
    for r in rules:
        rule = " ".join(f"line {r['line']}: {r['type']} {r['database']} {r['user']} {r['address']} {r['method']}"
                        .split())
        if r["method"] in refused:
            bad.append(f"{rule} (method {r['method']})")
        elif r["type"] in ("host", "hostnossl") and r["method"] != "reject" and r["address"] not in LOOPBACK:
            bad.append(f"{rule} (no TLS required)")
    return bad


@dataclass(frozen=True)
class HbaFacts:
    path: str
    rules: tuple[dict, ...]


@probe(needs=("pg_settings",))
def pg_hba(session, host) -> HbaFacts:
    """The pg_hba.conf the server uses (its hba_file), read as root."""
    setting = session.facts.get("pg_settings", host.name).running.get("hba_file")
    if setting is None:
        raise CouldNotAudit(host.name, "PostgreSQL hba_file", "pg_settings has no hba_file")
    path = pg_hba_file = setting.setting
    text = session.access.collect(host, {"hba": f"$SUDO cat {shlex.quote(pg_hba_file)}"})["hba"]
    if not text:
        raise CouldNotAudit(host.name, path, "printed nothing (missing, or the audit account cannot read it)")
    return HbaFacts(path, tuple(hba_rules(text)))


# ---------------------------------------------------------------- Redis dangerous commands

def redis_ports(host) -> list[int]:
    ports = [guide.REDIS_PORT] if "redis" in host.roles else []
    return ports + (list(host.settings.redis_cluster_ports) if "redis_cluster" in host.roles else [])


def command_allowed(answer: Any) -> bool | None:
    """ACL DRYRUN's answer: True (allowed), False (denied, or no such command: renamed away),
    None (DRYRUN itself is not available)."""
    if not isinstance(answer, RedisAnswer):
        return str(answer).upper() == "OK"
    text = answer.text.lower()
    if "unknown subcommand" in text or "unknown command 'acl'" in text:
        return None
    return False


@probe()
def redis_commands(session, host) -> dict[int, dict[str, Any]]:
    """ACL DRYRUN default <command> of each dangerous command, on each Redis port of the host."""
    out: dict[int, dict[str, Any]] = {}
    for port in redis_ports(host):
        answers = {}
        for command in session.expected("ADV-REDIS-DANGEROUS-COMMANDS"):
            answer = session.access.redis_call(host, port, "ACL", "DRYRUN", "default", *command)
            allowed = command_allowed(answer)
            if allowed is None:
                raise CouldNotAudit(host.name, f"Redis on port {port}", f"ACL DRYRUN is not available ({answer})")
            answers[" ".join(command)] = "allowed" if allowed else f"refused: {answer}"
        out[port] = answers
    return out


# ---------------------------------------------------------------- the Docker engine

def socket_path(url: str | None) -> str:
    return url[len("unix://"):] if url and url.startswith("unix://") else "/var/run/docker.sock"


def other_bits(mode: str) -> str:
    """'660' -> '---', '666' -> 'rw-' (the permissions of others)."""
    digit = int(mode[-1]) if mode and mode[-1].isdigit() else 7
    return "".join(c if digit & bit else "-" for c, bit in (("r", 4), ("w", 2), ("x", 1)))


def plain_tcp(hosts: list[str], tlsverify: bool) -> list[str]:
    return [] if tlsverify else [h for h in hosts if h.startswith("tcp://")]


def dockerd_hosts(cmdline: str) -> tuple[list[str], bool]:
    """(the -H/--host addresses, --tlsverify given) of one dockerd command line."""
    args, hosts = cmdline.split(), []
    for i, arg in enumerate(args):
        if arg in ("-H", "--host") and i + 1 < len(args):
            hosts.append(args[i + 1])
        elif arg.startswith(("--host=", "-H=")):
            hosts.append(arg.split("=", 1)[1])
        elif arg.startswith("-H") and len(arg) > 2:
            hosts.append(arg[2:])
    return hosts, any(a in ("--tlsverify", "--tlsverify=true") for a in args)


@dataclass(frozen=True)
class EngineFacts:
    socket: str
    socket_mode: str | None             # octal, None: no socket
    socket_owner: str
    dockerd: tuple[str, ...]            # command lines of the running dockerd processes
    daemon_json: dict | None            # None: no /etc/docker/daemon.json
    daemon_json_problem: str = ""

    def sides(self) -> dict[str, Reading]:
        running = [h for line in self.dockerd for h in plain_tcp(*dockerd_hosts(line))]
        out = {RUNNING: Reading(running or "none", running or "none",
                                "dockerd command lines: " + " | ".join(self.dockerd))}
        if self.daemon_json_problem:
            out[ON_DISK] = Reading(self.daemon_json_problem, ["unreadable"], "/etc/docker/daemon.json")
        elif self.daemon_json is not None:
            hosts = self.daemon_json.get("hosts") or []
            disk = plain_tcp([str(h) for h in hosts], bool(self.daemon_json.get("tlsverify")))
            out[ON_DISK] = Reading(disk or "none", disk or "none", "/etc/docker/daemon.json (next start of dockerd)")
        return out


@probe()
def docker_engine(session, host) -> EngineFacts:
    """The engine socket's mode, dockerd's command lines and /etc/docker/daemon.json."""
    docker_socket = socket_path(session.inventory.setting("audit_docker_url"))
    out = session.access.collect(host, {
        "socket": f"$SUDO stat -L -c '%a %U:%G' {shlex.quote(docker_socket)}",
        "dockerd": "for p in $(pgrep -x dockerd); do tr '\\0' ' ' < /proc/$p/cmdline; echo; done",
        "json": "if [ -e /etc/docker/daemon.json ]; then $SUDO cat /etc/docker/daemon.json; else echo '#none'; fi",
    })
    lines = [ln.strip() for ln in out["dockerd"].splitlines() if ln.strip()]
    if not lines:
        raise CouldNotAudit(host.name, "dockerd", "no dockerd process found")
    mode, _, owner = out["socket"].partition(" ")
    daemon, problem = None, ""
    if out["json"].strip() != "#none":
        try:
            daemon = json.loads(out["json"] or "{}")
        except json.JSONDecodeError as exc:
            problem = f"not JSON: {exc}"
    return EngineFacts(docker_socket, mode if re.fullmatch(r"[0-7]{3,4}", mode) else None, owner, tuple(lines),
                       daemon if isinstance(daemon, dict) else None, problem)
