"""`python -m provision scale N`: scale the app out or in (guide: Scaling > Horizontal Scaling).

Instances pynomaly-app-1..N listen on 8000..8000+N-1 in web1's network namespace; NGINX's
upstream pynomaly_backend, Prometheus' pynomaly targets and the compose file's replica count
follow. The count is kept in .state/deployment.json (`app_instances`), so `up` keeps it.
"""

from __future__ import annotations

import base64
import re

from . import containers, docker_engine, health, setup
from .state import State
from .topology import app_count, app_ports
from .ui import ProvisionError, step

NGINX_CONF = "/etc/nginx/nginx.conf"
PROMETHEUS_YML = "/etc/prometheus/prometheus.yml"
COMPOSE_FILE = "/opt/pynomaly/docker-compose.prod.yml"
MAX_INSTANCES = 9


def nginx_upstream(text: str, ports: tuple[int, ...]) -> str:
    """nginx.conf with one `server 127.0.0.1:PORT ...;` per port in upstream pynomaly_backend
    (the parameters of the first server line are kept)."""
    block = re.search(r"(upstream\s+pynomaly_backend\s*\{)(.*?)(\})", text, re.S)
    if not block:
        raise ProvisionError("nginx.conf has no upstream pynomaly_backend")
    body = block.group(2)
    servers = list(re.finditer(r"^([ \t]*)server\s+[\w.\-]+:\d+([^;\n]*);[ \t]*\n", body, re.M))
    if not servers:
        raise ProvisionError("upstream pynomaly_backend has no server line")
    indent, params = servers[0].group(1), servers[0].group(2)
    lines = "".join(f"{indent}server 127.0.0.1:{p}{params};\n" for p in ports)
    new_body = body[:servers[0].start()] + lines + body[servers[-1].end():]
    return text[:block.start(2)] + new_body + text[block.end(2):]


def prometheus_targets(text: str, ports: tuple[int, ...]) -> str:
    """prometheus.yml with job pynomaly scraping localhost:PORT for every port."""
    targets = ", ".join(f"'localhost:{p}'" for p in ports)
    new, n = re.subn(r"(job_name:\s*'pynomaly'.*?targets:\s*)\[[^\]]*\]", rf"\g<1>[{targets}]", text,
                     count=1, flags=re.S)
    if not n:
        raise ProvisionError("prometheus.yml has no pynomaly job with static targets")
    return new


def compose_replicas(text: str, count: int) -> str:
    new, n = re.subn(r"(\n\s+replicas:\s*)\d+", rf"\g<1>{count}", text, count=1)
    if not n:
        raise ProvisionError("docker-compose.prod.yml has no deploy.replicas")
    return new


def _rewrite(web1, path: str, transform) -> bool:
    """Rewrite a file in place (owner and mode kept); True when it changed."""
    _, text = containers.run(web1, f"cat {path}")
    new = transform(text)
    if new == text:
        return False
    data = base64.b64encode(new.encode()).decode()
    containers.run(web1, f"echo {data} | base64 -d > {path}")
    return True


def configure(client, count: int) -> None:
    """Upstream, Prometheus targets and compose replicas for `count` instances (idempotent)."""
    web1 = client.containers.get("web1")
    ports = app_ports(count)
    if _rewrite(web1, NGINX_CONF, lambda t: nginx_upstream(t, ports)):
        step(f"web1: upstream pynomaly_backend -> {len(ports)} servers; nginx -t and reload")
        containers.run(web1, "nginx -t -q && service nginx reload >/dev/null")
    if _rewrite(web1, PROMETHEUS_YML, lambda t: prometheus_targets(t, ports)):
        step(f"web1: Prometheus job pynomaly -> {len(ports)} targets; reload")
        containers.run(web1, "kill -HUP $(cat /run/prometheus/prometheus.pid)")
    if _rewrite(web1, COMPOSE_FILE, lambda t: compose_replicas(t, count)):
        step(f"web1: {COMPOSE_FILE}: replicas {count}")


def scale(count: int) -> None:
    if not 1 <= count <= MAX_INSTANCES:
        raise ProvisionError(f"scale: 1..{MAX_INSTANCES} instances")
    client = docker_engine.client_or_none()
    st = State()
    record = st.load()
    if client is None or not record:
        raise ProvisionError("no deployment: run `python -m provision up` first")
    step(f"scaling the app from {app_count()} to {count} instances")
    record["app_instances"] = count
    st.save(record)
    if count > len(record.get("apps", [])):  # new instances first, then route to them
        setup.apps(client, st, record["images"]["app"])
        configure(client, count)
    else:  # stop routing first, then remove
        configure(client, count)
        setup.apps(client, st, record["images"]["app"])
    health.wait_healthy(client, st)
    from .deploy import _deployment_record

    new = _deployment_record(client, st, record["images"]["host"], record["images"]["app"])
    st.save(new)
    step(f"{count} instances on {', '.join(map(str, app_ports(count)))}")
