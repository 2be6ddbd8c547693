"""The drift matrix's plan (tests/integration/test_drift_matrix.py): which drifts may share a batch,
and whose a red check is in a batch. No deployment needed: the plan is built from the registry."""

from __future__ import annotations

import dataclasses
import itertools

from provision import drifts
from tests.integration.audit_runner import AuditRun
from tests.integration.test_drift_matrix import BATCHES, Batch, claims_of, owners_of, verdict

GZIP = "checks/nginx.py::check_json_is_served_gzip_compressed"
LEAST_CONN = "checks/nginx.py::check_upstream_least_conn[web1]"  # a check of the same module


def test_no_batch_mixes_what_must_not_be_mixed():
    for batch in BATCHES:
        if len(batch.drifts) == 1:
            continue
        assert not any(d.alone for d in batch.drifts), batch.id
        for a, b in itertools.combinations(batch.drifts, 2):
            assert not set(a.touches) & set(b.touches), (a.name, b.name)
            assert not claims_of(a) & claims_of(b), (a.name, b.name)


def test_drifts_that_change_one_thing_never_share_a_batch():
    """The certificate and the newest backups: only the last drift written would be seen."""
    planned = {d.name for b in BATCHES for d in b.drifts}  # PYNOMALY_DRIFTS=ci leaves the ALONE ones out
    for group in ("certificate", "db-backups", "app-backups", "nginx-proxy-pass", "fleet-iptables"):
        names = [n for n in drifts.SHARED[group] if n in planned]
        homes = [b for name in names for b in BATCHES if name in {d.name for d in b.drifts}]
        assert len({id(b) for b in homes}) == len(names), group


def _run(tests: dict[str, tuple[str, str]]) -> AuditRun:
    return AuditRun(0, "", "", {n: {"outcome": o, "requirements": r} for n, (o, r) in tests.items()}, None)


def test_a_disturbed_check_is_the_disturbing_drifts_to_judge():
    health_503, least_conn = drifts.by_name("nginx-api-health-503"), drifts.by_name("nginx-no-least-conn")
    assert "NGINX-GZIP" in health_503.disturbs
    run = _run({GZIP: ("error", "NGINX-GZIP"), LEAST_CONN: ("failed", "NGINX-UPSTREAM-LEAST-CONN")})
    batch = Batch(drifts=[health_503, least_conn],
                  owners=set(owners_of(("APP-API-V1-HEALTH", "NGINX-UPSTREAM-LEAST-CONN"))))
    assert verdict(run, least_conn, batch) == []
    # without the declaration the gzip check's error would count against nginx-no-least-conn
    undeclared = dataclasses.replace(health_503, disturbs=())
    problems = verdict(run, least_conn, Batch(drifts=[undeclared, least_conn]))
    assert len(problems) == 2
    assert "got ['NGINX-GZIP', 'NGINX-UPSTREAM-LEAST-CONN']" in problems[0]
