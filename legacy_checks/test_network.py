"""Guide: Infrastructure Setup > Network Configuration > Firewall Rules, and Security Hardening >
Network Security (iptables).

The firewall is read from each host in ONE round trip (`ufw status verbose`, `iptables-save`,
the saved rules, listening sockets), and exposure is proven from outside, not only from config:
the runner (outside the deployment network: inventory `audit_settings.exposure_vantage: runner`)
probes the PostgreSQL/Redis ports of each host's address with protocol-level probes (SSLRequest,
PING) and short timeouts, while the app host (`audit_settings.internal_probe_from`, default the
first `app` host) probes the same ports from inside the deployment network.

Hosts managed with plain iptables instead of ufw are the inventory group `iptables`: they are
checked against the guide's iptables rules; the ufw checks do not apply to them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from audit.evidence import attach, compare
from audit.hostcheck import classify, decode_od, internal_probe_script, network_facts, probe, setting
from audit.hostparse import (
    SERVER_ROLES,
    iptables_input_rules,
    iptables_missing_rules,
    parse_ufw_status,
    rule_ports,
    source_is_internal,
)

EVERY_SERVER = pytest.mark.roles(*SERVER_ROLES)
IPTABLES_ROLE = "iptables"

# requirement -> (roles, protocol); ports come from the catalogue (or inventory override)
INTERNAL_SERVICES = {
    "NET-POSTGRES-INTERNAL-ONLY": (("db_primary", "db_replica"), "postgres"),
    "NET-REDIS-INTERNAL-ONLY": (("redis",), "redis"),
    "NET-REDIS-CLUSTER-INTERNAL-ONLY": (("redis_cluster",), "redis"),
}


def ufw(server):
    """The host's ufw status; ufw checks do not apply to hosts of the `iptables` group."""
    if IPTABLES_ROLE in server.roles:
        pytest.skip(f"not applicable: {server.name} is managed with plain iptables (group iptables)")
    text = network_facts(server)["ufw"]
    attach("ufw status verbose", text)
    return parse_ufw_status(text)


@EVERY_SERVER
@pytest.mark.requirement("NET-UFW-ACTIVE")
def test_ufw_is_active(server):
    """"sudo ufw enable"."""
    status = ufw(server)
    compare("ufw", "active" if status.active else "inactive", "active")
    assert status.active, f"{server.name}: ufw is not active"


@EVERY_SERVER
@pytest.mark.requirement("NET-UFW-DEFAULT-DENY-INCOMING")
def test_ufw_denies_incoming_by_default(server, expected):
    """"sudo ufw default deny incoming"."""
    want = expected("NET-UFW-DEFAULT-DENY-INCOMING")["incoming"]
    status = ufw(server)
    seen = status.defaults.get("incoming", "unknown") if status.active else "ufw inactive"
    compare("default incoming policy", seen, want)
    assert seen == want, f"{server.name}: ufw default incoming policy is {seen}, guide: {want}"


def _allow_check(server, want: dict, what: str) -> None:
    status = ufw(server)
    rules = [r for r in status.allowed(int(want["port"]), want["proto"]) if r.from_anywhere]
    compare(f"ufw allow {want['port']}/{want['proto']}", [f"{r.to} {r.action} {r.source}" for r in rules],
            f"an ALLOW rule for {want['port']}/{want['proto']} from Anywhere")
    assert status.active, f"{server.name}: ufw is not active, so it allows nothing ({what})"
    assert rules, f"{server.name}: ufw does not allow {want['port']}/{want['proto']} from anywhere ({what})"


@EVERY_SERVER
@pytest.mark.requirement("NET-UFW-ALLOW-SSH")
def test_ufw_allows_ssh(server, expected):
    """"sudo ufw allow 22/tcp    # SSH"."""
    _allow_check(server, expected("NET-UFW-ALLOW-SSH"), "SSH")


@pytest.mark.roles("web")
@pytest.mark.requirement("NET-UFW-ALLOW-HTTP")
def test_ufw_allows_http(server, expected):
    """"sudo ufw allow 80/tcp    # HTTP"."""
    _allow_check(server, expected("NET-UFW-ALLOW-HTTP"), "HTTP")


@pytest.mark.roles("web")
@pytest.mark.requirement("NET-UFW-ALLOW-HTTPS")
def test_ufw_allows_https(server, expected):
    """"sudo ufw allow 443/tcp   # HTTPS"."""
    _allow_check(server, expected("NET-UFW-ALLOW-HTTPS"), "HTTPS")


# ---------------------------------------------------------------- exposure, from outside and inside


def _ports(want: dict) -> list[int]:
    return [int(p) for p in want.get("ports", [want.get("port")]) if p]


@pytest.fixture(scope="session")
def exposure(audit_context, inventory):
    """Every internal-only port of every host, probed from the runner (outside) and from the app
    host (inside), once per run: {(host, port): {"outside": {...}, "inside": {...}}}."""
    targets = []  # (host, port, kind)
    for req_id, (roles, kind) in INTERNAL_SERVICES.items():
        for h in inventory.hosts_with_role(*roles):
            for port in _ports(audit_context.expected(req_id)):
                targets.append((h, port, kind))
    vantage = setting(None, "exposure_vantage", "runner", inventory)
    results: dict = {}
    if vantage != "runner":
        raise LookupError(f"audit_settings.exposure_vantage={vantage!r}: only 'runner' is supported")
    with ThreadPoolExecutor(max_workers=8) as pool:
        outside = list(pool.map(lambda t: probe(t[0].address, t[1], t[2]), targets))
    inside_name = setting(None, "internal_probe_from", None, inventory) or next(
        (h.name for h in inventory.hosts_with_role("app")), None)
    inside: dict[str, str] = {}
    if inside_name:
        prober = audit_context.server(inside_name)
        internal = [(h.vars.get("audit_settings", {}).get("internal_address", h.name), port, kind)
                    for h, port, kind in targets]
        inside = prober.collect("network-probes", internal_probe_script(internal), timeout=60)
    for (h, port, kind), out in zip(targets, outside, strict=True):
        addr = h.vars.get("audit_settings", {}).get("internal_address", h.name)
        raw = inside.get(f"{addr}:{port}")
        answer = decode_od(raw.strip()) if raw is not None else None
        results[(h.name, port)] = {
            "outside": {"from": "runner", "to": f"{h.address}:{port}", **out},
            "inside": {"from": inside_name, "to": f"{addr}:{port}", "answer": (answer or b"")[:5].decode("latin-1"),
                       "open": classify(kind, answer or None)},
        }
    return results


def _internal_only(server, expected, exposure, inventory, req_id: str) -> None:
    want = expected(req_id)
    status = ufw(server) if IPTABLES_ROLE not in server.roles else None
    network = setting(server, "deployment_network", None, inventory)
    public_rules = []
    if status is not None:
        for port in _ports(want):
            public_rules += [f"{r.to} {r.action} {r.source}" for r in status.allowed(port, want["proto"])
                             if not (network and source_is_internal(r.source, network))]
    seen = {str(port): exposure[(server.name, port)] for port in _ports(want)}
    compare("exposure (protocol probes) and ufw rules not limited to the deployment network",
            {"probes": seen, "ufw rules open beyond the deployment network": public_rules},
            {"from_outside": want["from_outside"], "from_internal": want["from_internal"],
             "deployment network": network})
    exposed = [p for p, s in seen.items() if s["outside"]["open"]]
    unreachable = [p for p, s in seen.items() if not s["inside"]["open"]]
    assert not exposed, f"{server.name}: port(s) {exposed} answer from outside the deployment network (runner)"
    assert not public_rules, f"{server.name}: ufw opens internal-only port(s) beyond {network}: {public_rules}"
    assert not unreachable, f"{server.name}: port(s) {unreachable} do not answer from inside the deployment network"


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("NET-POSTGRES-INTERNAL-ONLY")
def test_postgres_is_internal_only(server, expected, exposure, inventory):
    """"sudo ufw allow 5432/tcp  # PostgreSQL (internal only)"."""
    _internal_only(server, expected, exposure, inventory, "NET-POSTGRES-INTERNAL-ONLY")


@pytest.mark.roles("redis")
@pytest.mark.requirement("NET-REDIS-INTERNAL-ONLY")
def test_redis_is_internal_only(server, expected, exposure, inventory):
    """"sudo ufw allow 6379/tcp  # Redis (internal only)"."""
    _internal_only(server, expected, exposure, inventory, "NET-REDIS-INTERNAL-ONLY")


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("NET-REDIS-CLUSTER-INTERNAL-ONLY")
def test_redis_cluster_is_internal_only(server, expected, exposure, inventory):
    """Redis Cluster nodes "port 7000", "port 7001": internal only like Redis."""
    _internal_only(server, expected, exposure, inventory, "NET-REDIS-CLUSTER-INTERNAL-ONLY")


INTERNAL_ONLY_PORTS = {5432, 6379, 7000, 7001}  # they have their own requirements


def public_ports_allowed(server, expected) -> list[int]:
    want = expected("NET-NO-OTHER-PUBLIC-PORTS")
    ports = set(want.get("all", []))
    for role in server.roles:
        ports |= set(want.get(role, []))
    return sorted(ports)


@EVERY_SERVER
@pytest.mark.requirement("NET-NO-OTHER-PUBLIC-PORTS")
def test_no_other_public_ports(server, expected, inventory):
    """"Firewall Rules": only 22 (and 80/443 on the web hosts) are open to the world; the rest is
    internal. From ufw (allow rules open beyond the deployment network) and from the runner (every
    port the host listens on, probed at its address)."""
    allowed = public_ports_allowed(server, expected)
    network = setting(server, "deployment_network", None, inventory)
    facts = network_facts(server)
    listening = sorted({int(line.split()[3].rsplit(":", 1)[1]) for line in facts["listening"].splitlines()
                        if len(line.split()) >= 4 and line.split()[3].rsplit(":", 1)[-1].isdigit()
                        and not line.split()[3].startswith(("127.", "[::1]"))})
    extra_rules = []
    if IPTABLES_ROLE not in server.roles:
        status = parse_ufw_status(facts["ufw"])
        for r in status.rules:
            if not r.allows or (network and source_is_internal(r.source, network)):
                continue
            ports = rule_ports(r.to)
            if ports is None or not ports <= set(allowed) | INTERNAL_ONLY_PORTS:
                extra_rules.append(f"{r.to} {r.action} {r.source}")
    candidates = [p for p in listening if p not in allowed and p not in INTERNAL_ONLY_PORTS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        probes = dict(zip(candidates, pool.map(lambda p: probe(server.host_vars.address, p, "any", 1.0),
                                               candidates), strict=True))
    open_outside = sorted(p for p, r in probes.items() if r["open"])
    compare("public exposure", {"listening": listening, "probed from the runner": probes,
                                "ufw rules open beyond the deployment network": extra_rules},
            {"public ports": allowed})
    assert not extra_rules, f"{server.name}: ufw opens ports beyond {allowed} to the world: {extra_rules}"
    assert not open_outside, f"{server.name}: port(s) {open_outside} answer from outside (allowed: {allowed})"


# ---------------------------------------------------------------- plain iptables hosts


@pytest.mark.roles(IPTABLES_ROLE)
@pytest.mark.requirement("NET-IPTABLES-INPUT-RULES")
def test_iptables_input_rules(server, expected):
    """"sudo iptables -A INPUT -i lo -j ACCEPT ... -A INPUT -j DROP" (hosts without ufw)."""
    want = expected("NET-IPTABLES-INPUT-RULES")["rules"]
    text = network_facts(server)["iptables"]
    attach("iptables-save", text)
    policy, rules = iptables_input_rules(text)
    missing = iptables_missing_rules(text, want)
    compare("INPUT chain", {"policy": policy, "rules": rules}, want)
    assert not missing, f"{server.name}: iptables INPUT lacks the guide's rules: {missing}"


@pytest.mark.roles(IPTABLES_ROLE)
@pytest.mark.requirement("NET-IPTABLES-RULES-SAVED")
def test_iptables_rules_saved(server, expected):
    """"sudo iptables-save > /etc/iptables/rules.v4": saved, and the same as the running rules."""
    facts = network_facts(server)
    attach("rules.v4", facts["rules_v4"])
    running = iptables_input_rules(facts["iptables"])
    saved = iptables_input_rules(facts["rules_v4"])
    compare("INPUT chain (running vs saved)", {"saved": saved}, {"running": running})
    assert saved[1] or saved[0], f"{server.name}: no saved rules in {expected('NET-IPTABLES-RULES-SAVED')['path']}"
    assert saved == running, f"{server.name}: the saved INPUT rules differ from the running ones"
