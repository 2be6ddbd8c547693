"""Guide: Scaling > Horizontal Scaling - the app instances that run, the Compose replica count and
NGINX's upstream agree with the number the inventory declares (`audit_app_instances`, default 3
as in the guide). What is read, and how: audit/probes/scaling.py.
"""

from __future__ import annotations

import pytest


@pytest.mark.requirement("SCALE-INSTANCES-MATCH-UPSTREAM")
def check_instances_replicas_and_upstream_agree(judge, scaling):
    """"Scale application instances: docker-compose -f docker-compose.prod.yml up -d --scale
    pynomaly-app=5" / "Update NGINX upstream configuration": running instances, the Compose
    replica count and the upstream servers all equal the declared count."""
    declared = int(scaling.declared or judge.expected)
    judge.each(scaling.counts, lambda n: n == declared, what="app instances (running, declared, routed to)",
               expected=declared)
