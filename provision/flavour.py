"""Which deployment `python -m provision` works on: `reference` (the default) or `fleet`.

`reference` is the original deployment (init scripts, root SSH, ufw everywhere, app containers in
web1's network namespace); `fleet` is provision/fleet/ (systemd hosts, a sudo-only audit account,
an iptables host, the app run by Compose on its own host). The CLI sets the flavour once, before
anything reads it; the reference code paths never look at it.
"""

from __future__ import annotations

FLAVOURS = ("reference", "fleet")
DEFAULT = "reference"

_current = DEFAULT


def current() -> str:
    return _current


def select(name: str) -> None:
    global _current
    if name not in FLAVOURS:
        raise ValueError(f"unknown flavour {name!r} (known: {', '.join(FLAVOURS)})")
    _current = name
