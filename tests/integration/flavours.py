"""The two flavours of the reference deployment, as the integration tests drive them: which
inventory audits each, and how to stand it up (provision/flavour.py selects the flavour that
`provision.drifts` applies drifts to)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from provision import drifts, flavour


@dataclass(frozen=True)
class Flavour:
    name: str
    inventory: str          # inventories/<inventory>.yml
    state: str              # the state folder (secrets, keys) below the repo root

    @contextlib.contextmanager
    def selected(self):
        with flavour.using(self.name):
            yield

    def up(self) -> None:
        """`python -m provision [--flavour fleet] up` (idempotent: seconds when already up)."""
        with self.selected(), drifts.lock():
            flavour.deploy_module(self.name).up()

    @contextlib.contextmanager
    def opt_in_sudo(self, markers: frozenset[str] | set[str]):
        """The opt-in checks' sudo rules granted for a block, as an operator grants them for
        their run (README, "What the audit account must be granted"), then the default rules
        again. Only the fleet's audit account uses sudo; on the reference (root) a no-op."""
        if self.name != "fleet" or not markers:
            yield
            return
        from provision import docker_engine
        from provision.fleet import setup

        client = docker_engine.client_or_none()
        setup.sudoers(client, frozenset(markers))
        try:
            yield
        finally:
            setup.sudoers(client)

    def recreate(self) -> None:
        with self.selected():
            deploy = flavour.deploy_module(self.name)
            deploy.down()
            deploy.up()


REFERENCE = Flavour("reference", "local", ".state")
FLEET = Flavour("fleet", "fleet", ".state-fleet")
FLAVOURS = {f.name: f for f in (REFERENCE, FLEET)}
