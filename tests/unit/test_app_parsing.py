"""audit/probes/app.py: parsing and the facts the app checks judge, on captured outputs, compliant and not."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from audit.judge import ON_DISK, RUNNING, Judge
from audit.outcomes import CouldNotAudit, NonCompliant
from audit.probes import app

GUIDE = yaml.safe_load(Path("checks/requirements.yml").read_text())
EXPECTED = {r["id"]: r.get("expected") for r in GUIDE["requirements"]}

ENV_FILE = """# Database
DATABASE_URL=postgresql://pynomaly_user:Pg-S3cret-Value@db1:5432/pynomaly_prod

# Redis
REDIS_URL=redis://:Rd-S3cret-Value@cache1:6379/0

# Security
JWT_SECRET=jwt-S3cret-Value
ENCRYPTION_KEY=enc-S3cret-Value
API_KEY_SALT=salt-S3cret-Value

# Application
ENVIRONMENT=production
DEBUG=false
LOG_LEVEL=INFO

# External Services
SMTP_SERVER=smtp.gmail.com
SMTP_PORT=587
SMTP_USERNAME=mailer-user-value
SMTP_PASSWORD=smtp-S3cret-Value

# Rate Limiting
RATE_LIMIT_REQUESTS=1000
RATE_LIMIT_WINDOW=3600

# Monitoring
PROMETHEUS_METRICS_ENABLED=true
GRAFANA_ENABLED=true
"""
SECRET_VALUES = ["Pg-S3cret-Value", "Rd-S3cret-Value", "jwt-S3cret-Value", "enc-S3cret-Value",
                 "salt-S3cret-Value", "mailer-user-value", "smtp-S3cret-Value"]
# The guide's own file, as written by its heredoc with 'EOF' (nothing expanded).
GUIDE_ENV_FILE = ENV_FILE.replace("Pg-S3cret-Value", "${DB_PASSWORD}").replace(
    "Rd-S3cret-Value", "${REDIS_PASSWORD}").replace("jwt-S3cret-Value", "${JWT_SECRET}").replace(
    "smtp-S3cret-Value", "secure_password_here")

REFERENCE_COMPOSE = """version: '3.8'
services:
  pynomaly-app:
    image: pynomaly:latest
    deploy:
      replicas: 3
      restart_policy:
        condition: on-failure
        delay: 5s
        max_attempts: 3
    environment:
      - DATABASE_URL=postgresql://pynomaly_user:${DB_PASSWORD}@db1:5432/pynomaly_prod
      - REDIS_URL=redis://:${REDIS_PASSWORD}@cache1:6379/0
      - JWT_SECRET=${JWT_SECRET}
      - ENVIRONMENT=production
    network_mode: "container:web1"
"""
GUIDE_COMPOSE = """version: '3.8'
services:
  pynomaly-app:
    image: pynomaly:latest
    deploy:
      replicas: 3
    environment:
      - JWT_SECRET=${JWT_SECRET}
    networks:
      - pynomaly-network
  postgres:
    image: postgres:14
    environment:
      - POSTGRES_PASSWORD=${DB_PASSWORD}
networks:
  pynomaly-network:
    driver: bridge
"""

MASTER = ("/usr/bin/python3 /usr/bin/gunicorn src.pynomaly.presentation.api.app:app --bind 0.0.0.0:8002 "
          "--workers 4 --worker-class uvicorn.workers.UvicornWorker --worker-connections 1000 "
          "--max-requests 1000 --max-requests-jitter 50 --preload --timeout 30 --keep-alive 2 "
          "--access-logfile /var/log/pynomaly/access.log --error-logfile /var/log/pynomaly/error.log "
          "--log-level info")
PS = f"""    PID    PPID   UID COMMAND
      1       0  1000 {MASTER}
     40       1  1000 {MASTER}
     41       1  1000 {MASTER}
    300       0     0 /usr/sbin/sshd -D
"""

METRICS = """# HELP http_requests_total HTTP requests.
# TYPE http_requests_total counter
http_requests_total{handler="/health",method="GET",status="200"} 16.0
http_request_duration_seconds_bucket{handler="/health",le="0.005",method="GET"} 9.0
http_request_duration_seconds_count{handler="/health",method="GET"} 16.0
"""

START_SCRIPT = """#!/bin/bash
# /opt/pynomaly/start_production.sh

set -e

# Load environment variables
source /opt/pynomaly/.env.production

# Run database migrations
python -m alembic upgrade head

# Start application with Gunicorn
exec gunicorn src.pynomaly.presentation.api.app:app \\
  --bind 0.0.0.0:8000 \\
  --workers 4
"""


FILES = Path(__file__).resolve().parents[2] / "provision" / "files" / "web"
GUIDE_HEALTHCHECK = {"Test": ["CMD-SHELL", "curl -f http://localhost:${PORT:-8000}/health || exit 1"],
                     "Interval": 30_000_000_000, "Timeout": 10_000_000_000, "StartPeriod": 5_000_000_000,
                     "Retries": 3}


def sourced(text: str, tmp_path: Path) -> dict:
    """Run the probe's own remote command locally on a file, as the app host would."""
    path = tmp_path / ".env.production"
    path.write_text(text)
    cmd = app.sourced_env_command(str(path), EXPECTED["APP-ENV-FILE-KEYS"])
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=10, check=True).stdout
    return app.parse_sourced_env(out)


def judge_of(req_id: str) -> Judge:
    return Judge("web1", [req_id], EXPECTED.get)


# ---------------------------------------------------------------- .env.production

def test_env_keys_all_present_and_one_missing():
    assert app.env_file_keys(ENV_FILE) == EXPECTED["APP-ENV-FILE-KEYS"]
    keys = app.env_file_keys(ENV_FILE.replace("GRAFANA_ENABLED=true\n", "# GRAFANA_ENABLED=true\n"))
    assert "GRAFANA_ENABLED" not in keys


def test_sourced_env_values_compliant(tmp_path):
    values = sourced(ENV_FILE, tmp_path)
    assert values["ENVIRONMENT"] == "production"
    assert values["DEBUG"] == "false"
    assert set(app.secret_problems(values, EXPECTED["APP-ENV-SECRETS"]).values()) == {None}


def test_sourced_guide_file_has_unset_and_placeholder_secrets(tmp_path):
    values = sourced(GUIDE_ENV_FILE.replace("DEBUG=false", "DEBUG=true"), tmp_path)
    problems = app.secret_problems(values, EXPECTED["APP-ENV-SECRETS"])
    assert values["DEBUG"] == "true"
    # ${JWT_SECRET} with nothing in the environment sources to an empty value
    assert problems["JWT_SECRET"] == "empty"
    assert problems["SMTP_PASSWORD"] == "a placeholder of the guide"
    assert problems["DATABASE_URL password"] is not None


def test_sourced_missing_key_is_none(tmp_path):
    values = sourced(ENV_FILE.replace("LOG_LEVEL=INFO\n", ""), tmp_path)
    assert values["LOG_LEVEL"] is None
    assert app.secret_problems({}, EXPECTED["APP-ENV-SECRETS"])["JWT_SECRET"] == "not defined"


@pytest.mark.parametrize(("value", "problem"), [
    (None, "not defined"), ("", "empty"), ("  ", "empty"), ("${JWT_SECRET}", "an unexpanded ${...} reference"),
    ("$JWT_SECRET", "an unexpanded ${...} reference"), ("secure_password_here", "a placeholder of the guide"),
    ("your_secure_redis_password", "a placeholder of the guide"), ("changeme", "a placeholder of the guide"),
    ("k8Jz-real-value", None),
])
def test_secret_problem(value, problem):
    assert app.secret_problem(value, EXPECTED["APP-ENV-SECRETS"]["placeholders"]) == problem


def test_url_parts_never_carry_the_password():
    parts = app.url_parts("postgresql://pynomaly_user:Pg-S3cret-Value@db1:5432/pynomaly_prod")
    assert parts == {"scheme": "postgresql", "user": "pynomaly_user", "password_set": True, "host": "db1",
                     "port": 5432, "database": "pynomaly_prod", "db": "pynomaly_prod"}
    assert {k: parts[k] for k in EXPECTED["APP-ENV-DATABASE-URL"]} == EXPECTED["APP-ENV-DATABASE-URL"]
    redis = app.url_parts("redis://cache1:6380/2")
    assert redis["password_set"] is False
    assert {k: redis[k] for k in EXPECTED["APP-ENV-REDIS-URL"]} != EXPECTED["APP-ENV-REDIS-URL"]
    assert app.url_parts(None) == {}


# ---------------------------------------------------------------- Compose

def test_compose_reference_is_compliant_but_not_on_the_bridge():
    compose = app.parse_compose(REFERENCE_COMPOSE)
    assert compose.problem is None
    assert compose.replicas == EXPECTED["APP-COMPOSE-REPLICAS"]
    assert compose.environment == {"ENVIRONMENT": "production"}  # the non-secret keys only
    assert compose.restart_policy == {"condition": "on-failure", "delay": 5.0, "max_attempts": 3}
    assert compose.literal_secrets == ()
    assert compose.variables >= set(EXPECTED["APP-COMPOSE-NO-LITERAL-SECRETS"]["variables"])
    assert compose.networks == ()
    assert compose.network_mode == "container:web1"
    assert app.parse_compose((FILES / "docker-compose.prod.yml").read_text()).replicas == 3


def test_compose_guide_file_is_on_the_bridge():
    compose = app.parse_compose(GUIDE_COMPOSE)
    assert "pynomaly-network" in compose.networks
    assert compose.network_drivers == {"pynomaly-network": "bridge"}
    assert compose.literal_secrets == ()
    assert compose.restart_policy == {"condition": None, "delay": None, "max_attempts": None}


def test_compose_literal_secrets_found_and_not_kept():
    text = (REFERENCE_COMPOSE.replace("JWT_SECRET=${JWT_SECRET}", "JWT_SECRET=hunter2hunter2")
            .replace(":${DB_PASSWORD}@", ":Pg-S3cret-Value@"))
    compose = app.parse_compose(text)
    assert compose.literal_secrets == ("pynomaly-app.DATABASE_URL (URL password)", "pynomaly-app.JWT_SECRET")
    assert "JWT_SECRET" not in compose.variables
    assert "hunter2hunter2" not in repr(compose)
    assert "Pg-S3cret-Value" not in repr(compose)


def test_compose_environment_as_mapping_missing_service_and_not_yaml():
    assert app.compose_environment({"environment": {"A": 1, "B": None}}) == {"A": "1", "B": None}
    assert app.parse_compose("services:\n  web: {}\n").problem == "no service pynomaly-app (services: ['web'])"
    assert app.parse_compose("").problem.startswith("no service")
    assert app.parse_compose("services: [\n").problem.startswith("not valid YAML")


@pytest.mark.parametrize(("value", "secs"), [("5s", 5), ("1m30s", 90), ("500ms", 0.5), (5, 5),
                                              (30_000_000_000, 30), ("5 seconds", None), (None, None)])
def test_seconds(value, secs):
    assert app.seconds(value) == secs


# ---------------------------------------------------------------- Dockerfile HEALTHCHECK, containers

def test_healthcheck_compliant():
    assert app.healthcheck_differences(GUIDE_HEALTHCHECK, EXPECTED["APP-HEALTHCHECK"]) == []


def test_healthcheck_differences():
    changed = {**GUIDE_HEALTHCHECK, "Retries": 5, "Interval": 60_000_000_000,
               "Test": ["CMD-SHELL", "curl -f http://localhost:8999/health || exit 1"]}
    diffs = app.healthcheck_differences(changed, EXPECTED["APP-HEALTHCHECK"])
    assert len(diffs) == 3
    assert diffs[0].startswith("interval 60s")
    assert app.healthcheck_differences(None, EXPECTED["APP-HEALTHCHECK"]) == ["no HEALTHCHECK"]
    assert app.healthcheck_differences({"Test": ["NONE"]}, EXPECTED["APP-HEALTHCHECK"]) == ["no HEALTHCHECK"]


def container(name="pynomaly-app-3", number=3, environment="production", running=True):
    attrs = {"Name": f"/{name}", "State": {"Status": "running" if running else "exited",
                                          "Health": {"Status": "healthy"}},
             "Config": {"User": "pynomaly", "Healthcheck": GUIDE_HEALTHCHECK, "Image": "pynomaly:latest",
                        "Labels": {"com.docker.compose.container-number": str(number)},
                        "Env": [f"ENVIRONMENT={environment}", "DEBUG=false", "JWT_SECRET=jwt-S3cret-Value",
                                "DATABASE_URL=postgresql://u:Pg-S3cret-Value@db1:5432/pynomaly_prod"]},
             "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                            "NetworkMode": "container:0123"},
             "NetworkSettings": {"Networks": {}}}
    image = {"Config": {"User": "pynomaly", "Healthcheck": GUIDE_HEALTHCHECK, "ExposedPorts": {"8000/tcp": {}}}}
    top = {"Titles": ["PID", "PPID", "UID", "COMMAND"],
           "Processes": [["10", "9", "1000", MASTER], ["11", "10", "1000", MASTER]]} if running else None
    return app.container_facts(attrs, image, top)


def test_container_facts_keep_no_secret_value():
    c = container()
    assert (c.name, c.number, c.status, c.health, c.user) == ("pynomaly-app-3", 3, "running", "healthy", "pynomaly")
    assert c.image_exposed == ("8000/tcp",)
    assert c.env == {"ENVIRONMENT": "production", "DEBUG": "false"}
    assert "S3cret" not in repr(c)
    assert [p.pid for p in app.gunicorn_masters(list(c.processes))] == ["10"]
    assert container(running=False).processes == ()


# ---------------------------------------------------------------- Gunicorn

def test_gunicorn_master_flags_match_the_guide():
    masters = app.gunicorn_masters(app.parse_ps(PS))
    assert [m.pid for m in masters] == ["1"]
    cmd = app.parse_gunicorn(masters[0].args)
    assert cmd.app == EXPECTED["APP-GUNICORN-BIND"]["app"]
    assert cmd.bind_addresses == [("0.0.0.0", 8002)]
    facts = facts_with(processes=tuple(app.parse_ps(PS)), runtime="gunicorn", containers=())
    for req in (r for r in GUIDE["requirements"] if (r.get("fact") or {}).get("probe") == "app"):
        key = req["fact"]["key"]
        for side in facts.sides(key).values():
            assert side.value == facts.norm(key, req["expected"]), (req["id"], side)


def test_gunicorn_flags_off_the_guide():
    cmd = app.parse_gunicorn("gunicorn -w 2 -k sync -b=127.0.0.1:8000 --timeout=60 app:app")
    assert cmd.app == "app:app"
    assert cmd.options["--workers"] == "2"
    assert cmd.options["--worker-class"] == "sync"
    assert cmd.bind_addresses == [("127.0.0.1", 8000)]
    assert cmd.options["--timeout"] == "60"
    assert cmd.value("--preload") is False
    assert app.parse_gunicorn("gunicorn app:app").bind_addresses == [("127.0.0.1", 8000)]  # Gunicorn's default
    assert app.parse_gunicorn("/usr/bin/python3 -m uvicorn app:app") is None


def test_non_gunicorn_processes_are_not_masters():
    assert app.gunicorn_masters(app.parse_ps("1 0 0 /bin/sleep 10\n")) == []


# ---------------------------------------------------------------- the facts the value rows judge

def facts_with(**changes) -> app.AppFacts:
    base = dict(host="web1", runtime="docker", ports=(8000, 8001, 8002), instance_count=3,
                compose=app.parse_compose(REFERENCE_COMPOSE), start_script=(FILES / "start_production.sh").read_text(),
                start_script_mode=0o750, env_keys=tuple(EXPECTED["APP-ENV-FILE-KEYS"]),
                env=dict(line.split("=", 1) for line in ENV_FILE.splitlines() if line.split("=")[0] in app.PUBLIC_ENV),
                secret_problems={}, env_urls={}, log_now=0, log_files={}, health={}, metrics={},
                containers=(container("pynomaly-app-1", 1), container("pynomaly-app-2", 2), container()))
    return app.AppFacts(**{**base, **changes})


def test_env_value_running_and_on_disk():
    facts = facts_with()
    debug = facts.sides("DEBUG")
    assert set(debug) == {RUNNING, ON_DISK}
    assert debug[RUNNING].value == debug[ON_DISK].value == "false"
    # the Compose service sets ENVIRONMENT itself: its running value is APP-COMPOSE-ENV-PRODUCTION's
    assert set(facts.sides("ENVIRONMENT")) == {ON_DISK}
    assert set(facts_with(containers=()).sides("DEBUG")) == {ON_DISK}  # a Gunicorn host


def test_one_container_off_the_guide_differs():
    facts = facts_with(containers=(container("pynomaly-app-1", 1), container(environment="staging")))
    assert set(facts.sides("ENVIRONMENT")) == {ON_DISK}
    running = facts_with(compose=None, containers=facts.containers).sides("ENVIRONMENT")[RUNNING]
    assert running.shown == {"pynomaly-app-1": "production", "pynomaly-app-3": "staging"}
    assert running.value != "production"
    with pytest.raises(NonCompliant, match="staging"):
        judge_of("APP-ENV-ENVIRONMENT").sides({RUNNING: running}, lambda v: v == "production", what="ENVIRONMENT")


def test_nothing_found_is_never_a_pass():
    """A missing env file, no Gunicorn master, an unreadable engine: never compliant."""
    no_file = facts_with(env={}, env_keys=None, containers=())
    with pytest.raises(NonCompliant, match="on disk None"):
        judge_of("APP-ENV-DEBUG").sides(no_file.sides("DEBUG"), lambda v: v == "false", what="DEBUG")
    no_master = facts_with(processes=(), runtime="gunicorn")
    assert no_master.sides("--workers")[RUNNING].value is None
    with pytest.raises(NonCompliant, match="running None"):
        judge_of("APP-GUNICORN-WORKERS").sides(no_master.sides("--workers"), lambda v: v == "4", what="--workers")
    engine = facts_with(containers=(), engine_error=(None, "the Docker engine unix:///x", "refused"))
    with pytest.raises(CouldNotAudit, match="refused"):
        engine.sides("--workers")
    with pytest.raises(CouldNotAudit):
        engine.instances()
    assert app.across({}) == (None, None)


def test_across():
    assert app.across({"a": 4, "b": 4}) == (4, 4)
    shown, value = app.across({"a": "4", "b": "2"})
    assert shown == {"a": "4", "b": "2"}
    assert value != "4"
    assert value != ("4", "2")


def test_file_status_and_instance_ports():
    assert app.file_status("ok /a\nmissing /b\nunreadable /c\n") == {"/a": "ok", "/b": "missing", "/c": "unreadable"}
    assert app.file_status("") == {}
    assert app.instance_ports([8000, 8001, 8002], 3) == (8000, 8001, 8002)
    assert app.instance_ports([8000, 8001, 8002], 2) == (8000, 8001)
    assert app.instance_ports([8000, 8001, 8002], 5) == (8000, 8001, 8002, 8003, 8004)


# ---------------------------------------------------------------- /metrics

def test_metrics_names_and_labels():
    names = app.metric_names(METRICS)
    assert {"method", "status"} <= names["http_requests_total"]
    assert "http_request_duration_seconds_bucket" in names
    assert "http_requests_total" not in app.metric_names("# HELP http_requests_total x\nother 1\n")
    assert app.metric_names("") == {}


# ---------------------------------------------------------------- JWT

def _token(payload: dict, secret: str, alg: str = "HS256") -> str:
    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = enc(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = enc(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{enc(sig)}"


def test_jwt_valid_signature_and_lifetime():
    token = app.token_facts(_token({"sub": "u", "iat": 1000, "exp": 2800}, "k" * 32), "k" * 32, 0)
    assert token.problem is None
    assert token.header["alg"] == "HS256"
    assert token.signature_valid
    assert token.lifetime_minutes == 30
    assert token.claims == ("exp", "iat", "sub")


def test_jwt_wrong_secret_and_not_a_jwt():
    assert app.token_facts(_token({"iat": 0, "exp": 86400}, "other-secret"), "k" * 32, 0).signature_valid is False
    assert app.token_facts("opaque-token", "k", 0).problem == "not a compact JWT (1 parts)"
    fixed = app.token_facts("e30.e30.c2ln", "k" * 32, 0)  # the drift nginx-login-fixed-token's answer
    assert (fixed.header, fixed.signature_valid) == ({}, False)
    assert app.token_facts("a.b.c", "k", 0).problem.startswith("not a JWT")


# ---------------------------------------------------------------- start_production.sh, logs

def test_start_script_compliant():
    assert app.start_script_problems(START_SCRIPT, "/opt/pynomaly/.env.production") == []
    steps = EXPECTED["APP-START-MIGRATIONS-FIRST"]
    order = app.migration_order(START_SCRIPT, steps)
    assert None not in order
    assert order == sorted(order)
    # the reference image runs python3: the same command
    assert None not in app.migration_order(START_SCRIPT.replace("python -m", "python3 -m"), steps)
    assert app.script_gunicorn(START_SCRIPT).options == {"--bind": "0.0.0.0:8000", "--workers": "4"}


def test_start_script_off_the_guide():
    text = START_SCRIPT.replace("set -e\n", "").replace("source /opt/pynomaly/.env.production", "")
    assert app.start_script_problems(text, "/opt/pynomaly/.env.production") == [
        "no `set -e`", "does not source /opt/pynomaly/.env.production"]
    steps = EXPECTED["APP-START-MIGRATIONS-FIRST"]
    assert app.migration_order(text.replace("python -m alembic upgrade head\n", ""), steps)[0] is None
    swapped = text.replace("python -m alembic upgrade head\n", "") + "python -m alembic upgrade head\n"
    order = app.migration_order(swapped, steps)
    assert order != sorted(order)
    assert app.migration_order("", steps) == [None, None]
    assert app.script_gunicorn(None) is None


def test_log_files():
    now, files = app.log_files("1700000000\n/var/log/pynomaly/access.log 5088 1699999990\n")
    assert now == 1700000000
    assert files == {"/var/log/pynomaly/access.log": (5088, 1699999990)}
    assert app.log_files("1700000000\n") == (1700000000, {})
    assert app.log_files("") == (0, {})


def test_published_ports_map_a_container_bind_to_its_host_port():
    ports = {"8000/tcp": [{"HostIp": "172.28.78.41", "HostPort": "8001"}], "9000/udp": [{"HostPort": "9000"}],
             "8080/tcp": None}
    assert app.published_ports(ports) == {8000: (8001,), 8080: ()}
    assert app.published_ports(None) == {}
    bridged = app.Container("a", 1, "running", "healthy", "", None, "", None, (), {}, {}, (), "pynomaly-network",
                            (), app.published_ports(ports))
    shared = app.Container("b", 2, "running", "healthy", "", None, "", None, (), {}, {}, (), "container:web1", ())
    assert bridged.host_ports(8000) == (8001,)
    assert bridged.host_ports(7000) == ()  # not published: not reached on the host
    assert shared.host_ports(8000) == (8000,)


SECRET = "s3cr3t-not-shown"  # noqa: S105 - a test value


def test_url_sides_running_and_on_disk_without_the_password():
    from audit.probes.app import url_parts

    facts = facts_with(compose=None)
    fields = ["scheme", "user", "port", "database", "password_set"]
    with_urls = facts_with(compose=None, containers=tuple(
        dataclasses.replace(c, urls={"DATABASE_URL": url_parts(f"postgresql://pynomaly_user:{SECRET}@db1:5432/x")})
        for c in facts.containers), env_urls={"DATABASE_URL": app.url_parts(f"postgresql://u:{SECRET}@h:5432/x")})
    sides = with_urls.url_sides("DATABASE_URL", fields)
    assert sides[RUNNING].value == {"scheme": "postgresql", "user": "pynomaly_user", "port": 5432,
                                    "database": "x", "password_set": True}
    assert sides[ON_DISK].value["user"] == "u"  # the file says another user: the sides differ
    assert SECRET not in repr(sides)
    other = facts_with(compose=None, containers=tuple(
        dataclasses.replace(c, urls={"DATABASE_URL": url_parts("postgresql://pynomaly_user:x@db1:6432/x")})
        for c in facts.containers))
    assert other.url_sides("DATABASE_URL", fields)[RUNNING].value["port"] == 6432  # the containers run another
    assert list(facts_with(containers=()).url_sides("DATABASE_URL", fields)) == [ON_DISK]
