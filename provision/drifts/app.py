"""Application runtime and env-file drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from ..topology import app_container_name
from . import ENV_FILE, Drift, edit_file

DRIFTS: tuple[Drift, ...] = (
    Drift("app-replica-stopped",
          ("SCALE-INSTANCES-MATCH-UPSTREAM", "CHK-SERVICES-RUNNING", "MON-TARGETS-UP",
           "APP-CONTAINERS-HEALTHY", "APP-GUNICORN-BIND"),
          f"docker stop {app_container_name(3)} (port 8002; restart policy on-failure keeps it down)",
          lambda c: c.client.containers.get(app_container_name(3)).stop(timeout=20),
          lambda c: c.client.containers.get(app_container_name(3)).start()),
    Drift("env-debug-true", ("APP-ENV-DEBUG",),
          f"web1: DEBUG=true in {ENV_FILE}",
          *edit_file("web1", ENV_FILE, "'s/^DEBUG=false$/DEBUG=true/'", "true", "env-debug")),
)
