"""Guide: Scaling > Horizontal Scaling - the app instances that run, the compose replica count
and NGINX's upstream agree with the number the inventory declares (`audit_app_instances`,
default 3 as in the guide).

Reads: the Docker engine's app containers (once), docker-compose.prod.yml on the app host and
the effective NGINX configuration on the web host (the shared `nginx` collect group, crossplane).
"""

from __future__ import annotations

import pytest
import yaml

from audit import nginx, services
from audit.evidence import attach, compare, mask_assignments

COMPOSE_FILE = "/opt/pynomaly/docker-compose.prod.yml"
SERVICE = "pynomaly-app"
UPSTREAM = "pynomaly_backend"


# ---------------------------------------------------------------- parsing (unit-tested)

def compose_replicas(text: str, service: str = SERVICE) -> int | None:
    doc = yaml.safe_load(text or "") or {}
    svc = (doc.get("services") or {}).get(service) or {}
    replicas = (svc.get("deploy") or {}).get("replicas", 1 if svc else None)
    return int(replicas) if replicas is not None else None


def upstream_servers(config: nginx.NginxConfig, name: str = UPSTREAM) -> list[str]:
    """Addresses of the upstream's servers, `backup`/`down` ones left out."""
    block = config.upstream(name)
    if block is None:
        return []
    return [d.args[0] for d in block.find("server") if not {"backup", "down"} & set(d.args[1:])]


def disagreements(declared: int, counts: dict[str, int | None]) -> dict[str, int | None]:
    return {k: v for k, v in counts.items() if v != declared}


# ---------------------------------------------------------------- the check

@pytest.mark.requirement("SCALE-INSTANCES-MATCH-UPSTREAM")
def test_instances_replicas_and_upstream_agree(inventory, expected, audit_context):
    """"Scale application instances: docker-compose -f docker-compose.prod.yml up -d --scale
    pynomaly-app=5" / "Update NGINX upstream configuration": running instances, the compose
    replica count and the upstream servers all equal the declared count."""
    declared = int(inventory.setting("audit_app_instances") or expected("SCALE-INSTANCES-MATCH-UPSTREAM"))
    client = services.docker_client(inventory)
    running = [c for c in services.app_containers(client) if c.status == "running"]
    counts: dict[str, int | None] = {"running instances": len(running)}
    evidence: dict[str, object] = {"running instances": [c.name for c in running]}
    for host in inventory.hosts_with_role("app"):
        srv = audit_context.server(host.name)
        text = srv.collect("scaling", {"compose": f"cat {COMPOSE_FILE} 2>/dev/null; true"})["compose"]
        attach(f"{host.name}: docker-compose.prod.yml", mask_assignments(text) or "(missing)")
        counts[f"{host.name}: compose replicas"] = compose_replicas(text)
    for host in inventory.hosts_with_role("web"):
        servers = upstream_servers(nginx.effective_config(audit_context.server(host.name)))
        evidence[f"{host.name}: upstream {UPSTREAM}"] = servers
        counts[f"{host.name}: upstream servers"] = len(servers)
    attach("what runs and what routes", evidence, kind="json")
    compare("instances", counts, declared)
    bad = disagreements(declared, counts)
    assert not bad, f"declared {declared} app instances, but {bad}"
