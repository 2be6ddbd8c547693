"""The reference deployment, stood up once per test session (reused when already running)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by these markers
def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in item.nodeid:
            item.add_marker(pytest.mark.integration)
            if on_fleet(item):  # scripts/test.sh: `-m fleet` beside `-m "not fleet"`, each its own deployment
                item.add_marker(pytest.mark.fleet)


def on_fleet(item) -> bool:
    """Whether a test works on the fleet flavour: it asks for the fleet, or a parameter names it."""
    if "fleet_deployment" in getattr(item, "fixturenames", ()):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(v == "fleet" or getattr(v, "flavour", None) == "fleet" for v in params.values())


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
