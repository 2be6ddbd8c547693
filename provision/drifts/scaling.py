"""Scaling drifts (guide: Scaling > Horizontal Scaling): each breaks exactly the requirements it
names. (`app-replica-stopped` in app.py stops an instance; this one changes the declared count.)"""

from __future__ import annotations

from . import Drift, edit_file

COMPOSE_FILE = "/opt/pynomaly/docker-compose.prod.yml"

DRIFTS: tuple[Drift, ...] = (
    Drift("compose-replicas-2", ("SCALE-INSTANCES-MATCH-UPSTREAM", "APP-COMPOSE-REPLICAS"),
          f"web1: {COMPOSE_FILE} declares replicas: 2 while 3 instances run behind 3 upstream servers",
          *edit_file("web1", COMPOSE_FILE, "'s/replicas: 3$/replicas: 2/'", "true", "compose-replicas")),
)
