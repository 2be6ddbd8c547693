"""Requirements that no drift of the reference deployment can break safely, proven able to fail by
raising what the inventory expects (`audit_expected`): the machine's own cores, memory, disk and
network link, the versions Debian 12 ships, and the database the app itself runs on. Each check
then reads the same running hosts and must turn red, naming what it found; the healthy audit (the
drift matrix's first and last) proves the other direction. test_drift_matrix.py's mutation score
counts these as proven."""

from __future__ import annotations

import pytest

from audit.outcomes import NON_COMPLIANT
from tests.integration.audit_runner import inventory_variant, run_audit

pytestmark = pytest.mark.integration

# requirement -> an expectation the reference deployment cannot meet (the guide's, raised)
RAISED = {
    "PRE-MEMORY-MIN": 4096,  # GB
    "PRE-STORAGE-MIN": 10**6,  # GB
    "PRE-NETWORK": 10**7,  # Mb/s
    "PRE-DOCKER-VERSION": "99.0",
    "PRE-NGINX-VERSION": "9.0",
    "PRE-POSTGRES-VERSION": "99",
    "PRE-PYTHON-VERSION": "3.99",
    "PRE-REDIS-VERSION": "99.0",
    "CHK-MEMORY-USAGE": {"max_percent": 0},
    "PG-DATABASE-EXISTS": "pynomaly_missing",
}
SELECT = ["checks/prerequisites.py", "checks/values.py", "checks/checklist.py", "checks/postgres.py",
          "-k", "memory or storage_size or network_link or VERSION or database_exists"]


def test_raised_expectations_turn_exactly_their_requirements_red(deployment, tmp_path):
    run = run_audit(inventory_variant(tmp_path, audit_expected=RAISED), tmp_path / "out", *SELECT)
    assert run.exit_code == NON_COMPLIANT, run.explain()
    assert run.red_requirements() == set(RAISED), run.explain()
    assert "installed 3.11.2 (python3 --version); guide: 3.99" in run.stdout
    assert "includes pynomaly_missing" in run.stdout, run.explain()
