"""The host itself: can the suite reach it (and use sudo where the inventory says so)."""

from __future__ import annotations

from audit.facts import probe


@probe()
def reach(session, host) -> str:
    """The login name the audit uses on the host, once it answered (SSH, sudo where declared)."""
    return session.access.reach(host)
