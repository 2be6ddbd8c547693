"""Network and firewall drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import Drift, edit_file

WIDE = "172.28.77.0/24"  # wider than the deployment's /25: still lets the runner (.254) in
INTERNAL = "172.28.77.0/25"  # the deployment network
# The same two networks of the fleet flavour (provision/fleet/topology.py)
FLEET_NETS = {WIDE: "172.28.78.0/24", INTERNAL: "172.28.78.0/25"}


def _ufw(host: str, apply: str, heal: str) -> tuple:
    """apply/heal pair of ufw commands; the reference's networks in them are the fleet's there."""
    def run(c, cmd: str) -> None:
        if c.fleet:
            for ref, fleet in FLEET_NETS.items():
                cmd = cmd.replace(ref, fleet)
        c.sh(host, f"{cmd} >/dev/null")

    return (lambda c: run(c, apply), lambda c: run(c, heal))


def _narrowed(host: str, port: int) -> tuple:
    """The guide's 'allow PORT/tcp' (from anywhere) replaced by one from a subnet only."""
    return _ufw(host, f"ufw allow from {WIDE} to any port {port} proto tcp && ufw delete allow {port}/tcp",
                f"ufw allow {port}/tcp && ufw delete allow from {WIDE} to any port {port} proto tcp")


DRIFTS: tuple[Drift, ...] = (
    Drift("ufw-postgres-public", ("NET-POSTGRES-INTERNAL-ONLY", "CHK-FIREWALL-RULES-UP-TO-DATE"),
          "db1: ufw allow 5432/tcp from anywhere",
          lambda c: c.sh("db1", "ufw allow 5432/tcp >/dev/null"),
          lambda c: c.sh("db1", "ufw delete allow 5432/tcp >/dev/null")),
    Drift("ufw-redis-public", ("NET-REDIS-INTERNAL-ONLY", "CHK-FIREWALL-RULES-UP-TO-DATE"),
          "cache1: ufw allow 6379/tcp from anywhere",
          *_ufw("cache1", "ufw allow 6379/tcp", "ufw delete allow 6379/tcp")),
    Drift("ufw-redis-cluster-public", ("NET-REDIS-CLUSTER-INTERNAL-ONLY", "CHK-FIREWALL-RULES-UP-TO-DATE"),
          "cache2: ufw allow 7001/tcp from anywhere",
          *_ufw("cache2", "ufw allow 7001/tcp", "ufw delete allow 7001/tcp")),
    Drift("ufw-prometheus-public", ("NET-NO-OTHER-PUBLIC-PORTS", "CHK-FIREWALL-RULES-UP-TO-DATE"),
          "web1: ufw allow 9090/tcp from anywhere (Prometheus)",
          *_ufw("web1", "ufw allow 9090/tcp", "ufw delete allow 9090/tcp")),
    Drift("ufw-extra-internal-rule", ("CHK-FIREWALL-RULES-UP-TO-DATE",),
          "db2: ufw allow 9999/tcp from the deployment network (a rule the guide does not have)",
          *_ufw("db2", f"ufw allow from {INTERNAL} to any port 9999 proto tcp",
                f"ufw delete allow from {INTERNAL} to any port 9999 proto tcp")),
    Drift("ufw-default-allow", ("NET-UFW-DEFAULT-DENY-INCOMING",),
          "web1: ufw default allow incoming",
          *_ufw("web1", "ufw default allow incoming", "ufw default deny incoming")),
    Drift("ufw-disabled",
          ("NET-UFW-ACTIVE", "NET-UFW-DEFAULT-DENY-INCOMING", "NET-UFW-ALLOW-SSH", "NET-UFW-ALLOW-HTTP",
           "NET-UFW-ALLOW-HTTPS"),
          "web1: ufw disable (no rule, no default policy is in force)",
          *_ufw("web1", "ufw disable", "ufw --force enable")),
    Drift("ufw-ssh-narrowed", ("NET-UFW-ALLOW-SSH",),
          f"db2: 22/tcp allowed from {WIDE} only, not from anywhere",
          *_narrowed("db2", 22)),
    Drift("ufw-http-narrowed", ("NET-UFW-ALLOW-HTTP",),
          f"web1: 80/tcp allowed from {WIDE} only, not from anywhere",
          *_narrowed("web1", 80)),
    # running vs on disk (issue 19)
    Drift("ufw-not-reloaded", ("NET-UFW-ALLOW-HTTP",),
          "web1: the allow 80/tcp rule deleted from /etc/ufw/user.rules, ufw not reloaded (the kernel still "
          "allows 80; the next reload or boot drops it)",
          *edit_file("web1", "/etc/ufw/user.rules", "'/^-A ufw-user-input -p tcp --dport 80 -j ACCEPT$/d'", "true",
                     "ufw-not-reloaded")),
    Drift("ufw-not-persisted", ("NET-UFW-ALLOW-HTTP",),
          "web1: iptables -D ufw-user-input -p tcp --dport 80 -j ACCEPT (live only: user.rules still allows 80, "
          "the next ufw reload restores it)",
          lambda c: c.sh("web1", "iptables -D ufw-user-input -p tcp --dport 80 -j ACCEPT"),
          lambda c: c.sh("web1", "ufw reload >/dev/null")),
    Drift("ufw-https-narrowed", ("NET-UFW-ALLOW-HTTPS",),
          f"web1: 443/tcp allowed from {WIDE} only, not from anywhere",
          *_narrowed("web1", 443)),
)
