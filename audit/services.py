"""Session-scoped connections to the services a check reads besides SSH: PostgreSQL and Redis
(through the host's SSH tunnel, as the read-only audit identities), and the Docker engine that
runs the app instances (the inventory's `audit_docker_url`).

One connection per (host, service) per pytest process; every operation is bounded.
"""

from __future__ import annotations

import threading
from typing import Any

from audit.inventory import Inventory, resolve_secret
from audit.transport import HostUnreachable, Server

CONNECT_TIMEOUT = 5
_lock = threading.Lock()
_pg: dict[tuple[str, str], Any] = {}
_redis: dict[tuple[str, int, int], Any] = {}
_docker: dict[str, Any] = {}

AUDIT_ROLE = "pynomaly_audit"
DATABASE = "pynomaly_prod"


def postgres(server: Server, inventory: Inventory, dbname: str = DATABASE):
    """A read-only psycopg connection to PostgreSQL on `server` (port 5432 seen from the host),
    as the audit role `pynomaly_audit` (secret `db_audit_password`), autocommit."""
    import psycopg

    from audit.evidence import register_secret

    key = (server.name, dbname)
    with _lock:
        conn = _pg.get(key)
        if conn is not None and not conn.closed:
            return conn
    address, port = server.forward(5432)
    password = resolve_secret(inventory, "db_audit_password")
    register_secret(password)
    try:
        conn = psycopg.connect(host=address, port=port, user=AUDIT_ROLE, password=password,
                               dbname=dbname, connect_timeout=CONNECT_TIMEOUT, autocommit=True,
                               options="-c statement_timeout=20000 -c default_transaction_read_only=on")
    except psycopg.OperationalError as exc:
        raise HostUnreachable(f"{server.name}: PostgreSQL login as {AUDIT_ROLE} failed: {exc}") from None
    with _lock:
        _pg[key] = conn
    return conn


def query(conn, sql: str, params: tuple = ()) -> list[dict]:
    """Rows of a read-only query as dicts."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def redis(server: Server, inventory: Inventory, port: int = 6379, db: int = 0):
    """A redis-py client for Redis on `server` (port seen from the host), secret `redis_password`."""
    import redis as redis_py
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from audit.evidence import register_secret

    key = (server.name, port, db)
    with _lock:
        if key in _redis:
            return _redis[key]
    address, local_port = server.forward(port)
    password = resolve_secret(inventory, "redis_password")
    register_secret(password)
    client = redis_py.Redis(host=address, port=local_port, db=db, password=password,
                            socket_timeout=10, socket_connect_timeout=CONNECT_TIMEOUT,
                            decode_responses=True, retry=Retry(NoBackoff(), 0))  # report at once, no retries
    with _lock:
        _redis[key] = client
    return client


def docker_client(inventory: Inventory):
    """The Docker engine that runs the app instances (`audit_docker_url`), or HostUnreachable."""
    import docker

    url = inventory.setting("audit_docker_url")
    if not url:
        raise HostUnreachable("the inventory names no Docker engine (audit_docker_url)")
    with _lock:
        if url in _docker:
            return _docker[url]
    try:
        kwargs = {"use_ssh_client": True} if url.startswith("ssh://") else {}
        client = docker.DockerClient(base_url=url, timeout=30, **kwargs)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any engine failure means: could not audit
        raise HostUnreachable(f"Docker engine {url}: {exc}") from None
    with _lock:
        _docker[url] = client
    return client


APP_SERVICE_LABEL = "com.docker.compose.service"
APP_SERVICE = "pynomaly-app"


def app_containers(client, all_states: bool = False) -> list:
    """The app instances (Compose service pynomaly-app), by container number."""
    found = client.containers.list(all=all_states, filters={"label": f"{APP_SERVICE_LABEL}={APP_SERVICE}"})
    return sorted(found, key=lambda c: (int(c.labels.get("com.docker.compose.container-number", 0) or 0),
                                        c.name))


def forget_postgres(server: Server, dbname: str = DATABASE) -> None:
    """Drop a broken connection so that the next check reconnects."""
    with _lock:
        conn = _pg.pop((server.name, dbname), None)
    if conn is not None:
        conn.close()
