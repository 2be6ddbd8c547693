"""Application runtime, Compose file, env-file and startup-script drifts: each breaks exactly the
requirements it names (checks/test_app.py audits them).

Runtime drifts recreate one instance (pynomaly-app-3, port 8002) with one thing changed and heal by
removing it and letting provision's own `setup.apps` start it again exactly as `up` does, then wait
until Docker reports it healthy again.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .. import containers, setup
from ..app import APP_DIR
from ..topology import APP_PORTS, app_container_name
from ..ui import wait_for
from . import BACKUPS, ENV_FILE, NGINX_RELOAD, Ctx, Drift, edit_file

COMPOSE_FILE = "/opt/pynomaly/docker-compose.prod.yml"
START_SCRIPT = "/opt/pynomaly/start_production.sh"
REPLICA = 3
REPLICA_NAME, REPLICA_PORT = app_container_name(REPLICA), APP_PORTS[REPLICA - 1]
HEALTHY_WAIT = 60


def _health(ctx: Ctx) -> str | None:
    c = ctx.client.containers.get(REPLICA_NAME)
    return (c.attrs["State"].get("Health") or {}).get("Status")


def _recreate(ctx: Ctx, *, user: str | None = None, env: dict | None = None,
              healthcheck: dict | None = None, command: list[str] | None = None,
              image: str | None = None, shared_logs: bool = True) -> None:
    """Run replica 3 again from the same image, labels, restart policy and volume, with changes.

    shared_logs=False leaves out the log volume shared with web1: Gunicorn started as root
    chowns its log files to root, which would lock the other instances out of them."""
    web1 = ctx.client.containers.get("web1")
    old = ctx.client.containers.get(REPLICA_NAME)
    image, labels = image or old.image.id, dict(old.labels)
    restart = old.attrs["HostConfig"]["RestartPolicy"]
    volumes = {m["Name"]: {"bind": m["Destination"], "mode": "rw"}
               for m in old.attrs["Mounts"] if m.get("Type") == "volume" and shared_logs}
    old.remove(force=True)
    kwargs: dict = {}
    if user:
        kwargs["user"] = user
    if healthcheck:
        kwargs["healthcheck"] = healthcheck
    if command:
        kwargs["command"] = command
    ctx.client.containers.run(
        image, name=REPLICA_NAME, detach=True, network_mode=f"container:{web1.id}",
        environment={**setup.app_env(ctx.st, REPLICA_PORT), **(env or {})}, labels=labels,
        restart_policy={"Name": restart["Name"], "MaximumRetryCount": restart["MaximumRetryCount"]},
        volumes=volumes, **kwargs)
    setup._wait_app(ctx.client, web1, REPLICA_NAME, REPLICA_PORT, timeout=90)


def _restore(ctx: Ctx) -> None:
    """Remove replica 3 and start it as `provision up` does; wait until it is healthy."""
    old = containers.get(ctx.client, REPLICA_NAME)
    if old is not None:
        old.remove(force=True)
    setup.apps(ctx.client, ctx.st, ctx.st.load()["images"]["app"])
    wait_for(f"{REPLICA_NAME} to be healthy", lambda: _health(ctx) == "healthy", timeout=HEALTHY_WAIT)


def _recreated(**changes) -> tuple:
    return (lambda c: _recreate(c, **changes)), _restore


EXPOSE_IMAGE = "pynomaly-drift:expose-9000"


def _expose_9000(ctx: Ctx) -> None:
    """The app image built again with EXPOSE 9000 instead of 8000 (every other layer comes from
    the build cache: well under a second), run as replica 3."""
    current = ctx.client.images.get(ctx.st.load()["images"]["app"])
    base = current.labels["org.pynomaly.base-image"]
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "app"
        shutil.copytree(APP_DIR, context, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        dockerfile = context / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text().replace("\nEXPOSE 8000\n", "\nEXPOSE 9000\n"))
        ctx.client.images.build(path=str(context), tag=EXPOSE_IMAGE, buildargs={"BASE_IMAGE": base},
                                rm=True, forcerm=True, timeout=600)
    _recreate(ctx, image=EXPOSE_IMAGE)


def _expose_heal(ctx: Ctx) -> None:
    _restore(ctx)
    ctx.client.images.remove(EXPOSE_IMAGE)


NGINX_CONF = "/etc/nginx/nginx.conf"


def _nginx_edit(name: str, old: str, new: str) -> tuple:
    """apply/heal pair: replace `old` (must occur once) by `new` in nginx.conf, reload; restore it."""
    backup = f"{BACKUPS}/{name}"

    def apply(ctx: Ctx) -> None:
        text = ctx.sh("web1", f"cat {NGINX_CONF}")
        if text.count(old) != 1:
            raise RuntimeError(f"{NGINX_CONF}: expected one {old!r}")
        ctx.sh("web1", f"mkdir -p {BACKUPS} && cp -p {NGINX_CONF} {backup}"
                       f" && printf '%s' \"$NEW\" > {NGINX_CONF}", env={"NEW": text.replace(old, new)})
        ctx.sh("web1", NGINX_RELOAD)

    def heal(ctx: Ctx) -> None:
        ctx.sh("web1", f"cp -p {backup} {NGINX_CONF} && rm -f {backup}")
        ctx.sh("web1", NGINX_RELOAD)

    return apply, heal


# A fixed answer of NGINX for the login location: a "token" for any credentials, not a JWT of the app.
FAKE_LOGIN = ('location /api/v1/auth/login {\n            default_type application/json;\n'
              '            return 200 \'{"access_token": "e30.e30.c2ln", "token_type": "bearer"}\';\n')


# Gunicorn flags of start_production.sh changed for one instance (the guide's values -> others).
GUNICORN_EDITS = [
    "s/--bind 0.0.0.0:/--bind 127.0.0.1:/",
    "s/--workers 4/--workers 2/",
    "s/uvicorn.workers.UvicornWorker/uvicorn.workers.UvicornH11Worker/",
    "s/--worker-connections 1000/--worker-connections 500/",
    "s/--max-requests 1000/--max-requests 2000/",
    "s/--max-requests-jitter 50/--max-requests-jitter 100/",
    "/--preload/d",
    "s/--timeout 30/--timeout 60/",
    "s/--keep-alive 2/--keep-alive 5/",
    "s#--access-logfile /var/log/pynomaly/access.log#--access-logfile /tmp/access.log#",
    "s#--error-logfile /var/log/pynomaly/error.log#--error-logfile /tmp/error.log#",
    "s/--log-level info/--log-level debug/",
]
GUNICORN_COMMAND = ["/bin/bash", "-c", "sed " + " ".join(f"-e '{e}'" for e in GUNICORN_EDITS)
                    + " /app/scripts/start_production.sh > /tmp/start.sh && exec bash /tmp/start.sh"]
GUIDE_HEALTHCHECK = "curl -f http://localhost:${PORT:-8000}/health || exit 1"
SECOND = 1_000_000_000


def _restart_policy(name: str, retries: int):
    def change(ctx: Ctx) -> None:
        if ctx.fleet:  # replica 3 of docker-compose, on app1's engine
            from ..fleet.drift_support import replica_name

            ctx.sh("app1", f"docker update --restart {name}{f':{retries}' if retries else ''} {replica_name(3)}"
                           " >/dev/null")
            return
        ctx.client.containers.get(REPLICA_NAME).update(
            restart_policy={"Name": name, "MaximumRetryCount": retries})
    return change


def _unhealthy(ctx: Ctx) -> None:
    _recreate(ctx, healthcheck={"test": ["CMD-SHELL", "curl -f http://localhost:8999/health || exit 1"],
                                "interval": 2 * SECOND, "timeout": 2 * SECOND, "retries": 1,
                                "start_period": 0})
    wait_for(f"{REPLICA_NAME} to be unhealthy", lambda: _health(ctx) == "unhealthy", timeout=30)


def _stopped_until_prometheus_sees_it() -> tuple:
    """Stop instance 3 and wait until Prometheus scraped its target down; start it and wait until
    every target is up again (MON-TARGETS-UP reads what Prometheus saw, every 15 s)."""
    from .monitoring import ALL_TARGETS_UP, TARGET_DOWN

    def apply(ctx: Ctx) -> None:
        if ctx.fleet:
            from ..fleet.drift_support import app_replica

            app_replica(ctx, 3, "stop")
        else:
            ctx.client.containers.get(app_container_name(3)).stop(timeout=20)
        ctx.sh("web1", TARGET_DOWN)

    def heal(ctx: Ctx) -> None:
        if ctx.fleet:
            from ..fleet.drift_support import app_replica

            app_replica(ctx, 3, "start")
        else:
            ctx.client.containers.get(app_container_name(3)).start()
        ctx.sh("web1", ALL_TARGETS_UP)

    return apply, heal


DRIFTS: tuple[Drift, ...] = (
    Drift("app-replica-stopped",
          ("SCALE-INSTANCES-MATCH-UPSTREAM", "CHK-SERVICES-RUNNING", "MON-TARGETS-UP",
           "APP-CONTAINERS-HEALTHY", "APP-GUNICORN-BIND", "APP-METRICS-ENDPOINT"),
          f"docker stop {app_container_name(3)} (port 8002; restart policy on-failure keeps it down)",
          *_stopped_until_prometheus_sees_it()),
    Drift("app-replica-unhealthy", ("APP-CONTAINERS-HEALTHY", "APP-HEALTHCHECK"),
          f"{REPLICA_NAME} recreated with a HEALTHCHECK probing a closed port every 2s (it turns unhealthy;"
          " the app itself still serves)",
          _unhealthy, _restore),
    Drift("app-replica-root-staging", ("APP-NON-ROOT-USER", "APP-HEALTHCHECK", "APP-COMPOSE-ENV-PRODUCTION"),
          f"{REPLICA_NAME} recreated as user root, with ENVIRONMENT=staging and HEALTHCHECK --retries=5",
          *_recreated(user="root", env={"ENVIRONMENT": "staging"}, shared_logs=False,
                      healthcheck={"test": ["CMD-SHELL", GUIDE_HEALTHCHECK], "interval": 30 * SECOND,
                                   "timeout": 10 * SECOND, "start_period": 5 * SECOND, "retries": 5})),
    Drift("app-replica-gunicorn-flags",
          ("APP-GUNICORN-BIND", "APP-GUNICORN-WORKERS", "APP-GUNICORN-WORKER-CLASS",
           "APP-GUNICORN-WORKER-CONNECTIONS", "APP-GUNICORN-MAX-REQUESTS", "APP-GUNICORN-MAX-REQUESTS-JITTER",
           "APP-GUNICORN-PRELOAD", "APP-GUNICORN-TIMEOUT", "APP-GUNICORN-KEEP-ALIVE", "APP-GUNICORN-ACCESS-LOG",
           "APP-GUNICORN-ERROR-LOG", "APP-GUNICORN-LOG-LEVEL"),
          f"{REPLICA_NAME} recreated with every Gunicorn flag off the guide (bind 127.0.0.1, 2 H11 workers,"
          " no --preload, logs in /tmp, log level debug, ...)",
          *_recreated(command=GUNICORN_COMMAND)),
    Drift("app-image-expose-9000", ("APP-EXPOSE-PORT",),
          f"{REPLICA_NAME} runs an app image built with EXPOSE 9000 instead of 8000",
          _expose_9000, _expose_heal),
    Drift("nginx-health-503", ("APP-HEALTH-ENDPOINT",),
          "web1: nginx.conf location /health answers 503 itself (the instances stay healthy)",
          *_nginx_edit("nginx-health-503", "location /health {", "location /health {\n            return 503;")),
    Drift("nginx-api-health-503", ("APP-API-V1-HEALTH",),
          "web1: nginx.conf has location = /api/v1/health answering 503",
          *_nginx_edit("nginx-api-health-503", "location /api/ {",
                       "location = /api/v1/health {\n            return 503;\n        }\n\n        location /api/ {")),
    Drift("nginx-login-fixed-token", ("APP-LOGIN-JWT", "APP-LOGIN-REJECTS-BAD-CREDENTIALS"),
          "web1: nginx.conf answers /api/v1/auth/login itself with 200 and a fixed, unsigned token",
          *_nginx_edit("nginx-login-fixed-token", "location /api/v1/auth/login {\n", FAKE_LOGIN)),
    Drift("app-restart-policy-always", ("APP-COMPOSE-RESTART-POLICY",),
          f"docker update --restart always {REPLICA_NAME} (guide: on-failure, at most 3 attempts)",
          _restart_policy("always", 0), _restart_policy("on-failure", 3)),
    Drift("compose-off-guide",
          ("APP-COMPOSE-REPLICAS", "APP-COMPOSE-RESTART-POLICY", "APP-COMPOSE-ENV-PRODUCTION",
           "APP-COMPOSE-NO-LITERAL-SECRETS"),
          f"web1: {COMPOSE_FILE} with replicas 2, max_attempts 5, ENVIRONMENT=staging and a literal JWT_SECRET",
          *edit_file("web1", COMPOSE_FILE,
                     "-e 's/replicas: 3/replicas: 2/' -e 's/max_attempts: 3/max_attempts: 5/'"
                     " -e 's/ENVIRONMENT=production/ENVIRONMENT=staging/'"
                     " -e 's/JWT_SECRET=${JWT_SECRET}/JWT_SECRET=jwt-literal-in-compose-file/'",
                     "true", "compose-off-guide")),
    Drift("start-script-off-guide", ("APP-START-SCRIPT", "APP-START-MIGRATIONS-FIRST"),
          f"web1: {START_SCRIPT} without `set -e` and without the alembic migration",
          *edit_file("web1", START_SCRIPT, "-e '/^set -e$/d' -e '/alembic upgrade head/d'", "true",
                     "start-script-off-guide")),
    Drift("env-debug-true", ("APP-ENV-DEBUG",),
          f"web1: DEBUG=true in {ENV_FILE}",
          *edit_file("web1", ENV_FILE, "'s/^DEBUG=false$/DEBUG=true/'", "true", "env-debug")),
    Drift("env-log-level-debug", ("APP-ENV-LOG-LEVEL",),
          f"web1: LOG_LEVEL=DEBUG in {ENV_FILE}",
          *edit_file("web1", ENV_FILE, "'s/^LOG_LEVEL=INFO$/LOG_LEVEL=DEBUG/'", "true", "env-log-level")),
    # running vs on disk (issue 19)
    Drift("app-env-not-reloaded", ("APP-ENV-RATE-LIMIT-WINDOW",),
          f"web1: RATE_LIMIT_WINDOW=60 in {ENV_FILE}, the app not restarted (its instances still run 3600)",
          *edit_file("web1", ENV_FILE, "'s/^RATE_LIMIT_WINDOW=3600$/RATE_LIMIT_WINDOW=60/'", "true",
                     "app-env-not-reloaded")),
    Drift("app-env-not-persisted", ("APP-ENV-LOG-LEVEL", "PERF-LOG-LEVEL"),
          f"{REPLICA_NAME} recreated with LOG_LEVEL=DEBUG ({ENV_FILE} still says INFO: the next restart "
          "from the file reverts it; the instance's own configuration logs at DEBUG too)",
          *_recreated(env={"LOG_LEVEL": "DEBUG"})),
    Drift("env-placeholder-secret", ("APP-ENV-SECRETS",),
          f"web1: SMTP_PASSWORD=secure_password_here (a guide placeholder) in {ENV_FILE}",
          *edit_file("web1", ENV_FILE, "'s/^SMTP_PASSWORD=.*/SMTP_PASSWORD=secure_password_here/'", "true",
                     "env-placeholder")),
    Drift("env-key-missing", ("APP-ENV-FILE-KEYS", "APP-ENV-GRAFANA-ENABLED"),
          f"web1: GRAFANA_ENABLED removed from {ENV_FILE}",
          *edit_file("web1", ENV_FILE, "'/^GRAFANA_ENABLED=/d'", "true", "env-key-missing")),
    Drift("env-values-off-guide",
          ("APP-ENV-ENVIRONMENT", "APP-ENV-SMTP-SERVER", "APP-ENV-SMTP-PORT", "APP-ENV-RATE-LIMIT-REQUESTS",
           "APP-ENV-RATE-LIMIT-WINDOW", "APP-ENV-PROMETHEUS-METRICS-ENABLED"),
          f"web1: {ENV_FILE} with ENVIRONMENT=staging, SMTP smtp.example.com:25, rate limit 100/60 s,"
          " PROMETHEUS_METRICS_ENABLED=false",
          *edit_file("web1", ENV_FILE,
                     "-e 's/^ENVIRONMENT=production$/ENVIRONMENT=staging/'"
                     " -e 's/^SMTP_SERVER=.*/SMTP_SERVER=smtp.example.com/' -e 's/^SMTP_PORT=.*/SMTP_PORT=25/'"
                     " -e 's/^RATE_LIMIT_REQUESTS=.*/RATE_LIMIT_REQUESTS=100/'"
                     " -e 's/^RATE_LIMIT_WINDOW=.*/RATE_LIMIT_WINDOW=60/'"
                     " -e 's/^PROMETHEUS_METRICS_ENABLED=.*/PROMETHEUS_METRICS_ENABLED=false/'",
                     "true", "env-values")),
    Drift("env-urls-off-guide", ("APP-ENV-DATABASE-URL", "APP-ENV-REDIS-URL"),
          f"web1: {ENV_FILE} with DATABASE_URL on port 6432 and REDIS_URL on database 2",
          *edit_file("web1", ENV_FILE,
                     "-e 's#^\\(DATABASE_URL=.*\\):5432/#\\1:6432/#' -e 's#^\\(REDIS_URL=.*:6379\\)/0$#\\1/2#'",
                     "true", "env-urls")),
)
