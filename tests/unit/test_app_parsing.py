"""checks/test_app.py's parsing and comparisons on captured outputs, compliant and not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from audit.evidence import MASK
from checks import test_app as app

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


def sourced(text: str, tmp_path: Path) -> dict:
    """Run the check's own remote command locally on a file, as the app host would."""
    path = tmp_path / ".env.production"
    path.write_text(text)
    cmd = app.sourced_env_command(str(path), EXPECTED["APP-ENV-FILE-KEYS"])
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=10, check=True).stdout
    return app.parse_sourced_env(out)


# ---------------------------------------------------------------- .env.production

def test_env_keys_all_present_and_one_missing():
    assert app.env_file_keys(ENV_FILE) == EXPECTED["APP-ENV-FILE-KEYS"]
    keys = app.env_file_keys(ENV_FILE.replace("GRAFANA_ENABLED=true\n", "# GRAFANA_ENABLED=true\n"))
    assert "GRAFANA_ENABLED" not in keys


def test_redacted_env_shows_no_secret_value():
    text = app.redact_env(ENV_FILE)
    assert not [v for v in SECRET_VALUES if v in text]
    assert "ENVIRONMENT=production" in text
    assert "RATE_LIMIT_WINDOW=3600" in text
    assert f"JWT_SECRET={MASK}" in text
    assert f"DATABASE_URL={MASK}" in text


def test_sourced_env_values_compliant(tmp_path):
    values = sourced(ENV_FILE, tmp_path)
    assert values["ENVIRONMENT"] == "production"
    assert values["DEBUG"] == "false"
    want = EXPECTED["APP-ENV-SECRETS"]
    assert all(app.secret_problem(values[k], want["placeholders"]) is None for k in want["keys"])
    assert all(app.secret_problem(app.url_password(values[k]), want["placeholders"]) is None
               for k in want["url_passwords"])


def test_sourced_guide_file_has_unset_and_placeholder_secrets(tmp_path):
    values = sourced(GUIDE_ENV_FILE.replace("DEBUG=false", "DEBUG=true"), tmp_path)
    placeholders = EXPECTED["APP-ENV-SECRETS"]["placeholders"]
    assert values["DEBUG"] == "true"
    # ${JWT_SECRET} with nothing in the environment sources to an empty value
    assert app.secret_problem(values["JWT_SECRET"], placeholders) == "empty"
    assert app.secret_problem(values["SMTP_PASSWORD"], placeholders) == "a placeholder of the guide"
    assert app.secret_problem(app.url_password(values["DATABASE_URL"]), placeholders) is not None


def test_sourced_missing_key_is_none(tmp_path):
    values = sourced(ENV_FILE.replace("LOG_LEVEL=INFO\n", ""), tmp_path)
    assert values["LOG_LEVEL"] is None


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
                     "port": 5432, "path": "pynomaly_prod"}
    assert app.url_parts("redis://cache1:6380/2")["password_set"] is False
    assert app.url_parts(None) == {}


# ---------------------------------------------------------------- Compose

def test_compose_reference_is_compliant_but_not_on_the_bridge():
    doc = yaml.safe_load(REFERENCE_COMPOSE)
    service = app.compose_service(doc)
    assert service["deploy"]["replicas"] == EXPECTED["APP-COMPOSE-REPLICAS"]
    assert app.compose_environment(service)["ENVIRONMENT"] == "production"
    assert app.literal_secrets(doc) == []
    assert app.referenced_variables(service) >= set(EXPECTED["APP-COMPOSE-NO-LITERAL-SECRETS"]["variables"])
    assert "networks" not in service


def test_compose_guide_file_is_on_the_bridge():
    doc = yaml.safe_load(GUIDE_COMPOSE)
    assert "pynomaly-network" in app.compose_service(doc)["networks"]
    assert doc["networks"]["pynomaly-network"]["driver"] == "bridge"
    assert app.literal_secrets(doc) == []


def test_compose_literal_secrets_found():
    text = (REFERENCE_COMPOSE.replace("JWT_SECRET=${JWT_SECRET}", "JWT_SECRET=hunter2hunter2")
            .replace(":${DB_PASSWORD}@", ":Pg-S3cret-Value@"))
    doc = yaml.safe_load(text)
    assert app.literal_secrets(doc) == ["pynomaly-app.DATABASE_URL (URL password)", "pynomaly-app.JWT_SECRET"]
    assert "JWT_SECRET" not in app.referenced_variables(app.compose_service(doc))
    masked = app.mask_config(text)
    assert "hunter2hunter2" not in masked
    assert "Pg-S3cret-Value" not in masked
    assert "${REDIS_PASSWORD}" in masked  # references stay visible


def test_compose_environment_as_mapping_and_missing_service():
    assert app.compose_environment({"environment": {"A": 1, "B": None}}) == {"A": "1", "B": None}
    with pytest.raises(AssertionError, match="no service pynomaly-app"):
        app.compose_service({"services": {"web": {}}})


@pytest.mark.parametrize(("value", "secs"), [("5s", 5), ("1m30s", 90), ("500ms", 0.5), (5, 5),
                                              (30_000_000_000, 30), ("5 seconds", None), (None, None)])
def test_seconds(value, secs):
    assert app.seconds(value) == secs


# ---------------------------------------------------------------- Dockerfile HEALTHCHECK

REFERENCE_HEALTHCHECK = {"Test": ["CMD-SHELL", "curl -f http://localhost:${PORT:-8000}/health || exit 1"],
                         "Interval": 30_000_000_000, "Timeout": 10_000_000_000, "StartPeriod": 5_000_000_000,
                         "Retries": 3}


def test_healthcheck_compliant():
    assert app.healthcheck_differences(REFERENCE_HEALTHCHECK, EXPECTED["APP-HEALTHCHECK"]) == []


def test_healthcheck_differences():
    changed = {**REFERENCE_HEALTHCHECK, "Retries": 5, "Interval": 60_000_000_000,
               "Test": ["CMD-SHELL", "curl -f http://localhost:8999/health || exit 1"]}
    diffs = app.healthcheck_differences(changed, EXPECTED["APP-HEALTHCHECK"])
    assert len(diffs) == 3
    assert diffs[0].startswith("interval 60s")
    assert app.healthcheck_differences(None, EXPECTED["APP-HEALTHCHECK"]) == ["no HEALTHCHECK"]
    assert app.healthcheck_differences({"Test": ["NONE"]}, EXPECTED["APP-HEALTHCHECK"]) == ["no HEALTHCHECK"]


# ---------------------------------------------------------------- Gunicorn

def test_gunicorn_master_flags_match_the_guide():
    masters = app.gunicorn_masters(app.parse_ps(PS))
    assert [m["pid"] for m in masters] == ["1"]
    cmd = app.parse_gunicorn(masters[0]["args"])
    assert cmd.app == EXPECTED["APP-GUNICORN-BIND"]["app"]
    assert app.bind_port(cmd.binds[0]) == ("0.0.0.0", 8002)
    for req_id, option in app.GUNICORN_OPTIONS.items():
        want = EXPECTED[req_id]
        have = app.option_value(cmd, option, want)
        assert (have if isinstance(want, bool) else str(have)) == (want if isinstance(want, bool) else str(want))


def test_gunicorn_flags_off_the_guide():
    cmd = app.parse_gunicorn("gunicorn -w 2 -k sync -b=127.0.0.1:8000 --timeout=60 app:app")
    assert cmd.app == "app:app"
    assert cmd.options["--workers"] == "2"
    assert cmd.options["--worker-class"] == "sync"
    assert cmd.binds == ["127.0.0.1:8000"]
    assert cmd.options["--timeout"] == "60"
    assert app.option_value(cmd, "--preload", True) is False
    assert app.parse_gunicorn("/usr/bin/python3 -m uvicorn app:app") is None


def test_non_gunicorn_processes_are_not_masters():
    assert app.gunicorn_masters(app.parse_ps("1 0 0 /bin/sleep 10\n")) == []


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
    header, payload, valid = app.decode_jwt(_token({"sub": "u", "iat": 1000, "exp": 2800}, "k" * 32), "k" * 32)
    assert header["alg"] == "HS256"
    assert valid
    assert (payload["exp"] - payload["iat"]) / 60 == 30


def test_jwt_wrong_secret_and_not_a_jwt():
    _, _, valid = app.decode_jwt(_token({"iat": 0, "exp": 86400}, "other-secret"), "k" * 32)
    assert valid is False
    with pytest.raises(AssertionError, match="not a compact JWT"):
        app.decode_jwt("opaque-token", "k")


# ---------------------------------------------------------------- start_production.sh, logs

def test_start_script_compliant():
    assert app.start_script_problems(START_SCRIPT, "/opt/pynomaly/.env.production") == []
    steps = EXPECTED["APP-START-MIGRATIONS-FIRST"]
    order = app.migration_order(START_SCRIPT, steps)
    assert None not in order
    assert order == sorted(order)
    # the reference image runs python3: the same command
    assert None not in app.migration_order(START_SCRIPT.replace("python -m", "python3 -m"), steps)


def test_start_script_off_the_guide():
    text = START_SCRIPT.replace("set -e\n", "").replace("source /opt/pynomaly/.env.production", "")
    assert app.start_script_problems(text, "/opt/pynomaly/.env.production") == [
        "no `set -e`", "does not source /opt/pynomaly/.env.production"]
    steps = EXPECTED["APP-START-MIGRATIONS-FIRST"]
    assert app.migration_order(text.replace("python -m alembic upgrade head\n", ""), steps)[0] is None
    swapped = text.replace("python -m alembic upgrade head\n", "") + "python -m alembic upgrade head\n"
    order = app.migration_order(swapped, steps)
    assert order != sorted(order)


def test_log_files():
    now, files = app.log_files("1700000000\n/var/log/pynomaly/access.log 5088 1699999990\n")
    assert now == 1700000000
    assert files == {"/var/log/pynomaly/access.log": (5088, 1699999990)}
    assert app.log_files("1700000000\n") == (1700000000, {})
