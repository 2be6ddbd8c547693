"""Monitoring Checklist drifts (host parts): each breaks exactly the requirements it names."""

from __future__ import annotations

from . import BACKUPS, Drift

ATTACKER = "203.0.113.9"  # TEST-NET-3: never a real peer
FAILED = f"Failed password for root from {ATTACKER} port 2222 ssh2"


def _failed_logins(host: str, count: int = 5) -> tuple:
    """`count` failed SSH logins from one source, logged through syslog like sshd logs them; heal
    restores auth.log exactly and lifts fail2ban's ban of that source."""
    keep = f"{BACKUPS}/auth.log"

    def apply(c) -> None:
        c.sh(host, f"mkdir -p {BACKUPS} && cp -p /var/log/auth.log {keep} && for i in $(seq {count}); do "
                   f"logger -p auth.info -t 'sshd[4242]' '{FAILED}'; done && sleep 1 && "
                   f"grep -c '{ATTACKER}' /var/log/auth.log")

    def heal(c) -> None:
        c.sh(host, f"cat {keep} > /var/log/auth.log && touch -r {keep} /var/log/auth.log && rm -f {keep}; "
                   f"fail2ban-client set sshd unbanip {ATTACKER} >/dev/null 2>&1 || true")

    return apply, heal


# A lossy link without netem (this kernel has no sch_netem): the host drops every other SYN to
# its SSH port, so each new connection waits for the client's SYN retransmission (about 1 s).
LOSSY_SYN = "INPUT -p tcp --dport 22 --syn -m statistic --mode nth --every 2 --packet 0 -j DROP"

DRIFTS: tuple[Drift, ...] = (
    Drift("network-latency-1s", ("CHK-NETWORK-LATENCY",),
          "db2: every other SYN to port 22 dropped (each new connection waits ~1 s for a retransmission)",
          lambda c: c.sh("db2", f"iptables -I {LOSSY_SYN}"),
          lambda c: c.sh("db2", f"while iptables -D {LOSSY_SYN} 2>/dev/null; do :; done")),
    Drift("disk-nearly-full", ("CHK-DISK-USAGE",),
          "cache2: /dev/shm (a 256 MB tmpfs) filled to 90%",
          lambda c: c.sh("cache2", "dd if=/dev/zero of=/dev/shm/pynomaly-drift bs=1M count=231 2>/dev/null"),
          lambda c: c.sh("cache2", "rm -f /dev/shm/pynomaly-drift")),
    Drift("failed-ssh-logins", ("CHK-FAILED-LOGINS",),
          f"cache3: 5 failed SSH logins from {ATTACKER} in auth.log (threshold: 3 within 600 s)",
          *_failed_logins("cache3")),
)
