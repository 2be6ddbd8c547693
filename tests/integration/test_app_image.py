"""The app image against a throwaway PostgreSQL 15 and Redis, as the reference runs it.

A "pod" container owns one network namespace (ports 8000-8002 published on
127.0.0.1 only); PostgreSQL, Redis and three app instances join it, like the
three instances sharing web1's namespace. Every container started here is removed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from provision.app import build_image  # noqa: E402

docker = pytest.importorskip("docker")

pytestmark = pytest.mark.integration

TEST_BASE = "pynomaly-ref/app-test-base:latest"
SERVICES_REPO = "pynomaly-ref/app-test-services"
PORTS = (8000, 8001, 8002)
DB_PASSWORD = "db-" + uuid.uuid4().hex[:12]
REDIS_PASSWORD = "redis-" + uuid.uuid4().hex[:12]
JWT_SECRET = "jwt-" + uuid.uuid4().hex
USERNAME, PASSWORD = "admin@pynomaly.test", "pw-" + uuid.uuid4().hex[:12]
GUIDE_INDEXES = {
    "idx_users_email": "(email)",
    "idx_users_created_at": "(created_at)",
    "idx_audit_logs_user_id": "(user_id)",
    "idx_audit_logs_timestamp": '("timestamp")',
    "idx_api_keys_user_id": "(user_id)",
    "idx_api_keys_key_hash": "(key_hash)",
    "idx_users_active": "(id) WHERE (is_active = true)",
    "idx_api_keys_active": "(id) WHERE (is_active = true)",
    "idx_audit_logs_user_timestamp": '(user_id, "timestamp")',
    "idx_users_email_active": "(email, is_active)",
}

SERVICES_DOCKERFILE = """ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
    postgresql-15 redis-server && rm -rf /var/lib/apt/lists/*
"""

PG_START = f"""set -e
PG=/usr/lib/postgresql/15/bin
mkdir -p /var/run/postgresql && chown postgres /var/run/postgresql
su postgres -c "$PG/postgres -c config_file=/etc/postgresql/15/main/postgresql.conf \\
  -c listen_addresses=127.0.0.1" &
for i in $(seq 120); do su postgres -c "$PG/pg_isready -q -h 127.0.0.1" && break; sleep 0.25; done
su postgres -c "psql -q -v ON_ERROR_STOP=1" <<'SQL'
CREATE USER pynomaly_user WITH ENCRYPTED PASSWORD '{DB_PASSWORD}';
CREATE DATABASE pynomaly_prod OWNER pynomaly_user;
SQL
echo PG-READY
wait
"""


def _client():
    """The engine, started by provision when none answers (as in CI); never a silent skip."""
    from provision import docker_engine

    return docker_engine.ensure_engine()


def _base_image(client) -> str:
    """PYNOMALY_APP_TEST_BASE, provision's base or host image, our test base, or a fresh mmdebstrap import."""
    candidates = [os.getenv("PYNOMALY_APP_TEST_BASE", "")]
    for repo in ("pynomaly-ref/base", "pynomaly-ref/host"):
        candidates += sorted(tag for image in client.images.list(name=repo) for tag in image.tags)
    candidates.append(TEST_BASE)
    for tag in filter(None, candidates):
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            continue
    if not shutil.which("mmdebstrap") or os.geteuid() != 0:
        pytest.skip("no Debian 12 base image and no mmdebstrap (as root) to make one")
    tar = Path("/tmp") / f"app-test-base-{uuid.uuid4().hex[:8]}.tar"
    try:
        subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--include=ca-certificates", "bookworm", str(tar)],
            check=True,
            capture_output=True,
        )
        subprocess.run(["docker", "import", str(tar), TEST_BASE], check=True, capture_output=True)
    finally:
        tar.unlink(missing_ok=True)
    return TEST_BASE


def _services_image(client, base: str) -> str:
    """PostgreSQL 15 + Redis from Debian on the base image (built once per base)."""
    digest = hashlib.sha256((client.images.get(base).id + SERVICES_DOCKERFILE).encode()).hexdigest()[:12]
    tag = f"{SERVICES_REPO}:{digest}"
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_dir = Path("/tmp") / f"app-test-services-{digest}"
        build_dir.mkdir(exist_ok=True)
        (build_dir / "Dockerfile").write_text(SERVICES_DOCKERFILE)
        client.images.build(path=str(build_dir), tag=tag, buildargs={"BASE_IMAGE": base}, rm=True, forcerm=True)
        shutil.rmtree(build_dir, ignore_errors=True)
    return tag


def _wait(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None


class AppStack:
    """Handles on the containers and the published URLs."""

    def __init__(self, client, label: str):
        self.client, self.label, self.containers = client, label, []
        self.urls: dict[int, str] = {}
        self.figures: dict[str, float | str] = {}

    def run(self, image: str, name: str, **kwargs):
        container = self.client.containers.run(
            image, name=f"{self.label}-{name}", detach=True, labels={"pynomaly-ref.app-test": self.label}, **kwargs
        )
        self.containers.append(container)
        return container

    def psql(self, sql: str) -> str:
        cmd = ["su", "postgres", "-c", f'psql -d pynomaly_prod -At -F "|" -c "{sql}"']
        code, out = self.pg.exec_run(cmd)
        assert code == 0, out.decode()
        return out.decode().strip()

    def app_exec(self, *cmd: str, env: dict | None = None) -> tuple[int, str]:
        code, out = self.apps[PORTS[0]].exec_run(list(cmd), environment=env or {})
        return code, out.decode()

    def metrics(self, port: int = PORTS[0]) -> str:
        return requests.get(self.urls[port] + "/metrics", timeout=5).text

    def cleanup(self):
        for container in reversed(self.containers):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)


@pytest.fixture(scope="module")
def app_stack():
    """Images built (or reused), PostgreSQL + Redis up, three app instances healthy."""
    client = _client()
    base = _base_image(client)
    services = _services_image(client, base)
    start = time.monotonic()
    tag = build_image(client, base, latest=False)
    dep = AppStack(client, f"pynomaly-apptest-{uuid.uuid4().hex[:8]}")
    dep.figures.update(base_image=base, app_image=tag, image_build_s=round(time.monotonic() - start, 1))
    try:
        pod = dep.run(
            base,
            "pod",
            entrypoint=["sleep"],
            command=["infinity"],
            ports={f"{port}/tcp": ("127.0.0.1", None) for port in PORTS},
        )
        netns = f"container:{pod.id}"
        dep.pg = dep.run(services, "pg", entrypoint=["bash", "-c"], command=[PG_START], network_mode=netns)
        dep.redis = dep.run(
            services,
            "redis",
            entrypoint=["redis-server"],
            command=["--bind", "127.0.0.1", "--port", "6379", "--requirepass", REDIS_PASSWORD, "--save", ""],
            network_mode=netns,
        )
        _wait(lambda: b"PG-READY" in dep.pg.logs(), 60, "PostgreSQL")
        pod.reload()
        for port in PORTS:
            host_port = pod.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
            dep.urls[port] = f"http://127.0.0.1:{host_port}"
        env = {
            "DATABASE_URL": f"postgresql://pynomaly_user:{DB_PASSWORD}@127.0.0.1:5432/pynomaly_prod",
            "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
            "JWT_SECRET": JWT_SECRET,
            "ENVIRONMENT": "production",
        }
        start = time.monotonic()
        with ThreadPoolExecutor(len(PORTS)) as pool:  # all three start together
            started = pool.map(
                lambda port: dep.run(tag, f"app-{port}", environment={**env, "PORT": str(port)}, network_mode=netns),
                PORTS,
            )
            dep.apps = dict(zip(PORTS, started, strict=True))
        for port in PORTS:
            _wait(lambda port=port: _status(dep.urls[port] + "/health") == 200, 90, f"instance {port} healthy")
        dep.figures["startup_s"] = round(time.monotonic() - start, 1)
        yield dep
    finally:
        print(f"\napp image test figures: {json.dumps(dep.figures)}")
        dep.cleanup()


@pytest.fixture(scope="module")
def token(app_stack) -> str:
    code, out = app_stack.app_exec(
        "python3", "-m", "src.pynomaly.seed", env={"APP_USERNAME": USERNAME, "APP_PASSWORD": PASSWORD}
    )
    assert code == 0, out
    response = requests.post(
        app_stack.urls[PORTS[0]] + "/api/v1/auth/login", json={"username": USERNAME, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    return body["access_token"]


def _b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_migrations_ran_once_and_created_tables_and_indexes(app_stack):
    logs = [app_stack.apps[port].logs().decode() for port in PORTS]
    assert sum(log.count("Running upgrade  -> 0001") for log in logs) == 1
    tables = app_stack.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
    assert {"users", "audit_logs", "api_keys", "alembic_version"} <= set(tables)
    columns = app_stack.psql(
        "SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = 'public'"
    ).split()
    for column in ("users.email", "users.hashed_password", "users.is_active", "users.created_at",
                   "audit_logs.user_id", "audit_logs.action", "audit_logs.timestamp",
                   "api_keys.user_id", "api_keys.key_hash", "api_keys.is_active", "api_keys.created_at"):  # fmt: skip
        assert column in columns
    rows = app_stack.psql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
    indexes = dict(line.split("|", 1) for line in rows.splitlines())
    app_stack.figures["indexes"] = sorted(indexes)
    for name, columns_and_predicate in GUIDE_INDEXES.items():
        assert indexes[name].endswith("USING btree " + columns_and_predicate), indexes.get(name)
    invalid = app_stack.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
    assert invalid == "0"  # CONCURRENTLY builds all finished


def test_migration_waits_for_the_advisory_lock(app_stack):
    create = "su postgres -c \"psql -q -c 'CREATE DATABASE locktest OWNER pynomaly_user'\""
    assert app_stack.pg.exec_run(["bash", "-c", create]).exit_code == 0
    hold = "su postgres -c \"psql -d locktest -c 'SELECT pg_advisory_lock(7242001), pg_sleep(5)'\""
    app_stack.pg.exec_run(["bash", "-c", hold], detach=True)
    held = "su postgres -c \"psql -d locktest -tAc \\\"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' " \
           "AND objid = 7242001 AND granted\\\"\""
    _wait(lambda: app_stack.pg.exec_run(["bash", "-c", held]).output.decode().strip() == "1", 10,
          "the holder to take the advisory lock")  # not a fixed sleep: a loaded machine starts psql slowly
    url = f"postgresql://pynomaly_user:{DB_PASSWORD}@127.0.0.1:5432/locktest"
    start = time.monotonic()
    code, out = app_stack.app_exec("python3", "-m", "alembic", "upgrade", "head", env={"DATABASE_URL": url})
    assert code == 0, out
    assert "waiting for the lock" in out
    assert "Running upgrade  -> 0001" in out
    assert time.monotonic() - start >= 2


def test_seed_is_idempotent(app_stack, token):
    env = {"APP_USERNAME": USERNAME, "APP_PASSWORD": PASSWORD}
    code, out = app_stack.app_exec("python3", "-m", "src.pynomaly.seed", env=env)
    assert (code, out.strip()) == (0, f"user {USERNAME}: unchanged")
    assert app_stack.psql(f"SELECT count(*) FROM users WHERE email = '{USERNAME}'") == "1"
    code, out = app_stack.app_exec("python3", "-m", "src.pynomaly.seed", env={"APP_USERNAME": USERNAME})
    assert code == 2


def test_login_token_is_hs256_with_30_minutes(app_stack, token):
    header_b64, payload_b64, signature_b64 = token.split(".")
    header, payload = _b64json(header_b64), _b64json(payload_b64)
    assert header["alg"] == "HS256"
    assert payload["exp"] - payload["iat"] == 1800
    assert payload["sub"] == USERNAME
    expected = hmac.new(JWT_SECRET.encode(), f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature_b64


def test_login_is_audited_and_bad_password_refused(app_stack, token):
    url = app_stack.urls[PORTS[1]] + "/api/v1/auth/login"
    before = int(app_stack.psql("SELECT count(*) FROM audit_logs"))
    assert requests.post(url, json={"username": USERNAME, "password": "wrong"}, timeout=10).status_code == 401
    assert requests.post(url, json={"username": "nobody", "password": "x"}, timeout=10).status_code == 401
    assert requests.post(url, json={"username": USERNAME, "password": PASSWORD}, timeout=10).status_code == 200
    assert int(app_stack.psql("SELECT count(*) FROM audit_logs")) == before + 3
    assert int(app_stack.psql("SELECT count(*) FROM audit_logs WHERE action = 'login' AND user_id IS NOT NULL")) >= 2


def test_authenticated_call_reads_db_then_cache(app_stack, token):
    url = app_stack.urls[PORTS[2]] + "/api/v1/me"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer not.a.token"}, timeout=5).status_code == 401
    forged = token[: token.rindex(".") + 1] + "A" * 43
    assert requests.get(url, headers={"Authorization": f"Bearer {forged}"}, timeout=5).status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    first, second = (requests.get(url, headers=auth, timeout=5) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert first.json()["username"] == USERNAME
    assert second.json()["cached"] is True
    code, out = app_stack.redis.exec_run(["redis-cli", "-a", REDIS_PASSWORD, "--no-auth-warning", "-n", "1", "TTL",
                                           f"user:{USERNAME}"])  # fmt: skip
    assert code == 0
    assert 0 < int(out) <= 300


def test_health_endpoints(app_stack):
    for path in ("/health", "/api/v1/health"):
        response = requests.get(app_stack.urls[PORTS[0]] + path, timeout=5)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"


def test_docs_served_without_outside_hosts(app_stack):
    page = requests.get(app_stack.urls[PORTS[0]] + "/docs", timeout=5)
    assert page.status_code == 200
    assert "SwaggerUIBundle" in page.text
    assert not re.search(r"(src|href)=[\"']https?://", page.text)
    for asset in re.findall(r"(?:src|href)=[\"'](/static/[^\"']+)", page.text):
        assert requests.get(app_stack.urls[PORTS[0]] + asset, timeout=5).status_code == 200
    assert requests.get(app_stack.urls[PORTS[0]] + "/openapi.json", timeout=5).json()["paths"]


def _health_count(text: str) -> float:
    pattern = r'^http_requests_total\{(?=[^}]*handler="/health")(?=[^}]*status="200")[^}]*\} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.M))


def test_metrics_aggregate_over_workers(app_stack):
    url = app_stack.urls[PORTS[0]]
    before = app_stack.metrics()
    assert "# TYPE http_requests_total counter" in before
    assert "# TYPE http_request_duration_seconds histogram" in before
    assert 'http_request_duration_seconds_bucket{handler="/health",le="0.005",method="GET"}' in before
    for _ in range(40):
        requests.get(url + "/health", timeout=5)  # a new connection each: spread over the 4 workers
    after = app_stack.metrics()
    grown = _health_count(after) - _health_count(before)
    assert 40 <= grown <= 42  # +2: Docker's HEALTHCHECK may probe meanwhile
    pids = {path.split("_")[-1] for path in app_stack.apps[PORTS[0]].exec_run(["ls", "/tmp/pynomaly-metrics"])
            .output.decode().split()}  # fmt: skip
    assert len(pids) > 1, "expected samples from more than one worker"


def test_effective_config_dump_has_no_secrets(app_stack):
    code, out = app_stack.app_exec("python3", "-m", "src.pynomaly.infrastructure.config.dump")
    assert code == 0, out
    for secret in (DB_PASSWORD, REDIS_PASSWORD, JWT_SECRET):
        assert secret not in out
    dump = json.loads(out)
    assert dump["database"] | {"url": None} == {
        "url": None, "pool_size": 20, "max_overflow": 30, "pool_timeout": 30, "pool_recycle": 3600
    }  # fmt: skip
    redis = dump["redis"]
    assert (redis["cache_db"], redis["max_connections"], redis["socket_keepalive"]) == (1, 50, True)
    assert redis["socket_keepalive_options"] == {"TCP_KEEPIDLE": 1, "TCP_KEEPINTVL": 1, "TCP_KEEPCNT": 3}
    assert dump["jwt"] == {"algorithm": "HS256", "access_token_expire_minutes": 30, "secret_set": True}
    assert dump["logging"]["level"] == "INFO"


def test_gunicorn_runs_the_guides_command(app_stack):
    container = app_stack.apps[PORTS[1]]
    cmdline = container.exec_run(["cat", "/proc/1/cmdline"]).output.decode().split("\0")
    assert "--bind" in cmdline
    assert cmdline[cmdline.index("--bind") + 1] == "0.0.0.0:8001"
    for flag, value in (("--workers", "4"), ("--worker-class", "uvicorn.workers.UvicornWorker"),
                        ("--max-requests", "1000"), ("--timeout", "30"), ("--keep-alive", "2")):  # fmt: skip
        assert cmdline[cmdline.index(flag) + 1] == value
    assert "--preload" in cmdline
    assert container.exec_run(["id", "-u"]).output.decode().strip() == "1000"


def test_docker_healthcheck_turns_healthy(app_stack):
    for port in PORTS:
        container = app_stack.apps[port]

        def healthy(container=container):
            container.reload()
            return container.attrs["State"]["Health"]["Status"] == "healthy"

        _wait(healthy, 60, f"docker health of instance {port}", interval=1)


def test_health_is_503_while_redis_is_down(app_stack):
    url = app_stack.urls[PORTS[0]]
    app_stack.redis.stop(timeout=2)
    try:
        _wait(lambda: _status(url + "/health") == 503, 15, "/health 503")
        body = requests.get(url + "/api/v1/health", timeout=5)
        assert body.status_code == 503
        assert body.json()["checks"]["database"] == "ok"
        assert body.json()["checks"]["redis"].startswith("error")
    finally:
        app_stack.redis.start()
    _wait(lambda: _status(url + "/health") == 200, 30, "/health back to 200")
