"""`python -m provision scale N` scales the app out and back in, and the scaling checks follow the
count the inventory declares (`audit_app_instances`): 4 running + declared 4 -> green; declared 3
-> SCALE red; back to 3 -> green. Runs under the drift lock (no drift experiment meanwhile)."""

from __future__ import annotations

from provision import drifts, scale
from provision.topology import app_count
from tests.integration.audit_runner import LOCAL_INVENTORY, inventory_variant, run_audit

CHECKS = ("checks/scaling.py", "checks/architecture.py", "-k",
          "instances_replicas or several_app_instances or traffic_reaches")
SCALE_ID = "SCALE-INSTANCES-MATCH-UPSTREAM"


def test_scale_out_to_four_and_back(deployment, tmp_path):
    four = inventory_variant(tmp_path, audit_app_instances=4)
    with drifts.lock():
        try:
            scale.scale(4)
            assert app_count() == 4
            declared_four = run_audit(four, tmp_path / "declared-4", *CHECKS)
            declared_three = run_audit(LOCAL_INVENTORY, tmp_path / "declared-3", *CHECKS)
        finally:
            scale.scale(3)
        back = run_audit(LOCAL_INVENTORY, tmp_path / "back-to-3", *CHECKS)
    assert declared_four.exit_code == 0, declared_four.explain()
    assert len(declared_four.tests) == 3, declared_four.explain()
    assert declared_three.red_requirements() == {SCALE_ID}, declared_three.explain()
    assert back.exit_code == 0, back.explain()
    assert app_count() == 3
