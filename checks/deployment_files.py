"""Guide lines no other area reads (issue 21 item 2): the Production Dockerfile's base image and
CMD as the running app image shows them, the Compose file's postgres, redis and nginx services,
depends_on and volumes, the workflow's runners, checkout and remote update, and
postgresql-contrib. (nginx.conf's `pid /run/nginx.pid` is the catalogue value row NGINX-PID.)
What is read, and how: audit/probes/deployment_files.py.
"""

from __future__ import annotations

import re

import pytest

from audit import guide
from audit.marks import per_requirement
from audit.outcomes import CouldNotAudit
from audit.probes.cicd import has_command
from audit.probes.deployment_files import remote_commands

APP = pytest.mark.roles("app")
COMPOSE_SERVICES = {"APP-COMPOSE-POSTGRES-SERVICE": "postgres", "APP-COMPOSE-REDIS-SERVICE": "redis",
                    "APP-COMPOSE-NGINX-SERVICE": "nginx"}


# ---------------------------------------------------------------- the Production Dockerfile

def _images(judge, app_image) -> dict[str, dict]:
    if not app_image.images:
        judge.fail(f"no running container of service {guide.APP_SERVICE} on the Docker engine")
    return app_image.images


@pytest.mark.requirement("APP-IMAGE-BASE")
def check_app_image_base(judge, app_image):
    """"FROM python:3.11-slim" and "WORKDIR /app": the official image sets PYTHON_VERSION."""
    want = judge.expected
    found = {i[:19]: {"containers": v["containers"], "PYTHON_VERSION": v["python_version"], "WORKDIR": v["workdir"]}
             for i, v in _images(judge, app_image).items()}
    judge.each(found, lambda v: str(v["PYTHON_VERSION"] or "").startswith(want["python_version"] + ".")
               and v["WORKDIR"] == want["workdir"], what="app image", expected=want)


@pytest.mark.requirement("APP-IMAGE-CMD")
def check_app_image_cmd(judge, app_image):
    """"CMD ["python", "-m", "uvicorn", "src.pynomaly.presentation.api.app:app", "--host", "0.0.0.0",
    "--port", "8000"]" (no ENTRYPOINT in front of it)."""
    found = {i[:19]: {"ENTRYPOINT": v["entrypoint"], "CMD": v["cmd"]} for i, v in _images(judge, app_image).items()}
    judge.each(found, lambda v: not v["ENTRYPOINT"] and v["CMD"] == judge.expected, what="app image command")


# ---------------------------------------------------------------- docker-compose.prod.yml

def _compose(judge, compose_services):
    if compose_services.problem:
        judge.fail(f"{compose_services.path}: {compose_services.problem}")
    return compose_services


@APP
@per_requirement(*COMPOSE_SERVICES)
def check_compose_service(judge, compose_services, req_id):
    """The guide's postgres / redis / nginx services of docker-compose.prod.yml."""
    name, want = COMPOSE_SERVICES[req_id], judge.expected
    service = _compose(judge, compose_services).services.get(name)
    if service is None:
        judge.fail(f"{compose_services.path}: no service {name} (services: {sorted(compose_services.services)})")
    found = {k: service[k] for k in want}
    same = {k: set(found[k]) >= set(v) if isinstance(v, list) else
            all(found[k].get(e) == x for e, x in v.items()) if isinstance(v, dict) else found[k] == v
            for k, v in want.items()}
    judge.that(all(same.values()), what=f"service {name}", found=found, where=compose_services.path)


@APP
@pytest.mark.requirement("APP-COMPOSE-DEPENDS-ON")
def check_compose_app_depends_on(judge, compose_services):
    """"depends_on: - postgres - redis" (pynomaly-app)."""
    app = _compose(judge, compose_services).services.get(guide.APP_SERVICE) or {}
    found = app.get("depends_on") or []
    judge.that(set(found) >= set(judge.expected), what=f"{guide.APP_SERVICE} depends_on", found=found or "none",
               where=compose_services.path)


@APP
@pytest.mark.requirement("APP-COMPOSE-VOLUMES")
def check_compose_volumes(judge, compose_services):
    """"volumes: postgres_data: redis_data:"."""
    found = list(_compose(judge, compose_services).volumes)
    judge.that(set(found) >= set(judge.expected), what="named volumes", found=found or "none",
               where=compose_services.path)


# ---------------------------------------------------------------- the workflow

def _jobs(judge, workflow):
    if workflow.problem:
        judge.fail(workflow.problem)
    if not workflow.runs_on:
        judge.fail(f"{workflow.path}: no job")
    return workflow


@pytest.mark.requirement("CICD-WORKFLOW-RUNNER")
def check_workflow_runner(judge, workflow):
    """"runs-on: ubuntu-latest" (test, security-scan, deploy)."""
    judge.each(_jobs(judge, workflow).runs_on, lambda v: v == judge.expected, what="runs-on of each job")


def _checkout_version(uses: str) -> int | None:
    match = re.fullmatch(r"actions/checkout@v(\d+)(?:\.\d+)*", uses)
    return int(match.group(1)) if match else None


@pytest.mark.requirement("CICD-WORKFLOW-CHECKOUT")
def check_workflow_checkout(judge, workflow):
    """"- uses: actions/checkout@v3" first in every job."""
    want = judge.expected
    judge.each(_jobs(judge, workflow).first_step, lambda v: (_checkout_version(v) or 0) >= want["min_version"],
               what="first step of each job", expected=f"{want['action']}@v{want['min_version']} or later")


@pytest.mark.requirement("CICD-DEPLOY-REMOTE-UPDATE")
def check_deploy_job_updates_the_server(judge, workflow):
    """"docker tag ...; ssh $PROD_SERVER "docker pull ..."; ssh $PROD_SERVER "docker-compose -f
    /opt/pynomaly/docker-compose.prod.yml up -d"", the pull before the compose up."""
    want, lines = judge.expected, list(_jobs(judge, workflow).deploy)
    remote = remote_commands(lines, want["server"])
    at = [next((i for i, cmd in enumerate(remote) if has_command([cmd], step)), None) for step in want["remote"]]
    found = {"tag": any(want["tag"] in line for line in lines), "on the server": remote}
    judge.that(found["tag"] and None not in at and at == sorted(at), what="job deploy", found=found,
               where=workflow.path)


# ---------------------------------------------------------------- postgresql-contrib

@pytest.mark.roles("db_primary", "db_replica")
@pytest.mark.requirement("PG-CONTRIB-INSTALLED")
def check_postgresql_contrib(judge, pg_contrib):
    """"sudo apt install postgresql-14 postgresql-client-14 postgresql-contrib-14"."""
    want = judge.expected["extensions"]
    if not pg_contrib.available and not pg_contrib.package:
        raise CouldNotAudit(judge.host, "postgresql-contrib", "neither the server nor the package manager answered")
    judge.that(set(pg_contrib.available) >= set(want), what="contrib extensions available",
               found={"available": list(pg_contrib.available), "package": pg_contrib.package or "not installed"},
               expected=want, where="pg_available_extensions")
