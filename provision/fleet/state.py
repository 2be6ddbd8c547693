"""The fleet's state folder `.state-fleet/`: the same layout as `.state/` (docs/contracts.md), with
the audit account's key instead of root's (provision itself enters the hosts with docker exec)."""

from __future__ import annotations

from ..state import ROOT, State
from .topology import AUDIT_USER, HOSTS

STATE_DIR = ROOT / ".state-fleet"


class FleetState(State):
    hosts = HOSTS
    ssh_user = AUDIT_USER
    key_comment = f"{AUDIT_USER}@pynomaly-fleet"
    control_path = "/tmp/pynomaly-fleet-ssh-%C"

    def __init__(self, root=STATE_DIR):
        super().__init__(root)

    def _write_known_hosts(self) -> None:
        lines = []
        for h in self.hosts:
            pub = self.host_key_path(h.name).with_suffix(".pub").read_text().split()
            lines.append(f"[{h.public_ip}]:22,{h.public_ip} {pub[0]} {pub[1]}")
        self.known_hosts.write_text("\n".join(lines) + "\n")
