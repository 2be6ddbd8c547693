"""`audit_settings`: the suite's per-host settings, typed, with the one set of defaults.

An inventory sets them in `all.vars`, a group's vars or a host's vars; unlike other Ansible
variables (a host's dict replaces its group's), they are merged key by key, the most specific
level winning, so that a host can add one setting without repeating its group's. Validated with
the inventory: an unknown key or a wrong type stops the run naming the file and the field.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit import guide


class AuditSettings(BaseModel):
    """Every key `audit_settings` may hold, with its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment_network: str | None = Field(
        default=None, description="CIDR of the deployment's own network: the 'internal only' sources of "
                                  "the firewall rules (e.g. 10.0.0.0/16)")
    exposure_vantage: Literal["runner"] = Field(
        default="runner", description="where the outside probes of internal-only ports come from")
    internal_probe_from: str | None = Field(
        default=None, description="host that probes the internal-only ports from inside (default: the "
                                  "first `app` host)")
    internal_address: str | None = Field(
        default=None, description="the address other hosts use to reach this host (default: its name)")
    outside_address: str | None = Field(
        default=None, description="the address at which the world reaches this host, where that is not its "
                                  "SSH address (a lab that publishes only some ports on loopback): the "
                                  "runner probes its other listening ports there (default: its address)")
    alembic_head: str | None = Field(default=None, description="the application's head revision (db_primary)")
    redis_cluster_ports: tuple[int, ...] = Field(
        default=guide.CLUSTER_PORTS, description="ports of this host's Redis Cluster nodes (redis_cluster)")
    app_runtime: Literal["docker", "compose", "gunicorn"] = Field(
        default="docker", description="how an app host runs the app: containers on audit_docker_url "
                                      "(docker), Compose on the host itself (compose), or Gunicorn directly")
    static_file: str = Field(default="/static/app.css", description="a static file NGINX serves")
    grafana_dashboard_file: str = Field(default=guide.GRAFANA_DASHBOARD,
                                        description="the dashboard JSON when no Grafana API is declared")

    @field_validator("deployment_network")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_network(value, strict=False)
        return value

    @field_validator("redis_cluster_ports", mode="before")
    @classmethod
    def _ports(cls, value):
        return tuple(value) if isinstance(value, list) else value


DEFAULTS = AuditSettings()


def required(value, key: str, host: str | None = None):
    """`value`, or could-not-audit naming the inventory setting a check needs and the way out."""
    from audit.outcomes import CouldNotAudit

    if value is None or value == "" or value == ():
        raise CouldNotAudit(host, f"inventory setting {key}",
                            "not set: add it to the inventory, or declare the requirement not applicable "
                            "(audit_not_applicable) with the reason")
    return value
