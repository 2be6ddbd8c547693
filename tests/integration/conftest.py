"""The reference deployment, stood up once per test session (reused when already running)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in item.nodeid:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def deployment():
    """`python -m provision up` (idempotent: seconds when already up). Not torn down: a later
    session reuses it; `python -m provision down` removes it."""
    from provision import deploy
    from tests.integration.flavours import REFERENCE

    REFERENCE.up()  # under the drift lock: not while another process runs a drift experiment
    return deploy


@pytest.fixture(scope="session")
def fleet_deployment():
    """`python -m provision --flavour fleet up`: the second flavour (systemd hosts, a sudo-only
    audit account, an iptables host, Compose on an app host of its own)."""
    from tests.integration.flavours import FLEET

    FLEET.up()
    return FLEET
