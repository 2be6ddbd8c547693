"""What the drifts need of the fleet that the reference does differently: the app's replicas are
docker-compose's, on app1's own Docker engine (provision/drifts/app.py, architecture.py)."""

from __future__ import annotations

import time

from ..ui import ProvisionError
from .topology import app_container_name


def replica_name(n: int) -> str:
    return app_container_name(n)


def app_replica(ctx, n: int, action: str, seconds: int = 90) -> None:
    """docker stop|start replica ``n`` on app1; a start waits until it answers /health on the port
    Docker gave it (one of 8000-8002)."""
    name = replica_name(n)
    if action == "stop":
        ctx.sh("app1", f"docker stop -t 20 {name} >/dev/null")
        return
    ctx.sh("app1", f"docker start {name} >/dev/null")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probe = (f"p=$(docker port {name} 8000/tcp | head -1) && curl -fsS -o /dev/null --max-time 3 "
                 f"http://127.0.0.1:${{p##*:}}/health && echo ok || echo no")
        if ctx.sh("app1", probe).strip().endswith("ok"):
            return
        time.sleep(1)
    raise ProvisionError(f"app1: {name} did not answer /health within {seconds}s")
