"""Marker helpers for checks."""

from __future__ import annotations

import pytest


def per_requirement(*req_ids: str, argname: str = "req_id"):
    """Parametrize one check body over several requirements, each case marked with its own id."""
    return pytest.mark.parametrize(
        argname, [pytest.param(r, marks=pytest.mark.requirement(r), id=r) for r in req_ids])
