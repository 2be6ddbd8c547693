"""Guide: Infrastructure Setup > Network Configuration > Firewall Rules, and Security Hardening >
Network Security (iptables). What is read, and how: audit/probes/network.py.

ufw is judged as it runs (the kernel's rules) and as its files set it (what the next boot or
reload applies); exposure is proven from outside and inside, not only from configuration. Hosts
of the inventory group `iptables` run plain iptables: the ufw checks do not apply to them, and
the iptables checks run only on them.
"""

from __future__ import annotations

import pytest

from audit import guide
from audit.judge import ON_DISK, RUNNING, Reading
from audit.marks import per_requirement
from audit.probes.network import INTERNAL_ONLY, expected_ports, public_ports_allowed

EVERY_SERVER = pytest.mark.roles(*guide.SERVER_ROLES)


def ufw_applies(server) -> None:
    if guide.IPTABLES_GROUP in server.roles:
        pytest.skip(f"not applicable (declared in the inventory): {server.name} is in the group iptables, "
                    "managed with plain iptables instead of ufw")


# ---------------------------------------------------------------- ufw

@EVERY_SERVER
@pytest.mark.requirement("NET-UFW-ACTIVE")
def check_ufw_is_active(judge, server, firewall):
    """"sudo ufw enable": active now, and enabled in ufw.conf for the next boot."""
    ufw_applies(server)
    judge.sides(firewall.ufw_sides(lambda s: "active" if s.active else "inactive"), lambda v: v == "active",
                what="ufw", expected="active")


@EVERY_SERVER
@pytest.mark.requirement("NET-UFW-DEFAULT-DENY-INCOMING")
def check_ufw_denies_incoming_by_default(judge, server, firewall):
    """"sudo ufw default deny incoming"."""
    ufw_applies(server)
    want = judge.expected["incoming"]
    judge.sides(firewall.ufw_sides(lambda s: s.incoming if s.active else "ufw inactive"), lambda v: v == want,
                what="ufw default incoming policy", expected=want)


def _allows_from_anywhere(judge, server, firewall) -> None:
    ufw_applies(server)
    port, proto = int(judge.expected["port"]), judge.expected["proto"]
    judge.sides(firewall.ufw_sides(lambda s: tuple(r for r in s.allowing(port, proto) if r.from_anywhere)), bool,
                what=f"ufw allow {port}/{proto} from Anywhere", expected=f"ALLOW {port}/{proto} from anywhere")


@EVERY_SERVER
@pytest.mark.requirement("NET-UFW-ALLOW-SSH")
def check_ufw_allows_ssh(judge, server, firewall):
    """"sudo ufw allow 22/tcp  # SSH access"."""
    _allows_from_anywhere(judge, server, firewall)


@pytest.mark.roles("web")
@per_requirement("NET-UFW-ALLOW-HTTP", "NET-UFW-ALLOW-HTTPS")
def check_ufw_allows_web(judge, server, firewall, req_id):
    """"sudo ufw allow 80/tcp", "sudo ufw allow 443/tcp" (the web hosts)."""
    _allows_from_anywhere(judge, server, firewall)


# ---------------------------------------------------------------- exposure, from outside and inside

def _opening(firewall, selected, wrong) -> dict:
    """ufw's rules that `selected` picks, and those of them that are `wrong`, as they run and as
    ufw's files set them (the next reload or boot)."""
    return firewall.ufw_sides(lambda s: {"rules": [str(r) for r in s.rules if selected(r)],
                                         "beyond the deployment network": [str(r) for r in s.rules
                                                                           if selected(r) and wrong(r)]})


def _internal_only(judge, server, firewall, exposure) -> None:
    want = judge.expected
    probes = {port: exposure.of(server.name, port) for port in expected_ports(want)}
    judge.each({f"{port} from the runner": a["outside"] for port, a in probes.items()}, lambda a: not a.open,
               what="internal-only port answers from outside the deployment network", expected=want["from_outside"])
    if firewall.uses_ufw:
        judge.sides(_opening(firewall, lambda r: r.opens(list(probes), want["proto"]),
                             lambda r: not firewall.internal(r.source)),
                    lambda found: not found["beyond the deployment network"],
                    what=f"ufw rules opening {list(probes)}", expected="from the deployment network only")
    judge.each({f"{port} from {a['inside'].vantage}": a["inside"] for port, a in probes.items()}, lambda a: a.open,
               what="internal-only port answers from inside the deployment network", expected=want["from_internal"])


@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("NET-POSTGRES-INTERNAL-ONLY")
def check_postgres_is_internal_only(judge, server, firewall, exposure):
    """"sudo ufw allow 5432/tcp  # PostgreSQL (internal only)"."""
    _internal_only(judge, server, firewall, exposure)


@pytest.mark.roles("redis")
@pytest.mark.requirement("NET-REDIS-INTERNAL-ONLY")
def check_redis_is_internal_only(judge, server, firewall, exposure):
    """"sudo ufw allow 6379/tcp  # Redis (internal only)"."""
    _internal_only(judge, server, firewall, exposure)


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("NET-REDIS-CLUSTER-INTERNAL-ONLY")
def check_redis_cluster_is_internal_only(judge, server, firewall, exposure):
    """Redis Cluster nodes "port 7000", "port 7001": internal only like Redis."""
    _internal_only(judge, server, firewall, exposure)


@EVERY_SERVER
@pytest.mark.requirement("NET-NO-OTHER-PUBLIC-PORTS")
def check_no_other_public_ports(judge, server, firewall, exposure):
    """"Firewall Rules": only 22 (and 80/443 on the web hosts) are open to the world; the rest is
    internal. From ufw (no allow rule opens another port beyond the deployment network) and from
    the runner (every other port the host listens on, probed at its address)."""
    allowed = public_ports_allowed(server.roles, judge.expected)
    internal = {p for req in INTERNAL_ONLY for p in expected_ports(judge.expected_of(req))}
    if firewall.uses_ufw:
        judge.sides(_opening(firewall, lambda r: r.allows, lambda r: not firewall.internal(r.source)
                             and not r.opens_only(set(allowed) | internal)),
                    lambda found: not found["beyond the deployment network"],
                    what="ufw rules opening ports to the world",
                    expected=f"only {allowed} (internal-only ports inside)")
    answers = exposure.public_answers(server.name)
    judge.that(not any(a.open for a in answers.values()), what="other listening ports answering from the runner",
               found={"listening": firewall.open_ports(), "probed from the runner": answers},
               expected=f"none besides {allowed}")


# ---------------------------------------------------------------- plain iptables hosts

@pytest.mark.roles(guide.IPTABLES_GROUP)
@pytest.mark.requirement("NET-IPTABLES-INPUT-RULES")
def check_iptables_input_rules(judge, server, firewall):
    """"sudo iptables -A INPUT -i lo -j ACCEPT ... -A INPUT -j DROP" (hosts without ufw): as the
    kernel runs them (iptables-save) and as saved in /etc/iptables/rules.v4 (what the next boot loads)."""
    judge.sides(firewall.input_sides(judge.expected["rules"], judge.expected_of("NET-IPTABLES-RULES-SAVED")["path"]),
                lambda chain: not chain["missing"], what="iptables INPUT chain", expected=judge.expected["rules"])


@pytest.mark.roles(guide.IPTABLES_GROUP)
@pytest.mark.requirement("NET-IPTABLES-RULES-SAVED")
def check_iptables_rules_saved(judge, server, firewall):
    """"sudo iptables-save > /etc/iptables/rules.v4": saved, and the same as the running rules."""
    running = firewall.input_chain()
    sides = {RUNNING: Reading(running, running, "iptables-save")}
    saved = firewall.input_chain(saved=True)
    sides[ON_DISK] = Reading(saved if saved is not None else "missing, or no INPUT chain in it", saved,
                             judge.expected["path"])
    judge.sides(sides, lambda chain: chain == running, what="INPUT chain saved", expected="the running INPUT chain")
