"""Network (guide: Network Configuration > Firewall Rules; Security Hardening > Network Security).

- `firewall` (per host, ONE round trip): ufw as it runs (`ufw status`, and the kernel's rules in
  `iptables-save`: the ufw-user-input chain, the INPUT policy) and as its files set it for the
  next boot or reload (ufw.conf, /etc/default/ufw, user.rules); plain iptables and its saved
  rules.v4 (hosts of the inventory group `iptables`); the TCP sockets listening beyond loopback.
- `exposure` (the deployment, slow): the internal-only ports probed at the protocol level
  (PostgreSQL SSLRequest, Redis PING) from the runner (outside) and from a host inside the
  deployment network (bash /dev/tcp), and every other non-public listening port from the runner.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from audit import guide
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit

PROBE_TIMEOUT = 2.0     # seconds for a protocol probe of an internal-only port
PUBLIC_TIMEOUT = 1.0    # seconds for any answer on another listening port
MISSING, UNREADABLE = "<pynomaly-audit: missing>", "<pynomaly-audit: unreadable>"

# requirement -> (roles whose hosts run it, protocol of its probe); ports from the catalogue
INTERNAL_ONLY = {
    "NET-POSTGRES-INTERNAL-ONLY": (("db_primary", "db_replica"), "postgres"),
    "NET-REDIS-INTERNAL-ONLY": (("redis",), "redis"),
    "NET-REDIS-CLUSTER-INTERNAL-ONLY": (("redis_cluster",), "redis"),
}
# What the first bytes of a service's answer look like, per protocol.
PG_SSLREQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
PROBES: dict[str, tuple[bytes, tuple[bytes, ...]]] = {
    "postgres": (PG_SSLREQUEST, (b"S", b"N")),
    "redis": (b"PING\r\n", (b"+PONG", b"-NOAUTH", b"-ERR", b"-DENIED")),
    "any": (b"\r\n\r\n", (b"",)),  # any answer at all
}
ACTIONS = {"ACCEPT": "ALLOW IN", "ufw-user-limit-accept": "LIMIT IN", "DROP": "DENY IN", "REJECT": "REJECT IN"}
POLICY = {"DROP": "deny", "ACCEPT": "allow", "REJECT": "reject"}


# ---------------------------------------------------------------- parsing (unit-tested)

@dataclass(frozen=True, repr=False)
class Rule:
    """One firewall rule as `ufw status` words it: To, Action, From."""

    to: str          # "22/tcp", "80,443/tcp", "6000:6007/tcp", "172.28.77.11 22/tcp", "Anywhere"
    action: str      # "ALLOW IN", "LIMIT IN", "DENY IN", "REJECT IN"
    source: str      # "Anywhere", "172.28.77.0/25"

    def __repr__(self) -> str:
        return f"{self.to} {self.action} {self.source}"

    __str__ = __repr__

    @property
    def allows(self) -> bool:
        return self.action.upper().startswith(("ALLOW", "LIMIT"))

    @property
    def from_anywhere(self) -> bool:
        return self.source.lower().startswith("anywhere")

    def opens(self, ports, proto: str = "tcp") -> bool:
        """An allow rule that opens one of `ports`."""
        return self.allows and any(port_matches(self.to, p, proto) for p in ports)

    def opens_only(self, ports) -> bool:
        """Every port it opens is one of `ports` ("Anywhere" opens them all)."""
        opened = rule_ports(self.to)
        return opened is not None and opened <= set(ports)


def port_matches(to: str, port: int, proto: str = "tcp") -> bool:
    """Does a rule's 'To' ("22/tcp", "80,443/tcp", "6000:6007/tcp", "22", "Anywhere") cover port?"""
    rproto = to.partition("/")[2]
    opened = rule_ports(to, limit=65536)
    return (not rproto or rproto == proto) and (opened is None or port in opened)


def rule_ports(to: str, limit: int = 4096) -> set[int] | None:
    """The ports a rule's 'To' opens; None for "Anywhere" or a range too wide to list."""
    if to.lower().startswith("anywhere"):
        return None
    ports: set[int] = set()
    for part in to.partition("/")[0].split()[-1].split(","):  # "172.28.77.11 22/tcp": to an address
        lo, _, hi = part.partition(":")
        if not lo.isdigit() or (hi and not hi.isdigit()) or int(hi or lo) - int(lo) > limit:
            return None
        ports |= set(range(int(lo), int(hi or lo) + 1))
    return ports


def ufw_state(text: str) -> str | None:
    """`ufw status verbose` -> "active", "inactive", "not installed", or None (no status)."""
    m = re.search(r"^Status:\s*(\w+)", text, re.M)
    if m:
        return m.group(1)
    return "not installed" if re.search(r"ufw: (command )?not found|ufw: No such file", text) else None


def source_is_internal(source: str, network: str) -> bool:
    """A rule's 'From' that lies inside the deployment network."""
    try:
        return ipaddress.ip_network(source.split()[0], strict=False).subnet_of(ipaddress.ip_network(network))
    except (ValueError, TypeError):
        return False


def iptables_input_rules(save_text: str) -> tuple[str, list[str]]:
    """`iptables-save` -> (INPUT policy, the INPUT chain's -A lines, normalised)."""
    policy, rules, table = "", [], "filter"
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
    rule = re.sub(r"\s+-m (tcp|udp)\b", "", rule)
    rule = rule.replace("-m state --state", "-m conntrack --ctstate")
    rule = re.sub(r"--ctstate (\S+)", lambda m: "--ctstate " + ",".join(sorted(m.group(1).split(","))), rule)
    return " ".join(rule.split())


def iptables_missing_rules(save_text: str, expected_rules: list[str]) -> list[str]:
    """The guide's INPUT rules that the rule set lacks (a final DROP or policy DROP both satisfy
    "-A INPUT -j DROP", which must then be the last rule)."""
    policy, rules = iptables_input_rules(save_text)
    missing = []
    for want in expected_rules:
        norm = normalise_iptables_rule(want)
        if norm in rules or (norm == "-A INPUT -j DROP" and policy == "DROP"):
            continue
        missing.append(want)
    drop = "-A INPUT -j DROP"
    wanted = [normalise_iptables_rule(r) for r in expected_rules]
    if policy != "DROP" and drop in rules and rules[-1] != drop and drop in wanted:
        missing.append("-A INPUT -j DROP (must be the last rule)")
    return missing


def chain_rules(save_text: str, chain: str) -> tuple[Rule, ...]:
    """The rules of `chain` in iptables-save/iptables-restore text that accept, limit, drop or
    reject traffic, worded like `ufw status` ("22/tcp ALLOW IN Anywhere"). Loopback and
    established-connection rules open no port and are left out, as are jumps to other chains."""
    out = []
    for line in save_text.splitlines():
        if not line.startswith(f"-A {chain} "):
            continue
        try:
            words = shlex.split(line)[2:]
        except ValueError:
            words = line.split()[2:]
        opts: dict[str, str] = {}
        for i, word in enumerate(words):
            if word.startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-"):
                key = {"--source": "-s", "--destination": "-d", "--protocol": "-p", "--jump": "-j",
                       "--in-interface": "-i", "--dports": "--dport", "--destination-port": "--dport",
                       "--destination-ports": "--dport", "--state": "--ctstate"}.get(word, word)
                opts[key] = ("! " if i and words[i - 1] == "!" else "") + words[i + 1]
        action = ACTIONS.get(opts.get("-j", ""))
        if action is None or opts.get("-i") == "lo" or ("--ctstate" in opts and "NEW" not in opts["--ctstate"]):
            continue
        port, proto = opts.get("--dport", ""), opts.get("-p", "")
        to = (f"{port}/{proto}" if proto else port) if port else "Anywhere"
        if "-d" in opts:
            to = f"{opts['-d'].removesuffix('/32')} {to}"
        source = opts.get("-s", "Anywhere")
        out.append(Rule(to=to, action=action, source="Anywhere" if source in ("0.0.0.0/0", "Anywhere") else source))
    return tuple(out)


def shell_assignments(text: str) -> dict[str, str]:
    """KEY=value lines of a shell-style configuration file (/etc/default/ufw, ufw.conf)."""
    return {k: v.strip().strip("'\"") for k, v in re.findall(r"^\s*([A-Za-z_]\w*)=(.*)$", text, re.M)}


def running_input_policy(save_text: str) -> str:
    """The INPUT chain's effective default as ufw words it: deny, allow or reject (ufw rejects
    with a final REJECT in ufw-reject-input over a DROP policy)."""
    policy, _ = iptables_input_rules(save_text)
    if policy == "DROP" and re.search(r"^-A ufw-reject-input -j REJECT", save_text, re.M):
        return "reject"
    return POLICY.get(policy, policy.lower())


def listening_ports(text: str) -> tuple[int, ...]:
    """TCP ports listening beyond loopback, from `ss -Htln` or `netstat -tln` (the local address
    is the fourth column of both)."""
    ports = set()
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4 or not re.match(r"^(LISTEN|tcp)", cols[0]):
            continue
        address, _, port = cols[3].rpartition(":")
        address = address.strip("[]").split("%")[0]
        if not port.isdigit() or address.startswith(("127.", "::1", "::ffff:127.")) or address == "localhost":
            continue
        ports.add(int(port))
    return tuple(sorted(ports))


def with_rc(command: str) -> str:
    """A command whose output ends with its exit status (`#rc=N`)."""
    return f"{command}; echo \"#rc=$?\""


def split_rc(output: str) -> tuple[str, int | None]:
    """(output, exit status) of a `with_rc` command; None when the status line is missing."""
    body, _, last = output.rpartition("#rc=")
    return (body.rstrip(), int(last)) if last.strip().isdigit() else (output, None)


def file_command(path: str) -> str:
    """Read a file as root (`$SUDO`): its text, or a marker when it is missing or unreadable."""
    config_file = shlex.quote(path)
    return f"if [ -e {config_file} ]; then $SUDO cat {config_file} || echo '{UNREADABLE}'; else echo '{MISSING}'; fi"


def file_text(host: str, path: str, output: str) -> str | None:
    """A `file_command` output: the text, None when the file is missing; CouldNotAudit when the
    audit account cannot read it."""
    if output.strip() == MISSING:
        return None
    if output.strip().endswith(UNREADABLE):
        raise CouldNotAudit(host, path, "the audit account cannot read it (with sudo where the inventory says so)")
    return output


# ---------------------------------------------------------------- probes from a vantage point

def classify(kind: str, answer: bytes | None) -> bool:
    """Did the service answer like `kind`? None = no connection / no answer."""
    if answer is None:
        return False
    if kind == "any":
        return bool(answer)
    return any(answer.startswith(e) for e in PROBES[kind][1])


@dataclass(frozen=True)
class Answer:
    """What one port answered a probe from one vantage point."""

    vantage: str     # "runner", or the inside host's name
    target: str      # address:port
    open: bool       # answered like the service (protocol probes) or at all ("any")
    said: str        # its first bytes, or why nothing answered

    def __repr__(self) -> str:
        return f"{'open' if self.open else 'closed'} from {self.vantage} to {self.target} ({self.said})"


def probe_port(address: str, port: int, kind: str, timeout: float = PROBE_TIMEOUT) -> Answer:
    """Probe address:port from the runner with the protocol's first words."""
    target = f"{address}:{port}"
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if PROBES[kind][0]:
                sock.sendall(PROBES[kind][0])
            answer = sock.recv(16)
    except TimeoutError:
        return Answer("runner", target, False, "timeout (filtered, or accepted but silent)")
    except OSError as exc:
        return Answer("runner", target, False, f"{type(exc).__name__}: {exc.strerror or exc}")
    opened = classify(kind, answer)
    said = answer[:8].decode("latin-1") if opened else "connected but no protocol answer"
    return Answer("runner", target, opened, f"{said!r} in {round((time.monotonic() - started) * 1000, 1)} ms")


def internal_probe_script(targets: list[tuple[str, int, str]], timeout: int = 3) -> dict[str, str]:
    """Commands (named "host:port") that probe each target from inside with bash /dev/tcp,
    printing the answer's first bytes in hex (empty when nothing answered)."""
    cmds = {}
    for host, port, kind in targets:
        payload = "".join(f"\\x{b:02x}" for b in PROBES[kind][0])
        cmds[f"{host}:{port}"] = (
            f"timeout {timeout} bash -c 'exec 3<>/dev/tcp/{host}/{port} || exit 1; printf \"{payload}\" >&3; "
            "dd bs=64 count=1 <&3 2>/dev/null' 2>/dev/null | od -An -tx1 | tr -d ' \\n'; echo")
    return cmds


def expected_ports(want: dict) -> list[int]:
    """The ports of an internal-only requirement's expected value (`port` or `ports`)."""
    return [int(p) for p in want.get("ports", [want.get("port")]) if p]


def public_ports_allowed(roles, want: dict) -> list[int]:
    """NET-NO-OTHER-PUBLIC-PORTS' ports for a host of these roles (`all` plus each role's)."""
    ports = set(want.get("all", []))
    for role in roles:
        ports |= set(want.get(role, []))
    return sorted(int(p) for p in ports)


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class UfwSide:
    """ufw as one side sees it: the kernel's rules (running) or ufw's files (on disk)."""

    active: bool
    incoming: str                    # deny / allow / reject, "" when unknown
    rules: tuple[Rule, ...]
    where: str

    def allowing(self, port: int, proto: str = "tcp") -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.opens([port], proto))


@dataclass(frozen=True)
class FirewallFacts:
    """One host's firewall: ufw running (kernel) and on disk (files), plain iptables, sockets."""

    host: str
    uses_ufw: bool                   # not in inventory group `iptables`
    running: UfwSide                 # ufw status (active), iptables-save (ufw-user-input, INPUT policy)
    on_disk: UfwSide | None          # ufw.conf ENABLED, /etc/default/ufw, user.rules; None: no ufw files
    iptables_text: str               # iptables-save
    saved_text: str | None           # /etc/iptables/rules.v4; None when missing
    listening: tuple[int, ...] | None  # TCP ports listening beyond loopback; None when unreadable
    network: str | None = None       # audit_settings.deployment_network

    def ufw_sides(self, read: Callable[[UfwSide], Any]) -> dict[str, Reading]:
        """`read` of ufw as it runs and as its files set it (the side that exists)."""
        sides = {RUNNING: self.running, ON_DISK: self.on_disk}
        return {label: Reading(read(s), read(s), s.where) for label, s in sides.items() if s is not None}

    def ufw_rules(self, ports=None, proto: str = "tcp") -> dict[str, Rule]:
        """Every ufw rule, running and on disk, named "side: rule" (those opening `ports`, if given)."""
        sides = {RUNNING: self.running, ON_DISK: self.on_disk}
        return {f"{label}: {r}": r for label, s in sides.items() if s is not None for r in s.rules
                if ports is None or r.opens(ports, proto)}

    def internal(self, source: str) -> bool:
        """A rule source inside the deployment network (audit_settings.deployment_network)."""
        if not self.network:
            raise CouldNotAudit(self.host, "inventory", "audit_settings.deployment_network is not set: the CIDR "
                                                        "of the deployment's own network, the 'internal only' "
                                                        "sources of the firewall rules")
        return source_is_internal(source, self.network)

    def open_ports(self) -> tuple[int, ...]:
        if self.listening is None:
            raise CouldNotAudit(self.host, "listening sockets", "neither `ss -Htln` nor `netstat -tln` answered")
        return self.listening

    def input_chain(self, saved: bool = False) -> dict[str, Any] | None:
        """The INPUT chain as it runs (iptables-save) or as saved (rules.v4; None when the file is
        missing or holds no INPUT chain): {"policy": ..., "rules": [normalised -A lines]}."""
        text = self.saved_text if saved else self.iptables_text
        policy, rules = iptables_input_rules(text or "")
        return {"policy": policy, "rules": rules} if (policy or rules) or not saved else None

    def missing_input_rules(self, expected_rules: list[str]) -> list[str]:
        return iptables_missing_rules(self.iptables_text, expected_rules)

    def input_sides(self, expected_rules: list[str], saved_path: str = guide.IPTABLES_RULES) -> dict[str, Reading]:
        """The INPUT chain as the kernel runs it and as saved (the rules file netfilter-persistent
        loads at boot), each with the guide's rules it lacks."""
        out = {}
        for side, text, where in ((RUNNING, self.iptables_text, "iptables-save"),
                                  (ON_DISK, self.saved_text, saved_path)):
            chain = self.input_chain(saved=side == ON_DISK)
            if chain is None:
                out[side] = Reading(f"{saved_path} is missing or holds no INPUT chain", None, where)
                continue
            missing = iptables_missing_rules(text or "", expected_rules)
            out[side] = Reading({**chain, "missing": missing}, {**chain, "missing": missing}, where)
        return out

    def rules(self) -> dict[str, Rule]:
        """The port rules of the host's firewall, named "side: rule": ufw's (running and on disk),
        or on an iptables host the INPUT chain's (running and saved)."""
        if self.uses_ufw:
            return self.ufw_rules()
        return {f"{label}: {r}": r for label, text in ((RUNNING, self.iptables_text), ("saved", self.saved_text or ""))
                for r in chain_rules(text, "INPUT")}


FIREWALL_COMMANDS = {
    "ufw": "$SUDO ufw status verbose 2>&1",
    "ufw_conf": file_command("/etc/ufw/ufw.conf"),
    "ufw_default": file_command("/etc/default/ufw"),
    "user_rules": file_command("/etc/ufw/user.rules"),
    "iptables": with_rc("$SUDO iptables-save 2>&1"),
    "saved": file_command(guide.IPTABLES_RULES),
    "listening": "ss -Htln 2>/dev/null || netstat -tln 2>/dev/null",
}
UFW_ONLY = ("ufw", "ufw_conf", "ufw_default", "user_rules")  # asked where ufw is the firewall; "saved" elsewhere


@probe()
def firewall(session, host) -> FirewallFacts:
    """The host's firewall, running and on disk, and its listening sockets (one round trip)."""
    uses_ufw = guide.IPTABLES_GROUP not in host.roles
    skip = ("saved",) if uses_ufw else UFW_ONLY  # the other firewall's files: not read (audit/sudo.py)
    out = session.access.collect(host, {k: v for k, v in FIREWALL_COMMANDS.items() if k not in skip})
    out |= {k: "" if k == "ufw" else MISSING for k in skip}
    iptables, rc = split_rc(out["iptables"])
    if rc != 0:
        raise CouldNotAudit(host.name, "iptables-save", f"it failed (exit {rc}): {iptables[-200:] or 'no output'}")
    state = ufw_state(out["ufw"])
    if uses_ufw and state is None:
        raise CouldNotAudit(host.name, "ufw status verbose", f"no status: {out['ufw'][:200] or 'no output'}")
    conf, default, user_rules = (file_text(host.name, path, out[name]) for name, path in (
        ("ufw_conf", "/etc/ufw/ufw.conf"), ("ufw_default", "/etc/default/ufw"), ("user_rules", "/etc/ufw/user.rules")))
    active = state == "active"
    running = UfwSide(active, running_input_policy(iptables) if active else "",
                      chain_rules(iptables, "ufw-user-input") if active else (), "ufw status verbose; iptables-save")
    on_disk = None
    if conf is not None or user_rules is not None:
        policy = shell_assignments(default or "").get("DEFAULT_INPUT_POLICY", "")
        on_disk = UfwSide(shell_assignments(conf or "").get("ENABLED", "").lower() == "yes",
                          POLICY.get(policy, policy.lower()), chain_rules(user_rules or "", "ufw-user-input"),
                          "/etc/ufw/ufw.conf, /etc/default/ufw, /etc/ufw/user.rules")
    return FirewallFacts(host=host.name, uses_ufw=uses_ufw, running=running,
                         on_disk=on_disk, iptables_text=iptables,
                         saved_text=file_text(host.name, guide.IPTABLES_RULES, out["saved"]),
                         listening=listening_ports(out["listening"]) if out["listening"] else None,
                         network=host.settings.deployment_network)


@dataclass(frozen=True)
class ExposureFacts:
    """What answers from where, for the deployment as a whole."""

    internal: dict[tuple[str, int], dict[str, Answer]] = field(default_factory=dict)  # (host, port) -> outside/inside
    public: dict[str, dict[int, Answer]] = field(default_factory=dict)  # host -> other listening port -> from runner
    problems: dict[str, str] = field(default_factory=dict)  # host (or "inside") -> why it was not probed

    def of(self, host: str, port: int) -> dict[str, Answer]:
        """The outside and inside answers of an internal-only port; CouldNotAudit when unprobed."""
        if "inside" in self.problems:
            raise CouldNotAudit(None, "the probes from inside the deployment network", self.problems["inside"])
        if (host, port) not in self.internal:
            raise CouldNotAudit(host, f"port {port}", self.problems.get(host, "it was not probed"))
        return self.internal[(host, port)]

    def public_answers(self, host: str) -> dict[int, Answer]:
        if host in self.problems:
            raise CouldNotAudit(host, "the exposure probes", self.problems[host])
        return self.public.get(host, {})


@probe(per_host=False, slow=True)
def exposure(session) -> ExposureFacts:
    """Internal-only ports from the runner (outside) and from a host inside the deployment
    network; every other non-public listening port of each host from the runner."""
    inventory = session.inventory
    vantage = inventory.settings.exposure_vantage
    if vantage != "runner":
        raise CouldNotAudit(None, "inventory", f"audit_settings.exposure_vantage={vantage!r}: only 'runner' works")
    targets = []  # (host, port, kind)
    for req_id, (roles, kind) in INTERNAL_ONLY.items():
        targets += [(h, port, kind) for h in inventory.hosts_with_role(*roles)
                    for port in expected_ports(session.expected(req_id))]
    internal_ports = {port for _, port, _ in targets}
    allowed = session.expected("NET-NO-OTHER-PUBLIC-PORTS")
    servers = inventory.hosts_with_role(*guide.SERVER_ROLES)
    inside_name = inventory.settings.internal_probe_from or next(
        (h.name for h in inventory.hosts_with_role("app")), None)
    problems: dict[str, str] = {}

    def listening(host) -> tuple:
        try:
            return host, session.facts.get("firewall", host.name).open_ports()
        except CouldNotAudit as exc:
            problems[host.name] = exc.why
            return host, ()

    def inside() -> dict[str, str]:
        if inside_name is None:
            problems["inside"] = ("no host to probe from: set audit_settings.internal_probe_from or add a host to "
                                  "the group app")
            return {}
        try:
            session.facts.get("reach", inside_name)
            return session.access.collect(inventory.hosts[inside_name], internal_probe_script(
                [(h.settings.internal_address or h.name, port, kind) for h, port, kind in targets]))
        except CouldNotAudit as exc:
            problems["inside"] = f"{inside_name}: {exc.why}"
            return {}

    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="exposure") as pool:
        seen_inside = pool.submit(inside)
        outside = [pool.submit(probe_port, h.address, port, kind) for h, port, kind in targets]
        candidates = [(h, p) for h, ports in pool.map(listening, servers) for p in ports
                      if p not in public_ports_allowed(h.roles, allowed) and p not in internal_ports]
        others = list(pool.map(lambda c: probe_port(c[0].settings.outside_address or c[0].address, c[1], "any",
                                                     PUBLIC_TIMEOUT), candidates))
        said_inside = seen_inside.result()
    internal = {}
    for (h, port, kind), answer in zip(targets, outside, strict=True):
        address = h.settings.internal_address or h.name
        got = bytes.fromhex(said_inside.get(f"{address}:{port}", "").strip())
        inside_answer = Answer(inside_name or "-", f"{address}:{port}", classify(kind, got or None),
                               repr(got[:5]) if got else "no answer")
        internal[(h.name, port)] = {"outside": answer.result(), "inside": inside_answer}
    public: dict[str, dict[int, Answer]] = {}
    for (h, port), answer in zip(candidates, others, strict=True):
        public.setdefault(h.name, {})[port] = answer
    return ExposureFacts(internal, public, problems)
