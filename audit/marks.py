"""Marker helpers for checks."""

from __future__ import annotations

import pytest


def per_requirement_on(roles: dict[str, str | tuple[str, ...]]):
    """One check body for several requirements, each judged on the hosts of its own role(s):
    {"BAK-DB-SCRIPT": "backup_db", "BAK-APP-SCRIPT": "backup_app"}. The plugin parametrizes
    (req_id, server) with ids HOST-REQ-ID; a role with no host is could-not-audit as usual."""
    return pytest.mark.requirement_roles({r: (v,) if isinstance(v, str) else tuple(v) for r, v in roles.items()})


def per_requirement(*req_ids: str, argname: str = "req_id"):
    """Parametrize one check body over several requirements, each case marked with its own id."""
    return pytest.mark.parametrize(
        argname, [pytest.param(r, marks=pytest.mark.requirement(r), id=r) for r in req_ids])
