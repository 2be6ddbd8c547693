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
    from provision import deploy, drifts

    with drifts.lock():  # not while another process runs a drift experiment
        deploy.up()
    return deploy
