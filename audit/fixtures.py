"""The fixtures checks use (registered by AuditSession when an inventory is given):

- `server`: the inventory host a check runs on (parametrized by the plugin over its roles);
  could-not-audit when it cannot be reached, or when no host plays the role;
- `judge`: the comparison helper bound to the check (audit/judge.py);
- one fixture per probe (audit/probes/): the facts of that probe on the check's host, or of the
  deployment as a whole;
- `inventory`, `audit_session`: for the few checks that need the deployment's settings.
"""

from __future__ import annotations

import types
from typing import Any

import allure
import pytest

from audit.facts import REGISTRY
from audit.inventory import Host, Inventory
from audit.judge import Judge
from audit.outcomes import CouldNotAudit


def _session(config: pytest.Config):
    return config.pluginmanager.get_plugin("audit-session")


@pytest.fixture(scope="session")
def audit_session(pytestconfig: pytest.Config):
    return _session(pytestconfig)


@pytest.fixture(scope="session")
def inventory(audit_session) -> Inventory:
    return audit_session.inventory


@pytest.fixture(scope="module")  # a host's facts are set up once per check module, not once per check
def server(request: pytest.FixtureRequest, audit_session) -> Host:
    """The host under audit (an inventory Host); could-not-audit when it cannot be reached."""
    name = request.param
    if name not in audit_session.inventory.hosts:  # the "no-host" parameter: a role with no host
        raise CouldNotAudit(None, f"inventory {audit_session.inventory.name}",
                            f"{name}: add the hosts, or declare the requirement in audit_not_applicable "
                            "with the reason")
    audit_session.facts.get("reach", name)
    return audit_session.inventory.hosts[name]


@pytest.fixture(scope="session")
def judge() -> Judge | None:
    """The comparison helper bound to the check (audit/judge.py): its host, requirements and
    expected values. The plugin binds it to each check as the check is called (see
    AuditSession.pytest_pyfunc_call): a fixture per check would cost every check a fixture set-up
    and an Allure container of its own, the largest share of the audit's per-check cost."""
    return None


def judge_for(item: pytest.Item, audit_session) -> Judge:
    from audit.session import item_host, requirement_ids

    def expected_of(req_id: str) -> Any:
        value = audit_session.expected(req_id)
        guide_value = audit_session.catalogue[req_id].expected
        if value != guide_value:
            allure.dynamic.parameter(f"expected {req_id}", f"{value!r} (inventory override; guide: {guide_value!r})")
            audit_session.overrides_used[req_id] = value
        return value

    return Judge(item_host(item), requirement_ids(item), expected_of,
                 lambda key, value: item.user_properties.append((key, value)))


def probe_fixtures() -> types.ModuleType:
    """A plugin module with one fixture per registered probe: `def check(server, nginx)` gets the
    facts of the probe `nginx` on that server (deployment-wide probes take no server)."""
    module = types.ModuleType("audit.probe_fixtures")
    for name, p in REGISTRY.items():
        if p.per_host:
            def per_host(audit_session, server, _name=name):
                return audit_session.facts.get(_name, server.name)
            func = per_host
        else:
            def deployment(audit_session, _name=name):
                return audit_session.facts.get(_name)
            func = deployment
        func.__name__ = name
        func.__doc__ = (p.gather.__doc__ or "").strip().split("\n")[0]
        setattr(module, name, pytest.fixture(name=name, scope="module")(func))
    module.__file__ = __file__
    return module
