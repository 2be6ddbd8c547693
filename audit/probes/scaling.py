"""Scaling > Horizontal Scaling: how many app instances run, how many the Compose file declares
and how many servers NGINX's upstream routes to, for the deployment as a whole.

Reads other probes' facts, nothing of its own: the app containers and each app host's facts
(audit/probes/app.py: a Gunicorn host counts its Gunicorn masters, a docker/compose host its
Compose replicas) and the effective NGINX configuration of every web host (audit/probes/nginx.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.facts import probe

UPSTREAM = "pynomaly_backend"


def compose_replicas(compose) -> int | None:
    """The replicas a Compose service runs (deploy.replicas, Compose's default 1 when unset);
    None without the file or the service."""
    if compose is None or compose.problem:
        return None
    return int(compose.replicas) if compose.replicas is not None else 1


def upstream_servers(config, name: str = UPSTREAM) -> list[str]:
    """Addresses of the upstream's servers in an NginxConfig, `backup`/`down` ones left out."""
    block = config.upstream(name)
    if block is None:
        return []
    return [d.args[0] for d in block.find("server") if not {"backup", "down"} & set(d.args[1:])]


@dataclass(frozen=True)
class ScalingFacts:
    declared: int | None          # the inventory's audit_app_instances
    counts: dict[str, int | None]  # what runs, what the Compose files declare, what each upstream routes to
    seen: dict[str, list[str]]    # the instances and upstream servers counted


@probe(per_host=False)
def scaling(session) -> ScalingFacts:
    """Running app instances, Compose replicas of each app host, upstream servers of each web host."""
    inventory, facts = session.inventory, session.facts
    counts, seen = {}, {}
    apps = inventory.hosts_with_role("app")
    if any(h.settings.app_runtime != "gunicorn" for h in apps):
        running = [c.name for c in facts.get("app_containers").containers if c.status == "running"]
        counts["running instances"], seen["running instances"] = len(running), running
    for host in apps:
        app = facts.get("app", host.name)
        if host.settings.app_runtime == "gunicorn":
            masters = app.masters()
            counts[f"{host.name}: Gunicorn masters"], seen[f"{host.name}: Gunicorn masters"] = \
                len(masters), [f"pid {m.pid}" for m in masters]
        else:
            counts[f"{host.name}: compose replicas"] = compose_replicas(app.compose)
    for host in inventory.hosts_with_role("web"):
        servers = upstream_servers(facts.get("nginx", host.name).config)
        counts[f"{host.name}: upstream servers"], seen[f"{host.name}: upstream {UPSTREAM}"] = len(servers), servers
    return ScalingFacts(inventory.setting("audit_app_instances"), counts, seen)
