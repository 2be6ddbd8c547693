"""The guide's lines that no other area reads (issue 21 item 2): the Production Dockerfile's base
image and CMD as the app image was built, the Compose file's postgres, redis and nginx services,
`depends_on` and volumes, the GitHub Actions workflow's runners, checkout and remote update, and
postgresql-contrib on the database hosts.

- `app_image` (the deployment): the image of the running app containers, on the inventory's
  Docker engine: its CMD/ENTRYPOINT, WORKDIR and the official Python image's PYTHON_VERSION.
- `compose_services` (per app host): the Compose file's services besides pynomaly-app, its
  `depends_on` and top-level volumes (secret values are never kept: a secret is "${VAR}" or
  "<literal>").
- `workflow` (the deployment): runs-on and the first step of each job, and the deploy job's
  commands (the deployment repository, `audit_deploy_repo`).
- `pg_contrib` (per database host): the contrib extensions the server can create, and the
  package state of postgresql-contrib.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audit import evidence, guide
from audit.access import describe
from audit.facts import probe
from audit.outcomes import CouldNotAudit
from audit.probes.app import VARIABLE, compose_environment

# ---------------------------------------------------------------- the app image


@dataclass(frozen=True)
class AppImage:
    images: dict[str, dict]             # image id -> {containers, cmd, entrypoint, workdir, python_version}


def image_facts(config: dict) -> dict[str, Any]:
    """What the checks judge of an image's Config (its environment: PYTHON_VERSION only)."""
    env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    return {"cmd": list(config.get("Cmd") or []), "entrypoint": list(config.get("Entrypoint") or []),
            "workdir": config.get("WorkingDir") or "", "python_version": env.get("PYTHON_VERSION")}


@probe(per_host=False)
def app_image(session) -> AppImage:
    """The image of the running app containers (Compose label service=pynomaly-app)."""
    client = session.access.docker()
    try:
        containers = client.containers.list(filters={"label": f"{guide.COMPOSE_SERVICE_LABEL}={guide.APP_SERVICE}"})
        out: dict[str, dict] = {}
        for c in containers:
            image_id = c.attrs["Image"]
            if image_id not in out:
                out[image_id] = {"containers": [], **image_facts(client.images.get(image_id).attrs["Config"])}
            out[image_id]["containers"].append(c.name)
    except Exception as exc:  # noqa: BLE001 - any engine failure means: could not audit
        raise CouldNotAudit(None, "the Docker engine", describe(exc)) from None
    return AppImage(out)


# ---------------------------------------------------------------- the Compose file

def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value]
    return [str(v) for v in value] if isinstance(value, list) else ([str(value)] if value else [])


def service_facts(service: dict) -> dict[str, Any]:
    """A Compose service as the checks judge it; a secret's value is "${VAR}" or "<literal>"."""
    env = {}
    for key, value in compose_environment(service).items():
        if value is not None and evidence.SECRET_KEY.search(key) and not VARIABLE.match(value.strip()):
            value = "<literal>"
        env[key] = value
    command = service.get("command")
    command = " ".join(map(str, command)) if isinstance(command, list) else command
    if isinstance(command, str):  # redis-server --requirepass VALUE: only a ${VAR} is kept
        command = re.sub(r"(--requirepass\s+)(?!\$\{)\S+", r"\1<literal>", command)
    return {"image": service.get("image"), "environment": env, "command": command,
            "volumes": _strings(service.get("volumes")), "ports": _strings(service.get("ports")),
            "depends_on": _strings(service.get("depends_on")), "networks": _strings(service.get("networks"))}


@dataclass(frozen=True)
class ComposeServices:
    path: str
    problem: str | None = None          # missing, not YAML
    services: dict[str, dict] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()       # top-level named volumes


def parse_services(text: str | None, path: str = guide.COMPOSE_FILE) -> ComposeServices:
    if text is None:
        return ComposeServices(path, problem="missing")
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        return ComposeServices(path, problem=f"not valid YAML ({describe(exc)})")
    if not isinstance(doc, dict):
        return ComposeServices(path, problem="not a YAML mapping")
    services = {str(k): service_facts(v or {}) for k, v in (doc.get("services") or {}).items()}
    return ComposeServices(path, None, services, tuple(_strings(doc.get("volumes"))))


@probe()
def compose_services(session, host) -> ComposeServices:
    """The Compose file's services, depends_on and volumes (one command)."""
    text = session.access.collect(host, {"c": f"$SUDO cat {guide.COMPOSE_FILE} 2>/dev/null || echo '#missing'"})["c"]
    return parse_services(None if text.strip() == "#missing" else text)


# ---------------------------------------------------------------- the workflow

@dataclass(frozen=True)
class Workflow:
    path: str
    problem: str = ""
    runs_on: dict[str, Any] = field(default_factory=dict)       # job -> runs-on
    first_step: dict[str, str] = field(default_factory=dict)    # job -> `uses` of its first step ('' none)
    deploy: tuple[str, ...] = ()                                # the deploy job's command lines


@probe(per_host=False)
def workflow(session) -> Workflow:
    """runs-on and the first step of every job, and job deploy's commands."""
    from audit.probes.cicd import WORKFLOW, parse_job, read_workflow, steps

    repo = session.inventory.setting("audit_deploy_repo")
    if not repo:
        raise CouldNotAudit(None, "the deployment repository", "the inventory names none (all.vars.audit_deploy_repo)")
    path = Path(repo) / WORKFLOW
    doc, problem = read_workflow(path)
    if doc is None:
        return Workflow(str(path), problem)
    jobs = {str(k): v or {} for k, v in (doc.get("jobs") or {}).items()}
    return Workflow(str(path), "", {k: j.get("runs-on") for k, j in jobs.items()},
                    {k: str((steps(j) or [{}])[0].get("uses") or "") for k, j in jobs.items()},
                    parse_job(jobs.get("deploy") or {}).run)


def remote_commands(lines: tuple[str, ...] | list[str], server: str) -> list[str]:
    """What `ssh SERVER "..."` lines run on the server (the quoted command, quotes dropped)."""
    out = []
    for line in lines:
        match = re.match(rf"^ssh\s+{re.escape(server)}\s+(.+)$", line.strip())
        if match:
            out.append(match.group(1).strip().strip("\"'"))
    return out


# ---------------------------------------------------------------- postgresql-contrib

CONTRIB_SQL = "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)"


@dataclass(frozen=True)
class ContribFacts:
    available: tuple[str, ...]
    package: str                        # dpkg/rpm's words about postgresql-contrib


@probe()
def pg_contrib(session, host) -> ContribFacts:
    """The contrib extensions the server offers, and postgresql-contrib's package state."""
    want = session.expected("PG-CONTRIB-INSTALLED")["extensions"]
    rows = session.access.query(host, CONTRIB_SQL, (list(want),))
    package = session.access.collect(host, {"p": "dpkg-query -W -f='${Package} ${Status} ${Version}\\n' "
                                                  "'postgresql-contrib*' 2>&1 | grep ' installed ' "
                                                  "|| rpm -q postgresql-contrib 2>&1"})["p"]
    return ContribFacts(tuple(sorted(r["name"] for r in rows)), " ".join(package.split())[:300])
