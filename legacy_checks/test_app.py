"""Guide: Application Deployment - the Dockerfile, Docker Compose, .env.production, the startup
script and Gunicorn's flags - and the live application: /health, /metrics, login (JWT).

Where it reads:
- the app host over SSH, one `collect` group per host: docker-compose.prod.yml,
  start_production.sh, .env.production (raw, and once sourced the way the script does), the
  Gunicorn log files, `ps` (hosts that run Gunicorn directly), and /health and /metrics of
  every instance (curl on the host: the instances are not public);
- the Docker engine of the inventory (`audit_docker_url`), once per run: the containers with
  the Compose label `com.docker.compose.service=pynomaly-app`, their image's config and their
  processes (`top`): user, HEALTHCHECK, health status, restart policy, ENVIRONMENT, and the
  Gunicorn master's command line;
- the public endpoint through NGINX: /health, /api/v1/health, and at most two logins per run
  (one good, one bad: the login location is rate limited and watched by fail2ban).

A host runs the app in Docker (the default) or runs Gunicorn directly: inventory host var
`audit_settings: {app_runtime: gunicorn}`. Environment values are never shown in evidence nor in
assertion messages (they name keys only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from audit import evidence
from audit.evidence import MASK, attach, compare, mask_assignments
from audit.hostparse import script_commands
from audit.http import public_session
from audit.marks import per_requirement

APP_DIR = "/opt/pynomaly"
COMPOSE_FILE = f"{APP_DIR}/docker-compose.prod.yml"
START_SCRIPT = f"{APP_DIR}/start_production.sh"
ENV_FILE = f"{APP_DIR}/.env.production"
SERVICE = "pynomaly-app"
SERVICE_LABEL = "com.docker.compose.service"
DEFAULT_INSTANCES = 3
# Non-secret environment variables whose values may be shown in evidence.
PUBLIC_ENV = ("ENVIRONMENT", "DEBUG", "LOG_LEVEL", "SMTP_SERVER", "SMTP_PORT", "RATE_LIMIT_REQUESTS",
              "RATE_LIMIT_WINDOW", "PROMETHEUS_METRICS_ENABLED", "GRAFANA_ENABLED", "PORT")
# How long the healthy check waits for a container whose health is still "starting".
HEALTH_WAIT_MAX = 45


# ---------------------------------------------------------------- parsing (unit-tested)

def env_file_keys(text: str) -> list[str]:
    """Keys assigned in a shell env file (`KEY=...` or `export KEY=...`), in order."""
    keys = []
    for line in text.splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Za-z_]\w*)=", line)
        if m and m.group(1) not in keys:
            keys.append(m.group(1))
    return keys


def redact_env(text: str, public: tuple[str, ...] = PUBLIC_ENV) -> str:
    """Env-file text for evidence: values of keys outside `public` masked, comments kept."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\s*(?:export\s+)?)([A-Za-z_]\w*)=(.*)$", line)
        if m and m.group(2) not in public:
            line = f"{m.group(1)}{m.group(2)}={MASK if m.group(3) else ''}"
        out.append(line)
    return mask_assignments("\n".join(out))


def sourced_env_command(path: str, keys: list[str]) -> str:
    """Shell: source `path` in an empty environment, as start_production.sh does (set -a), and print
    `KEY SET BASE64(VALUE)` per key (SET is 1 when defined), so no value can break the framing."""
    body = (f"set -a; . {shlex.quote(path)} >/dev/null 2>&1; set +a; "
            f"for k in {' '.join(keys)}; do eval \"s=\\${{$k+1}}\"; eval \"v=\\${{$k-}}\"; "
            "printf '%s %s %s\\n' \"$k\" \"${s:-0}\" \"$(printf '%s' \"$v\" | base64 -w0)\"; done")
    return f"test -r {shlex.quote(path)} && env -i PATH=/usr/bin:/bin bash -c {shlex.quote(body)}"


def parse_sourced_env(output: str) -> dict[str, str | None]:
    """KEY -> value (None when not defined) from `sourced_env_command` output."""
    values: dict[str, str | None] = {}
    for line in output.splitlines():
        parts = line.split(" ")
        if len(parts) >= 2 and re.fullmatch(r"[A-Za-z_]\w*", parts[0]):
            encoded = parts[2] if len(parts) > 2 else ""
            values[parts[0]] = base64.b64decode(encoded).decode(errors="replace") if parts[1] == "1" else None
    return values


VARIABLE = re.compile(r"^\$\{[A-Za-z_]\w*(?::?[-?][^}]*)?\}$")


def secret_problem(value: str | None, placeholders: list[str]) -> str | None:
    """Why a secret value is not set properly (None when it is): undefined, empty, unexpanded, placeholder."""
    if value is None:
        return "not defined"
    if not value.strip():
        return "empty"
    if "${" in value or re.search(r"\$[A-Za-z_]", value):
        return "an unexpanded ${...} reference"
    lowered = value.strip().lower()
    if lowered in {p.lower() for p in placeholders} or lowered in {"changeme", "change_me", "password", "secret"}:
        return "a placeholder of the guide"
    return None


def url_password(url: str | None) -> str | None:
    """The password of a URL (None when the URL has none)."""
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def url_parts(url: str | None) -> dict[str, Any]:
    """scheme, user, password set?, host, port, path of a URL - never the password itself."""
    if not url:
        return {}
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return {"scheme": parts.scheme, "user": parts.username, "password_set": bool(parts.password),
            "host": parts.hostname, "port": port, "path": parts.path.lstrip("/")}


def mask_config(text: str) -> str:
    """Compose/script text for evidence: URL passwords and secret-looking assignments masked,
    unless they are pure ${VAR} references (those are the point of the check)."""
    def url(m: re.Match) -> str:
        return m.group(0) if VARIABLE.match(m.group(2)) else f"{m.group(1)}{MASK}@"

    text = re.sub(r"(://[^:/@\s]*:)([^@\s]+)@", url, text)

    def assignment(m: re.Match) -> str:
        key, sep, value = m.group(1), m.group(2), m.group(3)
        if evidence.SECRET_KEY.search(key) and value.strip() and not VARIABLE.match(value.strip().strip("'\"")):
            return f"{key}{sep}{MASK}"
        return m.group(0)

    text = re.sub(r"([A-Za-z_][\w.-]*)(\s*[=:]\s*)([^\n]*)", assignment, text)
    return evidence.mask(text)


def compose_service(doc: dict, name: str = SERVICE) -> dict:
    services = (doc or {}).get("services") or {}
    if name not in services:
        raise AssertionError(f"docker-compose.prod.yml has no service {name} (services: {sorted(services)})")
    return services[name] or {}


def compose_environment(service: dict) -> dict[str, str | None]:
    """A Compose service's `environment` (list of KEY=VALUE or mapping) as a dict."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): (None if v is None else str(v)) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def literal_secrets(doc: dict) -> list[str]:
    """`service.KEY` of every secret written literally in a Compose file: a secret-looking key, or a
    URL password, whose value is not a ${VAR} reference."""
    found = []
    for sname, service in ((doc or {}).get("services") or {}).items():
        for key, value in compose_environment(service or {}).items():
            if value is None or not value.strip():
                continue
            if evidence.SECRET_KEY.search(key) and not VARIABLE.match(value.strip()):
                found.append(f"{sname}.{key}")
            else:
                m = re.search(r"://[^:/@\s]*:([^@\s]+)@", value)
                if m and not VARIABLE.match(m.group(1)):
                    found.append(f"{sname}.{key} (URL password)")
    return found


def referenced_variables(service: dict) -> set[str]:
    names = set()
    for value in compose_environment(service).values():
        names.update(re.findall(r"\$\{([A-Za-z_]\w*)", value or ""))
    return names


def seconds(value: Any) -> float | None:
    """Compose/Docker durations: '5s', '1m30s', '500ms', a number of seconds, or nanoseconds (int > 1e6)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return value / 1e9 if value >= 1e6 else float(value)
    total, text = 0.0, str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    for number, unit in parts:
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def healthcheck_command(test: list[str] | str | None) -> str:
    """A HEALTHCHECK's command as a shell string, ${VAR:-default} replaced by the default."""
    if not test:
        return ""
    if isinstance(test, list):
        kind, args = test[0], test[1:]
        text = args[0] if kind == "CMD-SHELL" and args else " ".join(args) if kind == "CMD" else ""
    else:
        text = test
    return re.sub(r"\$\{[A-Za-z_]\w*:-([^}]*)\}", r"\1", text).strip()


def healthcheck_differences(config: dict | None, guide: dict) -> list[str]:
    """What differs between a Docker Healthcheck config (ns durations) and the guide's values."""
    if not config or not config.get("Test") or config["Test"] == ["NONE"]:
        return ["no HEALTHCHECK"]
    diffs = []
    for key, docker_key in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod")):
        have, want = seconds(config.get(docker_key) or 0), seconds(guide[key])
        if have != want:
            diffs.append(f"{key} {have:g}s (guide {want:g}s)")
    if int(config.get("Retries") or 0) != int(guide["retries"]):
        diffs.append(f"retries {config.get('Retries')} (guide {guide['retries']})")
    if healthcheck_command(config.get("Test")) != guide["test"]:
        diffs.append(f"test {healthcheck_command(config.get('Test'))!r} (guide {guide['test']!r})")
    return diffs


GUNICORN_SHORT = {"-w": "--workers", "-k": "--worker-class", "-b": "--bind", "-t": "--timeout"}
GUNICORN_FLAGS = {"--preload", "--reload", "--daemon", "-D", "--reuse-port", "--check-config",
                  "--print-config", "--spew", "--capture-output", "--enable-stdio-inheritance"}


@dataclass
class GunicornCommand:
    app: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    binds: list[str] = field(default_factory=list)


def parse_gunicorn(cmdline: str) -> GunicornCommand | None:
    """The app, options and flags of a gunicorn command line (None when it is not gunicorn)."""
    tokens = shlex.split(cmdline)
    start = next((i for i, t in enumerate(tokens) if t.rsplit("/", 1)[-1] == "gunicorn"), None)
    if start is None:
        return None
    cmd, rest, i = GunicornCommand(), tokens[start + 1:], 0
    while i < len(rest):
        tok = rest[i]
        if tok.startswith("-"):
            name, eq, value = tok.partition("=")
            name = GUNICORN_SHORT.get(name, name)
            if eq:
                pass
            elif name in GUNICORN_FLAGS or i + 1 >= len(rest) or rest[i + 1].startswith("--"):
                cmd.flags.add(name)
                i += 1
                continue
            else:
                value = rest[i + 1]
                i += 1
            if name == "--bind":
                cmd.binds.append(value)
            cmd.options[name] = value
        elif cmd.app is None:
            cmd.app = tok
        i += 1
    return cmd


def gunicorn_masters(processes: list[dict]) -> list[dict]:
    """The gunicorn processes whose parent is not a gunicorn process (`processes`: pid, ppid, uid, args)."""
    gunicorn = {p["pid"]: p for p in processes if parse_gunicorn(p["args"]) is not None}
    return [p for p in gunicorn.values() if p["ppid"] not in gunicorn]


def parse_ps(text: str) -> list[dict]:
    """`ps -eo pid,ppid,uid,args` output (with or without header) as dicts."""
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].isdigit():
            rows.append({"pid": parts[0], "ppid": parts[1], "uid": parts[2], "args": parts[3]})
    return rows


def bind_port(bind: str) -> tuple[str, int | None]:
    host, _, port = bind.rpartition(":")
    return host, int(port) if port.isdigit() else None


def metric_names(text: str) -> dict[str, set[str]]:
    """Prometheus exposition: sample name -> label names seen."""
    names: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+\S+", line)
        if m and not line.startswith("#"):
            labels = set(re.findall(r"([a-zA-Z_]\w*)=\"", m.group(2) or ""))
            names.setdefault(m.group(1), set()).update(labels)
    return names


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def decode_jwt(token: str, secret: str) -> tuple[dict, dict, bool]:
    """(header, payload, signature valid with HS256 and `secret`) of a compact JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AssertionError(f"the access token is not a compact JWT ({len(parts)} parts)")
    header, payload = json.loads(_b64url(parts[0])), json.loads(_b64url(parts[1]))
    digest = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    return header, payload, hmac.compare_digest(digest, _b64url(parts[2]))


# ---------------------------------------------------------------- what the host shows (one round trip)

def instance_ports(server, expected) -> list[int]:
    ports = list(expected("APP-GUNICORN-BIND")["ports"])
    count = server.host_vars.vars.get("audit_app_instances") or DEFAULT_INSTANCES
    return ports[:count] if count <= len(ports) else ports + [ports[-1] + i for i in range(1, count - len(ports) + 1)]


def app_runtime(server) -> str:
    return ((server.host_vars.vars.get("audit_settings") or {}).get("app_runtime") or "docker").lower()


def host_view(server, expected) -> dict[str, str]:
    keys = list(expected("APP-ENV-FILE-KEYS"))
    commands = {
        "compose": f"cat {COMPOSE_FILE}",
        "start_script": f"cat {START_SCRIPT}",
        "start_script_stat": f"stat -L -c '%a %U %F' {START_SCRIPT}",
        "env_file": f"cat {ENV_FILE}",
        "env_sourced": sourced_env_command(ENV_FILE, keys),
        "logs": f"date +%s; stat -c '%n %s %Y' {expected('APP-GUNICORN-ACCESS-LOG')} "
                f"{expected('APP-GUNICORN-ERROR-LOG')}",
        "ps": "ps -eo pid,ppid,uid,args",
    }
    for port in instance_ports(server, expected):
        commands[f"health_{port}"] = (f"curl -sS -o /dev/null -w '%{{http_code}}\\n' --max-time 5 "
                                      f"http://127.0.0.1:{port}/health")
        commands[f"metrics_{port}"] = f"curl -fsS --max-time 5 http://127.0.0.1:{port}/metrics"
    return server.collect("app", commands)


@pytest.fixture
def view(server, expected) -> dict[str, str]:
    return host_view(server, expected)


@pytest.fixture
def sourced(view) -> dict[str, str | None]:
    values = parse_sourced_env(view["env_sourced"])
    if not values:
        raise RuntimeError(f"cannot read {ENV_FILE} (missing, or not readable by the audit user)")
    for key, value in values.items():
        if key not in PUBLIC_ENV and value:
            evidence.register_secret(value)
            evidence.register_secret(url_password(value))
    return values


@pytest.fixture
def compose_doc(server, view) -> dict:
    if app_runtime(server) != "docker":
        pytest.skip(f"{server.name} runs Gunicorn directly: no Compose deployment to audit")
    attach("docker-compose.prod.yml (secrets masked)", mask_config(view["compose"]) or "(missing)")
    if not view["compose"]:
        raise AssertionError(f"{COMPOSE_FILE} is missing or empty")
    return yaml.safe_load(view["compose"]) or {}


# ---------------------------------------------------------------- the Docker engine (once per run)

@dataclass
class AppContainer:
    name: str
    status: str
    health: str | None
    user: str
    healthcheck: dict | None
    image: str
    image_user: str
    image_healthcheck: dict | None
    image_exposed: list[str]
    restart_policy: dict
    environment: str | None  # ENVIRONMENT only: other values are never kept
    networks: list[str]
    network_mode: str
    processes: list[dict]


class Engine:
    """The app containers on one Docker engine, read once (plus re-reads of health)."""

    def __init__(self, url: str):
        import docker

        kwargs = {"use_ssh_client": True} if url.startswith("ssh://") else {}
        self.client = docker.DockerClient(base_url=url, timeout=20, **kwargs)
        self.url = url
        self.containers = [self._read(c) for c in self.client.containers.list(
            all=True, filters={"label": f"{SERVICE_LABEL}={SERVICE}"})]
        self.containers.sort(key=lambda c: c.name)

    def _read(self, c) -> AppContainer:
        attrs, image = c.attrs, self.client.images.get(c.attrs["Image"]).attrs
        env = dict(e.split("=", 1) for e in attrs["Config"].get("Env") or [] if "=" in e)
        processes = []
        if c.status == "running":
            top = c.top(ps_args="-ww -o pid,ppid,uid,args")  # -ww: dockerd may run ps with 80 columns
            titles = [t.lower() for t in top["Titles"]]
            processes = [{"pid": r[titles.index("pid")], "ppid": r[titles.index("ppid")],
                          "uid": r[titles.index("uid")], "args": r[-1]} for r in top["Processes"] or []]
        return AppContainer(
            name=c.name, status=c.status, health=(attrs["State"].get("Health") or {}).get("Status"),
            user=attrs["Config"].get("User") or "", healthcheck=attrs["Config"].get("Healthcheck"),
            image=attrs["Config"].get("Image", ""), image_user=image["Config"].get("User") or "",
            image_healthcheck=image["Config"].get("Healthcheck"),
            image_exposed=sorted((image["Config"].get("ExposedPorts") or {}).keys()),
            restart_policy=attrs["HostConfig"].get("RestartPolicy") or {},
            environment=env.get("ENVIRONMENT"),
            networks=sorted((attrs["NetworkSettings"].get("Networks") or {}).keys()),
            network_mode=attrs["HostConfig"].get("NetworkMode", ""), processes=processes)

    def health(self, name: str) -> str | None:
        c = self.client.containers.get(name)
        return (c.attrs["State"].get("Health") or {}).get("Status")

    def summary(self) -> list[dict]:
        return [{k: v for k, v in vars(c).items() if k != "processes"} for c in self.containers]


_engines: dict[str, Engine] = {}


@pytest.fixture
def engine(server, inventory) -> Engine:
    """The Docker engine that runs this host's app containers (skip for Gunicorn-direct hosts)."""
    if app_runtime(server) != "docker":
        pytest.skip(f"{server.name} runs Gunicorn directly (audit_settings.app_runtime), not Docker")
    url = server.host_vars.vars.get("audit_docker_url") or inventory.setting("audit_docker_url")
    if not url:
        raise RuntimeError("no Docker endpoint: set audit_docker_url in the inventory")
    if url not in _engines:
        _engines[url] = Engine(url)
    return _engines[url]


@pytest.fixture
def masters(server, view, request) -> list[dict]:
    """The Gunicorn master processes of this host's app instances (pid, ppid, uid, args, where)."""
    if app_runtime(server) == "docker":
        eng = request.getfixturevalue("engine")
        found = [{**p, "where": c.name} for c in eng.containers for p in gunicorn_masters(c.processes)]
    else:
        found = [{**p, "where": server.name} for p in gunicorn_masters(parse_ps(view["ps"]))]
    attach("gunicorn master processes", "\n".join(f"{p['where']} pid {p['pid']} uid {p['uid']}: {p['args']}"
                                                  for p in found) or "none")
    return found


def _count(server) -> int:
    return server.host_vars.vars.get("audit_app_instances") or DEFAULT_INSTANCES


# ---------------------------------------------------------------- Production Dockerfile

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-NON-ROOT-USER")
def test_app_runs_as_non_root_user(server, expected, request, view):
    """"RUN useradd -m -u 1000 pynomaly / USER pynomaly": the image user, each container's user and
    the uid of every process in the containers (or of the Gunicorn processes on the host)."""
    want = expected("APP-NON-ROOT-USER")
    if app_runtime(server) == "docker":
        eng = request.getfixturevalue("engine")
        seen = {c.name: {"user": c.user, "image_user": c.image_user,
                         "uids": sorted({p["uid"] for p in c.processes})} for c in eng.containers}
        bad = {n: s for n, s in seen.items()
               if s["user"] not in (want["user"], str(want["uid"]))
               or s["image_user"] not in (want["user"], str(want["uid"]))
               or any(u != str(want["uid"]) for u in s["uids"])}
    else:
        gunicorn = [p for p in parse_ps(view["ps"]) if parse_gunicorn(p["args"])]
        seen = {p["pid"]: {"uid": p["uid"]} for p in gunicorn}
        bad = {pid: s for pid, s in seen.items() if s["uid"] != str(want["uid"])}
    compare("app users", seen, want)
    assert seen, f"{server.name}: no app container or Gunicorn process found"
    assert not bad, f"{server.name}: not running as {want['user']} (uid {want['uid']}): {bad}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-EXPOSE-PORT")
def test_app_image_exposes_port(server, engine, expected):
    """"EXPOSE 8000" in the image every app container runs."""
    want = f"{expected('APP-EXPOSE-PORT')}/tcp"
    seen = {c.name: c.image_exposed for c in engine.containers}
    compare("exposed ports", seen, want)
    assert seen, f"{server.name}: no app container found on {engine.url}"
    bad = {n: p for n, p in seen.items() if want not in p}
    assert not bad, f"{server.name}: image does not expose {want}: {bad}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-HEALTHCHECK")
def test_app_healthcheck_is_the_guides(server, engine, expected):
    """"HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 CMD curl -f
    http://localhost:8000/health || exit 1": in the image, and as each container runs it
    (${PORT:-8000} counts as its default, 8000: documented in provision/app/README.md)."""
    guide = expected("APP-HEALTHCHECK")
    seen = {c.name: {"image": c.image_healthcheck, "container": c.healthcheck} for c in engine.containers}
    attach("healthchecks", seen, kind="json")
    assert seen, f"{server.name}: no app container found on {engine.url}"
    bad = {}
    for name, hc in seen.items():
        diffs = [f"image: {d}" for d in healthcheck_differences(hc["image"], guide)]
        diffs += [f"container: {d}" for d in healthcheck_differences(hc["container"], guide)]
        if diffs:
            bad[name] = diffs
    assert not bad, f"{server.name}: HEALTHCHECK differs from the guide: {bad}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-CONTAINERS-HEALTHY")
def test_app_containers_are_running_and_healthy(server, engine, expected):
    """"deploy: replicas: 3" running, each with Docker health status healthy (the guide's
    HEALTHCHECK passes). A container still "starting" is waited for, within one probe period."""
    want, count = expected("APP-CONTAINERS-HEALTHY"), _count(server)
    status = {c.name: {"state": c.status, "health": c.health} for c in engine.containers}
    deadline = time.monotonic() + HEALTH_WAIT_MAX
    while any(s["health"] == "starting" for s in status.values()) and time.monotonic() < deadline:
        time.sleep(3)
        for name, s in status.items():
            if s["health"] == "starting":
                s["health"] = engine.health(name)
    compare("app containers", status, {"count": count, "state": "running", "health": want})
    running = {n for n, s in status.items() if s["state"] == "running" and s["health"] == want}
    assert len(running) >= count, (
        f"{server.name}: {len(running)} of {count} app containers running and {want}: {status}")
    bad = {n: s for n, s in status.items() if n not in running}
    assert not bad, f"{server.name}: app containers not running/{want}: {bad}"


# ---------------------------------------------------------------- Docker Compose

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-REPLICAS")
def test_compose_replicas(server, compose_doc, expected):
    """"deploy: replicas: 3" for service pynomaly-app in docker-compose.prod.yml."""
    replicas = (compose_service(compose_doc).get("deploy") or {}).get("replicas")
    compare("deploy.replicas", replicas, expected("APP-COMPOSE-REPLICAS"))
    assert replicas == expected("APP-COMPOSE-REPLICAS"), (
        f"{server.name}: {SERVICE} deploy.replicas is {replicas}, guide: {expected('APP-COMPOSE-REPLICAS')}")


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-RESTART-POLICY")
def test_compose_restart_policy(server, compose_doc, expected, request):
    """"restart_policy: condition: on-failure, delay: 5s, max_attempts: 3": in the Compose file, and
    the running containers' Docker restart policy (on-failure, at most 3; Docker has no delay)."""
    want = expected("APP-COMPOSE-RESTART-POLICY")
    policy = (compose_service(compose_doc).get("deploy") or {}).get("restart_policy") or {}
    have = {"condition": policy.get("condition"), "delay": seconds(policy.get("delay")),
            "max_attempts": policy.get("max_attempts")}
    guide = {"condition": want["condition"], "delay": seconds(want["delay"]), "max_attempts": want["max_attempts"]}
    runtime = {}
    if app_runtime(server) == "docker":
        runtime = {c.name: c.restart_policy for c in request.getfixturevalue("engine").containers}
    compare("restart policy", {"compose": have, "containers": runtime}, guide)
    assert have == guide, f"{server.name}: {SERVICE} restart_policy is {have}, guide: {guide}"
    bad = {n: p for n, p in runtime.items()
           if p.get("Name") != want["condition"] or p.get("MaximumRetryCount") != want["max_attempts"]}
    assert not bad, f"{server.name}: container restart policy differs from on-failure/{want['max_attempts']}: {bad}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-ENV-PRODUCTION")
def test_compose_environment_is_production(server, compose_doc, expected, request):
    """"environment: - ENVIRONMENT=production": in the Compose file and in every running container."""
    want = expected("APP-COMPOSE-ENV-PRODUCTION")
    in_file = compose_environment(compose_service(compose_doc)).get("ENVIRONMENT")
    runtime = {}
    if app_runtime(server) == "docker":
        runtime = {c.name: c.environment for c in request.getfixturevalue("engine").containers}
    compare("ENVIRONMENT", {"compose": in_file, "containers": runtime}, want)
    assert in_file == want, f"{server.name}: {SERVICE} ENVIRONMENT is {in_file!r} in the Compose file, guide: {want}"
    bad = {n: v for n, v in runtime.items() if v != want}
    assert not bad, f"{server.name}: containers without ENVIRONMENT={want}: {bad}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-NO-LITERAL-SECRETS")
def test_compose_has_no_literal_secrets(server, compose_doc, expected):
    """"DATABASE_URL=postgresql://pynomaly_user:${DB_PASSWORD}@...", "JWT_SECRET=${JWT_SECRET}":
    secrets come from variables; none is written in the file."""
    want = expected("APP-COMPOSE-NO-LITERAL-SECRETS")["variables"]
    used = referenced_variables(compose_service(compose_doc))
    literal = literal_secrets(compose_doc)
    compare("secret variables", {"referenced": sorted(used), "literal": literal}, want)
    assert not literal, f"{server.name}: secrets written literally in {COMPOSE_FILE}: {literal}"
    missing = [v for v in want if v not in used]
    assert not missing, f"{server.name}: {SERVICE} does not take {missing} from variables"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-COMPOSE-NETWORK")
def test_compose_network(server, compose_doc, expected, request):
    """"networks: - pynomaly-network" ... "pynomaly-network: driver: bridge": the service is on the
    bridge network, in the file and at runtime (network name with or without the project prefix)."""
    want = expected("APP-COMPOSE-NETWORK")
    service = compose_service(compose_doc)
    nets = service.get("networks") or []
    nets = list(nets) if isinstance(nets, (list, dict)) else []
    driver = (((compose_doc.get("networks") or {}).get(want["network"])) or {}).get("driver", "bridge")
    runtime = {}
    if app_runtime(server) == "docker":
        runtime = {c.name: c.networks or [c.network_mode] for c in request.getfixturevalue("engine").containers}
    compare("networks", {"service": nets, "network_mode": service.get("network_mode"), "driver": driver,
                         "containers": runtime}, want)
    assert want["network"] in nets, (
        f"{server.name}: {SERVICE} is not on {want['network']} (networks {nets}, "
        f"network_mode {service.get('network_mode')!r})")
    assert driver == want["driver"], f"{server.name}: {want['network']} driver {driver}, guide {want['driver']}"
    bad = {n: v for n, v in runtime.items() if not any(x == want["network"] or x.endswith(f"_{want['network']}")
                                                       for x in v)}
    assert not bad, f"{server.name}: containers not on {want['network']}: {bad}"


# ---------------------------------------------------------------- .env.production

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-ENV-FILE-KEYS")
def test_env_file_defines_every_key(server, view, expected):
    """The guide's .env.production: DATABASE_URL, REDIS_URL, JWT_SECRET, ... GRAFANA_ENABLED."""
    attach(".env.production (values masked)", redact_env(view["env_file"]) or "(missing or empty)")
    keys = env_file_keys(view["env_file"])
    missing = [k for k in expected("APP-ENV-FILE-KEYS") if k not in keys]
    compare(".env.production keys", keys, expected("APP-ENV-FILE-KEYS"))
    assert view["env_file"], f"{server.name}: {ENV_FILE} is missing, empty or unreadable"
    assert not missing, f"{server.name}: {ENV_FILE} does not define {missing}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-ENV-SECRETS")
def test_env_secrets_are_set(server, sourced, expected):
    """"JWT_SECRET=${JWT_SECRET}" etc.: once sourced, every secret has a real value - not empty, not
    an unexpanded reference, not a placeholder such as secure_password_here."""
    want = expected("APP-ENV-SECRETS")
    problems = {k: secret_problem(sourced.get(k), want["placeholders"]) for k in want["keys"]}
    for key in want["url_passwords"]:
        problems[f"{key} password"] = secret_problem(url_password(sourced.get(key)), want["placeholders"])
    compare("secrets (values never shown)", {k: p or "set" for k, p in problems.items()}, "set")
    bad = {k: p for k, p in problems.items() if p}
    assert not bad, f"{server.name}: {ENV_FILE} secrets not set: {bad}"


ENV_VALUES = {
    "APP-ENV-ENVIRONMENT": "ENVIRONMENT",
    "APP-ENV-DEBUG": "DEBUG",
    "APP-ENV-LOG-LEVEL": "LOG_LEVEL",
    "APP-ENV-SMTP-SERVER": "SMTP_SERVER",
    "APP-ENV-SMTP-PORT": "SMTP_PORT",
    "APP-ENV-RATE-LIMIT-REQUESTS": "RATE_LIMIT_REQUESTS",
    "APP-ENV-RATE-LIMIT-WINDOW": "RATE_LIMIT_WINDOW",
    "APP-ENV-PROMETHEUS-METRICS-ENABLED": "PROMETHEUS_METRICS_ENABLED",
    "APP-ENV-GRAFANA-ENABLED": "GRAFANA_ENABLED",
}


@pytest.mark.roles("app")
@per_requirement("APP-ENV-ENVIRONMENT", "APP-ENV-DEBUG", "APP-ENV-LOG-LEVEL", "APP-ENV-SMTP-SERVER",
                 "APP-ENV-SMTP-PORT", "APP-ENV-RATE-LIMIT-REQUESTS", "APP-ENV-RATE-LIMIT-WINDOW",
                 "APP-ENV-PROMETHEUS-METRICS-ENABLED", "APP-ENV-GRAFANA-ENABLED")
def test_env_value(server, sourced, expected, req_id):
    """"ENVIRONMENT=production, DEBUG=false, LOG_LEVEL=INFO, SMTP_SERVER=smtp.gmail.com, SMTP_PORT=587,
    RATE_LIMIT_REQUESTS=1000, RATE_LIMIT_WINDOW=3600, PROMETHEUS_METRICS_ENABLED=true,
    GRAFANA_ENABLED=true" (value once sourced; these are not secrets)."""
    key, want = ENV_VALUES[req_id], str(expected(req_id))
    have = sourced.get(key)
    compare(key, have, want)
    assert have == want, f"{server.name}: {ENV_FILE}: {key}={have!r}, guide: {key}={want}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-ENV-DATABASE-URL")
def test_env_database_url(server, sourced, expected):
    """"DATABASE_URL=postgresql://pynomaly_user:${DB_PASSWORD}@localhost:5432/pynomaly_prod" (host free)."""
    want, parts = expected("APP-ENV-DATABASE-URL"), url_parts(sourced.get("DATABASE_URL"))
    have = {"scheme": parts.get("scheme"), "user": parts.get("user"), "port": parts.get("port"),
            "database": parts.get("path")}
    compare("DATABASE_URL (no password)", parts, want)
    assert have == want, f"{server.name}: DATABASE_URL is {have}, guide: {want}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-ENV-REDIS-URL")
def test_env_redis_url(server, sourced, expected):
    """"REDIS_URL=redis://:${REDIS_PASSWORD}@localhost:6379/0" (host free)."""
    want, parts = expected("APP-ENV-REDIS-URL"), url_parts(sourced.get("REDIS_URL"))
    have = {"scheme": parts.get("scheme"), "port": parts.get("port"),
            "db": int(parts["path"]) if str(parts.get("path", "")).isdigit() else parts.get("path")}
    compare("REDIS_URL (no password)", parts, want)
    assert have == want, f"{server.name}: REDIS_URL is {have}, guide: {want}"
    assert parts.get("password_set"), f"{server.name}: REDIS_URL has no password"


# ---------------------------------------------------------------- start_production.sh

def start_script_problems(text: str, env_file: str) -> list[str]:
    lines = script_commands(text)
    problems = []
    if not any(re.fullmatch(r"set -[a-z]*e[a-z]*( .*)?", line) for line in lines):
        problems.append("no `set -e`")
    if not any(re.search(rf"(^|\s)(source|\.)\s+{re.escape(env_file)}(\s|$|;)", line) for line in lines):
        problems.append(f"does not source {env_file}")
    return problems


def migration_order(text: str, steps: list[str]) -> list[int | None]:
    """Line index of each step (`python -m ...` also matches `python3 -m ...`), None when absent."""
    lines = script_commands(text)
    found = []
    for step in steps:
        pattern = re.escape(step).replace("python\\ ", "python3?\\ ").replace("python ", "python3? ")
        found.append(next((i for i, line in enumerate(lines) if re.search(rf"(^|[\s;&|]){pattern}\b", line)), None))
    return found


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-START-SCRIPT")
def test_start_script(server, view, expected):
    """"#!/bin/bash # /opt/pynomaly/start_production.sh set -e ... source /opt/pynomaly/.env.production"."""
    want = expected("APP-START-SCRIPT")
    attach("start_production.sh", mask_config(view["start_script"]) or "(missing)")
    attach("stat", view["start_script_stat"] or "(missing)")
    assert view["start_script"], f"{server.name}: {want['path']} is missing or empty"
    mode = int(view["start_script_stat"].split()[0], 8) if view["start_script_stat"] else 0
    assert mode & 0o100, f"{server.name}: {want['path']} is not executable (mode {mode:o})"
    problems = start_script_problems(view["start_script"], want["env_file"])
    assert not problems, f"{server.name}: {want['path']}: {'; '.join(problems)}"


@pytest.mark.roles("app")
@pytest.mark.requirement("APP-START-MIGRATIONS-FIRST")
def test_start_script_migrates_before_gunicorn(server, view, expected):
    """"python -m alembic upgrade head" then "exec gunicorn ..." (python3 counts as python)."""
    steps = expected("APP-START-MIGRATIONS-FIRST")
    order = migration_order(view["start_script"], steps)
    compare("line of each step", dict(zip(steps, order, strict=True)), "in this order")
    missing = [s for s, i in zip(steps, order, strict=True) if i is None]
    assert not missing, f"{server.name}: {START_SCRIPT} lacks {missing}"
    assert order == sorted(order), f"{server.name}: {START_SCRIPT} runs {steps} out of order ({order})"


# ---------------------------------------------------------------- Gunicorn (running masters)

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-GUNICORN-BIND")
def test_gunicorn_serves_the_app_on_each_port(server, masters, view, expected):
    """"exec gunicorn src.pynomaly.presentation.api.app:app --bind 0.0.0.0:8000": one master per
    instance port, on 0.0.0.0, serving the app, and each port answers /health 200."""
    want, ports = expected("APP-GUNICORN-BIND"), instance_ports(server, expected)
    seen, bad = {}, []
    for p in masters:
        cmd = parse_gunicorn(p["args"])
        for bind in cmd.binds or ["(default 127.0.0.1:8000)"]:
            host, port = bind_port(bind)
            seen[port] = {"where": p["where"], "app": cmd.app, "host": host}
            if cmd.app != want["app"] or host != want["host"]:
                bad.append(f"{p['where']}: {cmd.app} on {bind}")
    health = {port: view[f"health_{port}"] for port in ports}
    compare("gunicorn binds and /health per port", {"binds": seen, "health": health},
            {"app": want["app"], "host": want["host"], "ports": ports, "health": "200"})
    assert not bad, f"{server.name}: Gunicorn does not serve {want['app']} on {want['host']}: {bad}"
    missing = [port for port in ports if port not in seen]
    assert not missing, f"{server.name}: no Gunicorn master bound to port(s) {missing}"
    down = {port: code for port, code in health.items() if code != "200"}
    assert not down, f"{server.name}: /health on 127.0.0.1 ports {down} (not 200)"


GUNICORN_OPTIONS = {
    "APP-GUNICORN-WORKERS": "--workers",
    "APP-GUNICORN-WORKER-CLASS": "--worker-class",
    "APP-GUNICORN-WORKER-CONNECTIONS": "--worker-connections",
    "APP-GUNICORN-MAX-REQUESTS": "--max-requests",
    "APP-GUNICORN-MAX-REQUESTS-JITTER": "--max-requests-jitter",
    "APP-GUNICORN-PRELOAD": "--preload",
    "APP-GUNICORN-TIMEOUT": "--timeout",
    "APP-GUNICORN-KEEP-ALIVE": "--keep-alive",
    "APP-GUNICORN-ACCESS-LOG": "--access-logfile",
    "APP-GUNICORN-ERROR-LOG": "--error-logfile",
    "APP-GUNICORN-LOG-LEVEL": "--log-level",
}


def option_value(cmd: GunicornCommand, option: str, want: Any) -> Any:
    """The value of `option` in the form of the guide's `want` (bool: flag present)."""
    if isinstance(want, bool):
        return option in cmd.flags
    return cmd.options.get(option)


@pytest.mark.roles("app")
@per_requirement("APP-GUNICORN-WORKERS", "APP-GUNICORN-WORKER-CLASS", "APP-GUNICORN-WORKER-CONNECTIONS",
                 "APP-GUNICORN-MAX-REQUESTS", "APP-GUNICORN-MAX-REQUESTS-JITTER", "APP-GUNICORN-PRELOAD",
                 "APP-GUNICORN-TIMEOUT", "APP-GUNICORN-KEEP-ALIVE", "APP-GUNICORN-ACCESS-LOG",
                 "APP-GUNICORN-ERROR-LOG", "APP-GUNICORN-LOG-LEVEL")
def test_gunicorn_option(server, masters, expected, req_id):
    """"--workers 4 --worker-class uvicorn.workers.UvicornWorker --worker-connections 1000
    --max-requests 1000 --max-requests-jitter 50 --preload --timeout 30 --keep-alive 2
    --access-logfile /var/log/pynomaly/access.log --error-logfile /var/log/pynomaly/error.log
    --log-level info", on every running master's command line."""
    option, want = GUNICORN_OPTIONS[req_id], expected(req_id)
    assert masters, f"{server.name}: no Gunicorn master process found"
    seen = {p["where"]: option_value(parse_gunicorn(p["args"]), option, want) for p in masters}
    compare(option, seen, want)
    bad = {w: v for w, v in seen.items() if (v if isinstance(want, bool) else str(v)) != (
        want if isinstance(want, bool) else str(want))}
    assert not bad, f"{server.name}: Gunicorn {option}: {bad}, guide: {want}"


def log_files(text: str) -> tuple[int, dict[str, tuple[int, int]]]:
    """(now, path -> (size, mtime)) from `date +%s; stat -c '%n %s %Y' ...`."""
    lines = text.splitlines()
    now = int(lines[0]) if lines and lines[0].strip().isdigit() else 0
    files = {}
    for line in lines[1:]:
        parts = line.rsplit(" ", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            files[parts[0]] = (int(parts[1]), int(parts[2]))
    return now, files


ACCESS_LOG_FRESH = 15 * 60  # "being written": touched within the last 15 minutes


@pytest.mark.roles("app")
@per_requirement("APP-GUNICORN-ACCESS-LOG", "APP-GUNICORN-ERROR-LOG", argname="log_req")
def test_gunicorn_log_file(server, view, expected, log_req):
    """"--access-logfile /var/log/pynomaly/access.log --error-logfile /var/log/pynomaly/error.log":
    the files exist on the app host, and the access log is being written (health checks and
    Prometheus scrapes keep it busy)."""
    path = expected(log_req)
    now, files = log_files(view["logs"])
    compare("log files (size, mtime)", files, path)
    assert path in files, f"{server.name}: {path} does not exist"
    if log_req == "APP-GUNICORN-ACCESS-LOG":
        size, mtime = files[path]
        assert size > 0, f"{server.name}: {path} is empty"
        assert now - mtime <= ACCESS_LOG_FRESH, (
            f"{server.name}: {path} not written in the last {ACCESS_LOG_FRESH // 60} min")


# ---------------------------------------------------------------- live: /metrics, /health, login

@pytest.mark.roles("app")
@pytest.mark.requirement("APP-METRICS-ENDPOINT")
def test_each_instance_serves_metrics(server, view, expected):
    """prometheus.yml scrapes /metrics of each instance: http_requests_total (method, status) and the
    histogram http_request_duration_seconds."""
    want, ports = expected("APP-METRICS-ENDPOINT"), instance_ports(server, expected)
    seen = {}
    for port in ports:
        names = metric_names(view[f"metrics_{port}"])
        seen[port] = {m: sorted(names.get(m, ())) for m in want["metrics"] if m in names}
    compare("metrics per instance", seen, want)
    bad = {}
    for port, metrics in seen.items():
        missing = [m for m in want["metrics"] if m not in metrics]
        missing += [f"{m}{{{label}}}" for m, labels in want["labels"].items() for label in labels
                    if m in metrics and label not in metrics[m]]
        if missing:
            bad[port] = missing
    assert not bad, f"{server.name}: /metrics lacks (per port) {bad}"


@pytest.fixture(scope="session")
def public(inventory):
    url = inventory.setting("audit_public_url")
    if not url:
        raise RuntimeError("the inventory sets no audit_public_url")
    return url.rstrip("/"), public_session(inventory.setting("audit_resolve"), inventory.setting("audit_ca_bundle"))


@per_requirement("APP-HEALTH-ENDPOINT", "APP-API-V1-HEALTH")
def test_public_health(public, expected, req_id):
    """"location /health { proxy_pass http://pynomaly_backend; }" and "curl .../api/v1/health":
    200 through NGINX at the public name."""
    want = expected(req_id)
    base, session = public
    resp = session.get(base + want["path"], allow_redirects=False)
    attach(f"GET {want['path']}", f"{resp.status_code}\n{resp.text[:500]}")
    assert resp.status_code == want["status"], f"{base}{want['path']}: {resp.status_code}, guide: {want['status']}"


RATE_LIMITED = (429, 503)
LOGIN_RETRIES, LOGIN_RETRY_WAIT = 2, 12.5


def _login(public, username: str, password: str) -> dict:
    base, session = public
    path = "/api/v1/auth/login"
    for attempt in range(LOGIN_RETRIES + 1):
        resp = session.post(base + path, json={"username": username, "password": password},
                            allow_redirects=False)
        if resp.status_code not in RATE_LIMITED:
            break
        if attempt < LOGIN_RETRIES:  # NGINX's login zone (5r/m) frees a slot every 12 s
            time.sleep(LOGIN_RETRY_WAIT)
    else:
        raise RuntimeError(f"POST {path}: {resp.status_code} (rate limited): cannot audit the login now")
    try:
        body = resp.json()
    except ValueError:
        body = {"text": resp.text[:300]}
    return {"status": resp.status_code, "body": body, "at": time.time()}


@pytest.fixture(scope="session")
def good_login(public, inventory):
    """One login with the inventory's credentials, once per run (rate limit, fail2ban)."""
    from audit.inventory import resolve_secret

    user, password = resolve_secret(inventory, "app_username"), resolve_secret(inventory, "app_password")
    evidence.register_secret(user)
    evidence.register_secret(password)
    return _login(public, user, password)


@pytest.fixture(scope="session")
def bad_login(public, inventory):
    """One login with a wrong password, once per run."""
    from audit.inventory import resolve_secret

    user = resolve_secret(inventory, "app_username")
    evidence.register_secret(user)
    return _login(public, user, "pynomaly-audit-wrong-password")


@pytest.mark.requirement("APP-LOGIN-JWT")
def test_login_returns_hs256_token_for_30_minutes(good_login, secret, expected):
    """"JWT_ALGORITHM = "HS256"", "JWT_ACCESS_TOKEN_EXPIRE_MINUTES = 30": a token signed with the
    deployment's JWT secret, exp - iat = 30 min."""
    want = expected("APP-LOGIN-JWT")
    token = (good_login["body"] or {}).get("access_token") if isinstance(good_login["body"], dict) else None
    if token:
        evidence.register_secret(token)
    assert good_login["status"] == 200, f"POST {want['path']} with the inventory's credentials: {good_login['status']}"
    assert token, f"POST {want['path']} with the inventory's credentials: 200 without access_token"
    header, payload, valid = decode_jwt(token, secret("jwt_secret"))
    issued = payload.get("iat", good_login["at"])
    lifetime = (payload.get("exp", 0) - issued) / 60
    compare("token", {"header": header, "claims": sorted(payload), "lifetime_minutes": round(lifetime, 2),
                      "signature_valid": valid}, want)
    assert header.get("alg") == want["algorithm"], f"token alg {header.get('alg')}, guide {want['algorithm']}"
    assert valid, "token signature does not verify with the deployment's JWT secret"
    assert abs(lifetime - want["expire_minutes"]) <= 1, (
        f"token lifetime {lifetime:.1f} min, guide {want['expire_minutes']} min")


@pytest.mark.requirement("APP-LOGIN-REJECTS-BAD-CREDENTIALS")
def test_login_rejects_a_wrong_password(bad_login, expected):
    """Login with a wrong password is refused: 401/403 and no token."""
    want = expected("APP-LOGIN-REJECTS-BAD-CREDENTIALS")
    body = bad_login["body"] if isinstance(bad_login["body"], dict) else {}
    compare("wrong password", {"status": bad_login["status"], "token": "access_token" in body}, want)
    assert "access_token" not in body, f"a wrong password got a token (status {bad_login['status']})"
    assert bad_login["status"] in want["status_in"], (
        f"a wrong password got {bad_login['status']}, guide: one of {want['status_in']}")
