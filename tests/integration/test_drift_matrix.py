"""The drift matrix: the healthy reference deployment is green (apart from documented waivers),
and every drift turns exactly its requirements red, and nothing else, then heals.

Each drift is audited with the check modules that declare its requirements (the rest of the
deployment is unchanged, so auditing it again proves nothing and costs minutes). The healthy
full audit runs first and last, which also proves that `heal` restores everything.
"""

from __future__ import annotations

import pytest

from audit.catalogue import load_catalogue
from audit.matrix import declared_requirements
from provision import drifts
from tests.integration.audit_runner import run_audit

DRIFTS = {d.name: d for d in drifts.REGISTRY}
CHECKS = declared_requirements()


def modules_for(req_ids) -> list[str]:
    owners = {owner.split("::")[0] for r in req_ids for owner in CHECKS.get(r, ())}
    return sorted(f"checks/{m}.py" for m in owners)


def test_healthy_deployment_is_green(deployment, tmp_path):
    run = run_audit("local", tmp_path, "-n", "2")
    assert run.exit_code == 0, run.explain()
    not_green = {n: t for n, t in run.tests.items() if t["outcome"] in ("failed", "error")}
    assert not not_green, run.explain()
    skipped = run.by_outcome("skipped")
    assert all("waived:" in t.get("reason", "") or "absent from inventory" in t.get("reason", "")
               for t in skipped.values()), skipped


@pytest.mark.parametrize("name", sorted(DRIFTS))
def test_drift_turns_exactly_its_requirements_red(deployment, tmp_path, name):
    drift = DRIFTS[name]
    catalogue = load_catalogue()
    assert set(drift.requirements) <= set(catalogue.by_id), f"{name} names unknown ids"
    if drift.opt_in:
        pytest.skip(f"{name}: only `-m {drift.opt_in}` checks see it; proved by its own integration test")
    unchecked = [r for r in drift.requirements if r not in CHECKS]
    if unchecked:
        pytest.skip(f"{name}: no check declares {', '.join(unchecked)} yet")
    with drifts.applied(name):
        run = run_audit("local", tmp_path, *modules_for(drift.requirements))
    red = run.red_requirements()
    assert run.exit_code == 1, run.explain()
    assert red == set(drift.requirements), (
        f"{name}: expected red {sorted(drift.requirements)}, got {sorted(red)}\n{run.explain()}")
    errors = run.by_outcome("error")
    assert not errors, f"{name}: a drift must show as non-compliance, not as could-not-audit\n{run.explain()}"


def test_mutation_score(capsys):
    """Requirements with a drift that the matrix proves / all catalogued (automatable) ones."""
    catalogue = load_catalogue()
    automatable = [r.id for r in catalogue.requirements if r.automatable]
    drifted = {r for d in drifts.REGISTRY for r in d.requirements if r in CHECKS}
    missing = sorted(set(automatable) - drifted)
    with capsys.disabled():
        print(f"\nmutation score: {len(drifted)}/{len(automatable)} automatable requirements have a drift "
              f"that is caught; without a drift: {len(missing)}")
        print("  " + " ".join(missing))
    assert drifted


def test_deployment_is_green_again_after_all_drifts(deployment, tmp_path):
    """Every drift was healed: the full audit is as green as at the start."""
    run = run_audit("local", tmp_path, "-n", "2")
    assert run.exit_code == 0, run.explain()
