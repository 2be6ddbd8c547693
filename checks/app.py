"""Guide: Application Deployment - the Dockerfile, Docker Compose, .env.production, the startup
script and Gunicorn - and the live application: /health, /metrics, login (JWT). What is read, and
how: audit/probes/app.py.

The single values (each Gunicorn flag; each non-secret key of .env.production) are catalogue rows
judged by checks/values.py: a flag as the Gunicorn masters run it and as start_production.sh sets
it, a key as the app containers run it and as the file sets it once sourced. A host that runs
Gunicorn directly (`audit_settings.app_runtime: gunicorn`) has no Compose file nor app
container: those checks do not apply to it.
"""

from __future__ import annotations

import pytest

from audit import guide
from audit.judge import ON_DISK, RUNNING, Reading
from audit.marks import per_requirement
from audit.probes.app import across, healthcheck_differences, migration_order, seconds, start_script_problems

ACCESS_LOG_FRESH = 15 * 60  # "being written": touched within the last 15 minutes


def containers(server, app):
    """The app containers of a docker/compose host (not applicable on a Gunicorn host)."""
    if app.runtime == "gunicorn":
        pytest.skip(f"not applicable: {server.name} runs Gunicorn directly (audit_settings.app_runtime)")
    return app.instances()


def compose(judge, server, app):
    """The pynomaly-app service of docker-compose.prod.yml (not applicable on a Gunicorn host)."""
    if app.runtime == "gunicorn":
        pytest.skip(f"not applicable: {server.name} runs Gunicorn directly (audit_settings.app_runtime)")
    if app.compose is None or app.compose.problem:
        judge.fail(f"{guide.COMPOSE_FILE}: {app.compose.problem if app.compose else 'missing'}")
    return app.compose


# ---------------------------------------------------------------- Production Dockerfile

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-NON-ROOT-USER")
def check_app_runs_as_non_root_user(judge, server, app):
    """"RUN useradd -m -u 1000 pynomaly / USER pynomaly": the image user, each container's user and
    the uid of every process in the containers (or of the Gunicorn processes on the host)."""
    want = judge.expected
    uid, users = str(want["uid"]), (want["user"], str(want["uid"]))
    if app.runtime == "gunicorn":
        judge.each({p.pid: p.uid for p in app.gunicorn_processes()}, lambda u: u == uid,
                   what="uid of the Gunicorn processes")
        return
    judge.each({c.name: {"user": c.user, "image_user": c.image_user, "uids": sorted({p.uid for p in c.processes})}
                for c in containers(server, app)},
               lambda s: s["user"] in users and s["image_user"] in users and all(u == uid for u in s["uids"]),
               what="app container users")


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-EXPOSE-PORT")
def check_app_image_exposes_port(judge, server, app):
    """"EXPOSE 8000" in the image every app container runs."""
    want = f"{judge.expected}/tcp"
    judge.each({c.name: list(c.image_exposed) for c in containers(server, app)}, lambda ports: want in ports,
               what="ports the app image exposes", expected=want)


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-HEALTHCHECK")
def check_app_healthcheck_is_the_guides(judge, server, app):
    """"HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 CMD curl -f
    http://localhost:8000/health || exit 1": in the image, and as each container runs it
    (${PORT:-8000} counts as its default, 8000: documented in provision/app/README.md)."""
    judge.each({c.name: [f"image: {d}" for d in healthcheck_differences(c.image_healthcheck, judge.expected)]
                + [f"container: {d}" for d in healthcheck_differences(c.healthcheck, judge.expected)]
                for c in containers(server, app)}, lambda diffs: not diffs,
               what="HEALTHCHECK differences from the guide", expected=judge.expected)


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-CONTAINERS-HEALTHY")
def check_app_containers_are_running_and_healthy(judge, server, app):
    """"deploy: replicas: 3" running, each with Docker health status healthy (the guide's
    HEALTHCHECK passes; a container still "starting" was waited for, within one probe period)."""
    want, count = judge.expected, app.instance_count
    status = {c.name: f"{c.status}/{c.health}" for c in containers(server, app)}
    judge.that(sum(s == f"running/{want}" for s in status.values()) >= count
               and all(s == f"running/{want}" for s in status.values()),
               what="app containers (state/health)", found=status, expected=f"{count} running/{want}")


# ---------------------------------------------------------------- Docker Compose

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-REPLICAS")
def check_compose_replicas(judge, server, app):
    """"deploy: replicas: 3" for service pynomaly-app in docker-compose.prod.yml."""
    judge.equal(compose(judge, server, app).replicas, what="deploy.replicas of pynomaly-app",
                where=guide.COMPOSE_FILE)


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-RESTART-POLICY")
def check_compose_restart_policy(judge, server, app):
    """"restart_policy: condition: on-failure, delay: 5s, max_attempts: 3": in the Compose file, and
    the running containers' Docker restart policy (on-failure, at most 3; Docker has no delay)."""
    want = {**judge.expected, "delay": seconds(judge.expected["delay"])}
    file = compose(judge, server, app).restart_policy
    judge.that(file == want, what="restart_policy of pynomaly-app", found=file, expected=want, where=guide.COMPOSE_FILE)
    judge.each({c.name: {"condition": c.restart_policy.get("Name"),
                         "max_attempts": c.restart_policy.get("MaximumRetryCount")} for c in containers(server, app)},
               lambda p: p == {"condition": want["condition"], "max_attempts": want["max_attempts"]},
               what="restart policy of the app containers", expected=want)


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-ENV-PRODUCTION")
def check_compose_environment_is_production(judge, server, app):
    """"environment: - ENVIRONMENT=production": in the Compose file (what the next `up` starts) and
    in every running container."""
    filed = compose(judge, server, app).environment.get("ENVIRONMENT")
    running = containers(server, app)
    shown, value = across({c.name: c.env.get("ENVIRONMENT") for c in running})
    judge.sides({RUNNING: Reading(shown, value, f"environment of {', '.join(c.name for c in running) or 'none'}"),
                 ON_DISK: Reading(filed, filed, guide.COMPOSE_FILE)}, lambda v: v == judge.expected,
                what="ENVIRONMENT of pynomaly-app")


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-NO-LITERAL-SECRETS")
def check_compose_has_no_literal_secrets(judge, server, app):
    """"DATABASE_URL=postgresql://pynomaly_user:${DB_PASSWORD}@...", "JWT_SECRET=${JWT_SECRET}":
    secrets come from variables; none is written in the file."""
    service = compose(judge, server, app)
    judge.that(not service.literal_secrets, what="secrets written literally", found=list(service.literal_secrets),
               expected="none", where=guide.COMPOSE_FILE, allow_empty=True)
    judge.each({v: v in service.variables for v in judge.expected["variables"]}, bool,
               what="secret taken from a ${VARIABLE} by pynomaly-app", expected=judge.expected["variables"])


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-NETWORK")
def check_compose_network(judge, server, app):
    """"networks: - pynomaly-network" ... "pynomaly-network: driver: bridge": the service is on the
    bridge network, in the file and at runtime (network name with or without the project prefix)."""
    want, service = judge.expected, compose(judge, server, app)
    judge.that(want["network"] in service.networks, what="networks of pynomaly-app",
               found={"networks": list(service.networks), "network_mode": service.network_mode},
               expected=want["network"])
    judge.equal(service.network_drivers.get(want["network"], "bridge"), what=f"driver of {want['network']}",
                expected=want["driver"], where=guide.COMPOSE_FILE)
    judge.each({c.name: list(c.networks) or [c.network_mode] for c in containers(server, app)},
               lambda nets: any(n == want["network"] or n.endswith(f"_{want['network']}") for n in nets),
               what="networks of the app containers", expected=want["network"])


# ---------------------------------------------------------------- .env.production

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-ENV-FILE-KEYS")
def check_env_file_defines_every_key(judge, app):
    """The guide's .env.production: DATABASE_URL, REDIS_URL, JWT_SECRET, ... GRAFANA_ENABLED."""
    missing = [k for k in judge.expected if k not in (app.env_keys or ())]
    judge.that(not missing, what=f"keys {guide.ENV_FILE} assigns", found=app.env_keys and list(app.env_keys),
               why=f"missing {missing}")


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-ENV-SECRETS")
def check_env_secrets_are_set(judge, app):
    """"JWT_SECRET=${JWT_SECRET}" etc.: once sourced, every secret has a real value - not empty, not
    an unexpanded reference, not a placeholder such as secure_password_here (values never shown)."""
    want = judge.expected
    judge.each({k: app.secret_problems.get(k, "not read") or "set"
                for k in [*want["keys"], *(f"{u} password" for u in want["url_passwords"])]},
               lambda state: state == "set", what=f"secrets of {guide.ENV_FILE} once sourced", expected="set")


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-ENV-DATABASE-URL")
def check_env_database_url(judge, app):
    """"DATABASE_URL=postgresql://pynomaly_user:${DB_PASSWORD}@localhost:5432/pynomaly_prod" (host free):
    in the file once sourced and in the running containers' environment."""
    judge.sides(app.url_sides("DATABASE_URL", list(judge.expected)), lambda parts: parts == judge.expected,
                what="DATABASE_URL (no password)")


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-ENV-REDIS-URL")
def check_env_redis_url(judge, app):
    """"REDIS_URL=redis://:${REDIS_PASSWORD}@localhost:6379/0" (host free), with a password: in the
    file once sourced and in the running containers' environment."""
    want = {**judge.expected, "password_set": True}
    judge.sides(app.url_sides("REDIS_URL", list(want)), lambda parts: parts == want,
                what="REDIS_URL (no password shown; password_set: it has one)", expected=want)


# ---------------------------------------------------------------- start_production.sh

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-START-SCRIPT")
def check_start_script(judge, app):
    """"#!/bin/bash # /opt/pynomaly/start_production.sh set -e ... source /opt/pynomaly/.env.production"."""
    want = judge.expected
    if app.start_script is None:
        judge.fail(f"{want['path']} is missing")
    judge.that(bool((app.start_script_mode or 0) & 0o100), what=f"mode of {want['path']}",
               found=f"{app.start_script_mode or 0:o}", expected="executable (u+x)")
    problems = start_script_problems(app.start_script, want["env_file"])
    judge.that(not problems, what=want["path"], found=problems, expected=want, allow_empty=True)


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-START-MIGRATIONS-FIRST")
def check_start_script_migrates_before_gunicorn(judge, app):
    """"python -m alembic upgrade head" then "exec gunicorn ..." (python3 counts as python)."""
    order = migration_order(app.start_script or "", judge.expected)
    judge.that(None not in order and order == sorted(order), what=f"line of each step in {guide.START_SCRIPT}",
               found=dict(zip(judge.expected, order, strict=True)), expected=f"{judge.expected}, in this order")


# ---------------------------------------------------------------- Gunicorn (running masters)

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-GUNICORN-BIND")
def check_gunicorn_serves_the_app_on_each_port(judge, app):
    """"exec gunicorn src.pynomaly.presentation.api.app:app --bind 0.0.0.0:8000": one master per
    instance port (its bind, or the port its container's bind is published on), on 0.0.0.0,
    serving the app, and each port answers /health 200."""
    want, masters = judge.expected, app.masters()
    judge.each({m.where: {"app": m.command.app, "hosts": sorted({h for h, _ in m.command.bind_addresses})}
                for m in masters}, lambda m: m["app"] == want["app"] and m["hosts"] == [want["host"]],
               what="Gunicorn masters (app, binds)", expected={"app": want["app"], "host": want["host"]})
    bound = app.served_ports()
    judge.each({port: {"master": bound.get(port), "health": app.health.get(port)} for port in app.ports},
               lambda s: s["master"] is not None and s["health"] == "200",
               what="instance port: a Gunicorn master bound, /health on 127.0.0.1", expected="a master, 200")


@pytest.mark.roles("app")
@per_requirement("APP-GUNICORN-ACCESS-LOG", "APP-GUNICORN-ERROR-LOG", argname="log_req")
def check_gunicorn_log_file(judge, app, log_req):
    """"--access-logfile /var/log/pynomaly/access.log --error-logfile /var/log/pynomaly/error.log":
    the files exist on the app host, and the access log is being written (health checks and
    Prometheus scrapes keep it busy)."""
    path = judge.expected
    judge.that(path in app.log_files, what="log files on the app host (size, mtime)", found=app.log_files)
    if log_req == "APP-GUNICORN-ACCESS-LOG":
        size, mtime = app.log_files[path]
        judge.that(size > 0 and app.log_now - mtime <= ACCESS_LOG_FRESH, what=f"{path} (bytes, seconds since written)",
                   found=(size, app.log_now - mtime), expected=f"written within {ACCESS_LOG_FRESH // 60} min")


# ---------------------------------------------------------------- live: /metrics, /health, login

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-METRICS-ENDPOINT")
def check_each_instance_serves_metrics(judge, app):
    """prometheus.yml scrapes /metrics of each instance: http_requests_total (method, status) and the
    histogram http_request_duration_seconds."""
    want = judge.expected

    def lacking(metrics: dict) -> list[str]:
        return [m for m in want["metrics"] if m not in metrics] + [
            f"{m}{{{label}}}" for m, labels in want["labels"].items() for label in labels
            if m in metrics and label not in metrics[m]]

    judge.each({port: lacking(app.metrics.get(port, {})) for port in app.ports}, lambda missing: not missing,
               what="metrics missing from /metrics, per instance port", expected=want)


@per_requirement("APP-HEALTH-ENDPOINT", "APP-API-V1-HEALTH")
def check_public_health(judge, app_public, req_id):
    """"location /health { proxy_pass http://pynomaly_backend; }" and "curl .../api/v1/health":
    200 through NGINX at the public name."""
    want = judge.expected
    judge.equal(app_public.status.get(want["path"]), what=f"GET {want['path']}", expected=want["status"],
                where=app_public.url)


@pytest.mark.requirement("APP-LOGIN-JWT")
def check_login_returns_hs256_token_for_30_minutes(judge, app_login):
    """"JWT_ALGORITHM = "HS256"", "JWT_ACCESS_TOKEN_EXPIRE_MINUTES = 30": a token signed with the
    deployment's JWT secret, exp - iat = 30 min."""
    want, good = judge.expected, app_login.good
    what = f"POST {want['path']} with the inventory's credentials"
    judge.equal(good.status, what=f"{what}: status", expected=200)
    judge.that(good.token is not None and not good.token.problem, what=f"{what}: access_token",
               found=(good.token.problem or "a JWT") if good.token else "none", expected="a JWT")
    token = good.token
    judge.equal(token.header.get("alg"), what="the token's alg", expected=want["algorithm"])
    judge.that(token.signature_valid, what="the token's signature with the deployment's JWT secret",
               found="valid" if token.signature_valid else "invalid", expected="valid")
    judge.that(token.lifetime_minutes is not None and abs(token.lifetime_minutes - want["expire_minutes"]) <= 1,
               what="the token's lifetime (exp - iat, minutes)", found=token.lifetime_minutes,
               expected=want["expire_minutes"])


@pytest.mark.requirement("APP-LOGIN-REJECTS-BAD-CREDENTIALS")
def check_login_rejects_a_wrong_password(judge, app_login):
    """Login with a wrong password is refused: 401/403 and no token."""
    bad = app_login.bad
    judge.that(bad.token is None and bad.status in judge.expected["status_in"], what="login with a wrong password",
               found={"status": bad.status, "token": bad.token is not None})
