"""Which deployment `python -m provision` works on: `reference` (the default) or `fleet`.

`reference` is the original deployment (init scripts, root SSH, ufw everywhere, app containers in
web1's network namespace); `fleet` is provision/fleet/ (systemd hosts, a sudo-only audit account,
an iptables host, the app run by Compose on its own host). The CLI sets the flavour once, before
anything reads it; the reference code paths never look at it.
"""

from __future__ import annotations

import contextlib

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


@contextlib.contextmanager
def using(name: str):
    """The flavour `name` for the block (the suite's tests drive both flavours in one process)."""
    global _current
    before = _current
    select(name)
    try:
        yield
    finally:
        _current = before


def deploy_module(name: str | None = None):
    """provision.deploy or provision.fleet.deploy: up/down/status of the flavour."""
    if (name or _current) == "fleet":
        from .fleet import deploy
    else:
        from . import deploy
    return deploy
