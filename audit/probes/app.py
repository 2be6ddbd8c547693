"""Application Deployment (guide: Docker Deployment, Environment Configuration, Application Startup
Script) and the live application: what an app host, the Docker engine and the public name show.

- `app` (an app host, ONE round trip): docker-compose.prod.yml, start_production.sh and its mode,
  .env.production (its keys, and its values sourced the way the script does, in an empty
  environment), the Gunicorn log files, `ps` (a host with `audit_settings.app_runtime: gunicorn`)
  and /health and /metrics of every instance (curl on the host: the instances are not public);
  a docker/compose host also carries the app containers below, or why the engine is unreadable.
- `app_containers` (the deployment): the containers of Compose service pynomaly-app on the Docker
  engine (`audit_docker_url`): state, health (a "starting" one is waited for, one probe period),
  user, HEALTHCHECK, image, restart policy, networks, environment, processes (`top -ww`).
- `app_public`, `app_login` (the deployment): /health and /api/v1/health through NGINX, and at most
  two logins per run (one good, one bad: the login location is rate limited, fail2ban watches it).

Secrets never reach the facts: environment values are kept for the non-secret keys only
(PUBLIC_ENV), of the others what is wrong with them; URLs keep their parts without the password;
a login keeps the token's header, claim names, lifetime and signature check, never the token.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from audit import evidence, guide
from audit.access import describe
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit
from audit.probes.shell import script_commands

# Non-secret environment variables whose values may be kept and shown.
PUBLIC_ENV = ("ENVIRONMENT", "DEBUG", "LOG_LEVEL", "SMTP_SERVER", "SMTP_PORT", "RATE_LIMIT_REQUESTS",
              "RATE_LIMIT_WINDOW", "PROMETHEUS_METRICS_ENABLED", "GRAFANA_ENABLED", "PORT")
URL_KEYS = ("DATABASE_URL", "REDIS_URL")
HEALTH_WAIT_MAX = 45  # seconds the containers probe waits for a health status still "starting"
RATE_LIMITED = (429, 503)
LOGIN_RETRIES, LOGIN_RETRY_WAIT = 2, 12.5  # NGINX's login zone (5r/m) frees a slot every 12 s
WRONG_PASSWORD = "pynomaly-audit-wrong-password"


# ---------------------------------------------------------------- .env.production (unit-tested)

def env_file_keys(text: str) -> list[str]:
    """Keys assigned in a shell env file (`KEY=...` or `export KEY=...`), in order."""
    keys = []
    for line in text.splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Za-z_]\w*)=", line)
        if m and m.group(1) not in keys:
            keys.append(m.group(1))
    return keys


def sourced_env_command(env_file: str, keys: list[str]) -> str:
    """Shell: source `env_file` in an empty environment, as start_production.sh does (set -a), and
    print `KEY SET BASE64(VALUE)` per key (SET is 1 when defined), so no value can break the framing.
    The file is read as root (`cat`) and sourced by the audit account: nothing in it runs as root."""
    body = ("set -a; . /dev/stdin >/dev/null 2>&1; set +a; "
            f"for k in {' '.join(keys)}; do eval \"s=\\${{$k+1}}\"; eval \"v=\\${{$k-}}\"; "
            "printf '%s %s %s\\n' \"$k\" \"${s:-0}\" \"$(printf '%s' \"$v\" | base64 -w0)\"; done")
    return (f"env_text=$($SUDO cat {shlex.quote(env_file)}) && printf '%s\\n' \"$env_text\" "
            f"| env -i PATH=/usr/bin:/bin bash -c {shlex.quote(body)}")


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
    try:
        return urlsplit(url).password if url else None
    except ValueError:
        return None


def url_parts(url: str | None) -> dict[str, Any]:
    """scheme, user, password set?, host, port, database (the path; `db` as a number) of a URL -
    never the password itself."""
    if not url:
        return {}
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    path = parts.path.lstrip("/")
    return {"scheme": parts.scheme, "user": parts.username, "password_set": bool(parts.password),
            "host": parts.hostname, "port": port, "database": path, "db": int(path) if path.isdigit() else path}


def secret_problems(values: dict[str, str | None], want: dict) -> dict[str, str | None]:
    """APP-ENV-SECRETS: each secret key, and each URL's password -> what is wrong with it (None: set)."""
    problems = {k: secret_problem(values.get(k), want["placeholders"]) for k in want["keys"]}
    for key in want["url_passwords"]:
        problems[f"{key} password"] = secret_problem(url_password(values.get(key)), want["placeholders"])
    return problems


# ---------------------------------------------------------------- docker-compose.prod.yml

@dataclass(frozen=True)
class Compose:
    """The pynomaly-app service of the Compose file, without any secret value."""

    problem: str | None = None                      # not YAML, or no service pynomaly-app
    replicas: int | None = None                     # deploy.replicas as written (None: not set)
    restart_policy: dict = field(default_factory=dict)  # condition, delay (seconds), max_attempts
    environment: dict[str, str | None] = field(default_factory=dict)  # non-secret keys only
    environment_keys: frozenset[str] = frozenset()
    variables: frozenset[str] = frozenset()         # ${VAR} its environment takes
    literal_secrets: tuple[str, ...] = ()           # `service.KEY` of secrets written literally
    networks: tuple[str, ...] = ()
    network_mode: str | None = None
    network_drivers: dict[str, str] = field(default_factory=dict)  # top-level networks -> driver


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


def parse_compose(text: str) -> Compose:
    """docker-compose.prod.yml -> what the checks judge of service pynomaly-app."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        return Compose(problem=f"not valid YAML ({describe(exc)})")
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict) or guide.APP_SERVICE not in services:
        return Compose(problem=f"no service {guide.APP_SERVICE} (services: {sorted(map(str, services or ()))})")
    service = services[guide.APP_SERVICE] or {}
    deploy = service.get("deploy") or {}
    policy = deploy.get("restart_policy") or {}
    env = compose_environment(service)
    nets = service.get("networks") or []
    return Compose(
        replicas=deploy.get("replicas"),
        restart_policy={"condition": policy.get("condition"), "delay": seconds(policy.get("delay")),
                        "max_attempts": policy.get("max_attempts")},
        environment={k: v for k, v in env.items() if k in PUBLIC_ENV}, environment_keys=frozenset(env),
        variables=frozenset(re.findall(r"\$\{([A-Za-z_]\w*)", " ".join(v or "" for v in env.values()))),
        literal_secrets=tuple(literal_secrets(doc)),
        networks=tuple(nets) if isinstance(nets, list | dict) else (), network_mode=service.get("network_mode"),
        network_drivers={str(n): (v or {}).get("driver", "bridge") for n, v in (doc.get("networks") or {}).items()})


def seconds(value: Any) -> float | None:
    """Compose/Docker durations: '5s', '1m30s', '500ms', a number of seconds, or nanoseconds (int > 1e6)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return value / 1e9 if value >= 1e6 else float(value)
    total, text = 0.0, str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    for number, unit in parts:
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


# ---------------------------------------------------------------- the image's HEALTHCHECK

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


def healthcheck_differences(config: dict | None, want: dict) -> list[str]:
    """What differs between a Docker Healthcheck config (ns durations) and the guide's values."""
    if not config or not config.get("Test") or config["Test"] == ["NONE"]:
        return ["no HEALTHCHECK"]
    diffs = []
    for key, docker_key in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod")):
        have, wanted = seconds(config.get(docker_key) or 0), seconds(want[key])
        if have != wanted:
            diffs.append(f"{key} {have:g}s (guide {wanted:g}s)")
    if int(config.get("Retries") or 0) != int(want["retries"]):
        diffs.append(f"retries {config.get('Retries')} (guide {want['retries']})")
    if healthcheck_command(config.get("Test")) != want["test"]:
        diffs.append(f"test {healthcheck_command(config.get('Test'))!r} (guide {want['test']!r})")
    return diffs


# ---------------------------------------------------------------- Gunicorn

GUNICORN_SHORT = {"-w": "--workers", "-k": "--worker-class", "-b": "--bind", "-t": "--timeout"}
GUNICORN_FLAGS = {"--preload", "--reload", "--daemon", "-D", "--reuse-port", "--check-config",
                  "--print-config", "--spew", "--capture-output", "--enable-stdio-inheritance"}


@dataclass(frozen=True)
class GunicornCommand:
    app: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    binds: tuple[str, ...] = ()

    @property
    def bind_addresses(self) -> list[tuple[str, int | None]]:
        """(host, port) of each --bind; Gunicorn's default 127.0.0.1:8000 without one."""
        pairs = [b.rpartition(":")[::2] for b in self.binds]
        return [(h, int(p) if p.isdigit() else None) for h, p in pairs] or [("127.0.0.1", 8000)]

    def value(self, option: str) -> str | bool | None:
        """A flag's presence, or an option's value (None when not given)."""
        return option in self.flags if option in GUNICORN_FLAGS else self.options.get(option)


def parse_gunicorn(cmdline: str) -> GunicornCommand | None:
    """The app, options and flags of a gunicorn command line (None when it is not gunicorn)."""
    try:
        tokens = shlex.split(cmdline)
    except ValueError:
        tokens = cmdline.split()
    start = next((i for i, t in enumerate(tokens) if t.rsplit("/", 1)[-1] == "gunicorn"), None)
    if start is None:
        return None
    app, options, flags, binds = None, {}, set(), []
    rest, i = tokens[start + 1:], 0
    while i < len(rest):
        tok = rest[i]
        if tok.startswith("-"):
            name, eq, value = tok.partition("=")
            name = GUNICORN_SHORT.get(name, name)
            if not eq and (name in GUNICORN_FLAGS or i + 1 >= len(rest) or rest[i + 1].startswith("--")):
                flags.add(name)
                i += 1
                continue
            if not eq:
                value = rest[i + 1]
                i += 1
            if name == "--bind":
                binds.append(value)
            options[name] = value
        elif app is None:
            app = tok
        i += 1
    return GunicornCommand(app, options, frozenset(flags), tuple(binds))


@dataclass(frozen=True)
class Process:
    pid: str
    ppid: str
    uid: str
    args: str


def parse_ps(text: str) -> list[Process]:
    """`ps -eo pid,ppid,uid,args` output (with or without header)."""
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].isdigit():
            rows.append(Process(*parts))
    return rows


def gunicorn_masters(processes: list[Process]) -> list[Process]:
    """The gunicorn processes whose parent is not a gunicorn process."""
    gunicorn = {p.pid: p for p in processes if parse_gunicorn(p.args) is not None}
    return [p for p in gunicorn.values() if p.ppid not in gunicorn]


@dataclass(frozen=True)
class Master:
    """A Gunicorn master: where it runs (a container, or the host), its uid and its command line."""

    where: str
    pid: str
    uid: str
    command: GunicornCommand


# ---------------------------------------------------------------- start_production.sh, logs, /metrics

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


def script_gunicorn(text: str | None) -> GunicornCommand | None:
    """The gunicorn command a start script runs (continuation lines joined), or None."""
    return next((cmd for line in script_commands(text or "") if (cmd := parse_gunicorn(line))), None)


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


def metric_names(text: str) -> dict[str, set[str]]:
    """Prometheus exposition: sample name -> label names seen."""
    names: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+\S+", line)
        if m and not line.startswith("#"):
            labels = set(re.findall(r"([a-zA-Z_]\w*)=\"", m.group(2) or ""))
            names.setdefault(m.group(1), set()).update(labels)
    return names


def file_status(text: str) -> dict[str, str]:
    """`ok|missing|unreadable PATH` lines -> path -> status."""
    return {path: state for state, _, path in (line.partition(" ") for line in text.splitlines()) if path}


def instance_ports(ports: list[int], count: int) -> tuple[int, ...]:
    """The guide's ports for `count` instances (beyond them: the next ports up)."""
    ports = list(ports)
    return tuple(ports[:count] + [ports[-1] + i for i in range(1, count - len(ports) + 1)])


# ---------------------------------------------------------------- one value read in several places

@dataclass(frozen=True)
class Differ:
    """Several places hold different values: it compares equal to nothing."""

    values: tuple


def across(values: dict[str, Any]) -> tuple[Any, Any]:
    """(shown, value) of one setting read in several places (containers, instances): the value itself
    when they all agree, else every place's value (shown) and a value that meets no guide value."""
    if not values:
        return None, None
    if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) == 1:
        value = next(iter(values.values()))
        return value, value
    return dict(values), Differ(tuple(values.values()))


# ---------------------------------------------------------------- the Docker engine

@dataclass(frozen=True)
class Container:
    name: str
    number: int
    status: str
    health: str | None
    user: str
    healthcheck: dict | None
    image_user: str
    image_healthcheck: dict | None
    image_exposed: tuple[str, ...]
    restart_policy: dict
    env: dict[str, str]  # the values of the non-secret keys only (PUBLIC_ENV)
    networks: tuple[str, ...]
    network_mode: str
    processes: tuple[Process, ...]
    published: dict[int, tuple[int, ...]] = field(default_factory=dict)  # container port -> host ports
    urls: dict[str, dict[str, Any]] = field(default_factory=dict)  # URL_KEYS' parts (url_parts: no password)

    def host_ports(self, port: int) -> tuple[int, ...]:
        """Where a port the container listens on is reached on its host: the published ports, or
        the port itself when the container shares the host's (or another's) network namespace."""
        if self.network_mode == "host" or self.network_mode.startswith("container:"):
            return (port,)
        return self.published.get(port, ())


def published_ports(ports: dict | None) -> dict[int, tuple[int, ...]]:
    """`NetworkSettings.Ports` ({"8000/tcp": [{"HostIp": ..., "HostPort": "8001"}]}) -> {8000: (8001,)}."""
    out: dict[int, tuple[int, ...]] = {}
    for spec, bindings in (ports or {}).items():
        number, _, proto = spec.partition("/")
        if proto in ("tcp", "") and number.isdigit():
            out[int(number)] = tuple(sorted({int(b["HostPort"]) for b in bindings or [] if b.get("HostPort")}))
    return out


def container_facts(attrs: dict, image: dict, top: dict | None) -> Container:
    """A container as the checks see it, from its `inspect`, its image's and its `top`."""
    env = dict(e.split("=", 1) for e in attrs["Config"].get("Env") or [] if "=" in e)
    processes = []
    if top:
        titles = [t.lower() for t in top["Titles"]]
        processes = [Process(r[titles.index("pid")], r[titles.index("ppid")], r[titles.index("uid")], r[-1])
                     for r in top["Processes"] or []]
    labels = attrs["Config"].get("Labels") or {}
    return Container(
        name=attrs["Name"].lstrip("/"), number=int(labels.get(guide.COMPOSE_NUMBER_LABEL) or 0),
        status=attrs["State"]["Status"], health=(attrs["State"].get("Health") or {}).get("Status"),
        user=attrs["Config"].get("User") or "", healthcheck=attrs["Config"].get("Healthcheck"),
        image_user=image["Config"].get("User") or "",
        image_healthcheck=image["Config"].get("Healthcheck"),
        image_exposed=tuple(sorted((image["Config"].get("ExposedPorts") or {}).keys())),
        restart_policy=attrs["HostConfig"].get("RestartPolicy") or {},
        env={k: v for k, v in env.items() if k in PUBLIC_ENV},
        networks=tuple(sorted((attrs["NetworkSettings"].get("Networks") or {}).keys())),
        network_mode=attrs["HostConfig"].get("NetworkMode", ""), processes=tuple(processes),
        published=published_ports(attrs["NetworkSettings"].get("Ports")),
        urls={k: url_parts(env[k]) for k in URL_KEYS if k in env})


@dataclass(frozen=True)
class AppContainers:
    """The app containers on the inventory's Docker engine (none read when every app host runs
    Gunicorn directly)."""

    url: str | None
    containers: tuple[Container, ...]


def engine_failure(url: str | None, exc: BaseException) -> CouldNotAudit:
    return CouldNotAudit(None, f"the Docker engine {url}", describe(exc))


def read_containers(session, running: bool = False) -> tuple[str, Any, list]:
    """(url, client, the app containers: running ones only when `running`) on the inventory's engine."""
    import docker
    import requests

    url = session.inventory.setting("audit_docker_url")
    client = session.access.docker()
    try:
        found = client.containers.list(all=not running,
                                       filters={"label": f"{guide.COMPOSE_SERVICE_LABEL}={guide.APP_SERVICE}"})
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise engine_failure(url, exc) from None
    return url, client, found


@probe(per_host=False)
def app_containers(session) -> AppContainers:
    """The app containers on the Docker engine: state, health, user, image, restart policy, processes."""
    import docker
    import requests

    if all(h.settings.app_runtime == "gunicorn" for h in session.inventory.hosts_with_role("app")):
        return AppContainers(None, ())
    url, client, found = read_containers(session)
    try:
        containers = []
        for c in found:
            image = client.images.get(c.attrs["Image"]).attrs
            top = c.top(ps_args="-ww -o pid,ppid,uid,args") if c.status == "running" else None  # -ww: no 80 columns
            containers.append(container_facts(c.attrs, image, top))
        deadline = time.monotonic() + HEALTH_WAIT_MAX
        while any(c.health == "starting" for c in containers) and time.monotonic() < deadline:
            time.sleep(3)
            containers = [dataclasses.replace(c, health=(client.containers.get(c.name).attrs["State"].get("Health")
                                                         or {}).get("Status")) if c.health == "starting" else c
                          for c in containers]
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise engine_failure(url, exc) from None
    return AppContainers(url, tuple(sorted(containers, key=lambda c: (c.number, c.name))))


# ---------------------------------------------------------------- the app host

@dataclass(frozen=True)
class AppFacts:
    """An app host: its files, the sourced environment (secrets judged, never kept), the instances'
    /health and /metrics, and its Gunicorn masters (in the containers, or on the host)."""

    host: str
    runtime: str                                  # docker | compose | gunicorn (audit_settings.app_runtime)
    ports: tuple[int, ...]                        # the instances' ports
    instance_count: int                           # audit_app_instances (default: the guide's 3)
    compose: Compose | None                       # None: the file is missing
    start_script: str | None                      # None: missing
    start_script_mode: int | None
    env_keys: tuple[str, ...] | None              # keys .env.production assigns; None: missing
    env: dict[str, str | None]                    # non-secret keys once sourced (None: not defined)
    secret_problems: dict[str, str | None]        # APP-ENV-SECRETS: key -> what is wrong (None: set)
    env_urls: dict[str, dict]                     # DATABASE_URL, REDIS_URL parts, never the password
    log_now: int
    log_files: dict[str, tuple[int, int]]         # path -> (size, mtime)
    health: dict[int, str]                        # port -> HTTP status of /health ('' no answer)
    metrics: dict[int, dict[str, tuple[str, ...]]]  # port -> metric -> label names
    processes: tuple[Process, ...] = ()           # ps (Gunicorn hosts)
    containers: tuple[Container, ...] = ()        # docker/compose hosts
    engine_error: tuple | None = None             # (host, service, why) when the engine could not be read

    def instances(self) -> tuple[Container, ...]:
        """The app containers; CouldNotAudit when the engine could not be read."""
        if self.engine_error:
            raise CouldNotAudit(*self.engine_error)
        return self.containers

    def served_ports(self) -> dict[int, str]:
        """Instance port on the app host -> the Gunicorn master serving it (its container, or the
        host): a master's --bind ports, through its container's published ports."""
        if self.runtime == "gunicorn":
            return {p: m.where for m in self.masters() for _, p in m.command.bind_addresses if p}
        by_name = {c.name: c for c in self.instances()}
        return {hp: m.where for m in self.masters() for _, p in m.command.bind_addresses if p
                for hp in by_name[m.where].host_ports(p)}

    def masters(self) -> list[Master]:
        """The Gunicorn masters of the app's instances: in the containers, or on a Gunicorn host."""
        if self.runtime == "gunicorn":
            where = [(self.host, p) for p in gunicorn_masters(list(self.processes))]
        else:
            where = [(c.name, p) for c in self.instances() for p in gunicorn_masters(list(c.processes))]
        return [Master(w, p.pid, p.uid, parse_gunicorn(p.args)) for w, p in where]

    def gunicorn_processes(self) -> list[Process]:
        return [p for p in self.processes if parse_gunicorn(p.args)]

    def sides(self, key: str) -> dict[str, Reading]:
        """A Gunicorn option (`--workers`) as the masters run it and as start_production.sh sets it,
        or an .env.production key as the containers run it and as the file sets it once sourced.
        A key that the Compose service sets itself (ENVIRONMENT, ...) runs with the Compose value:
        APP-COMPOSE-* judge it, its running side is left out here."""
        if key.startswith("-"):
            masters = self.masters()
            shown, value = across({m.where: m.command.value(key) for m in masters})
            where = f"Gunicorn master in {', '.join(m.where for m in masters) or 'none'}"
            out = {RUNNING: Reading(shown, value, where)}
            script = script_gunicorn(self.start_script)
            if script is not None:
                out[ON_DISK] = Reading(script.value(key), script.value(key), guide.START_SCRIPT)
            return out
        out = {}
        compose_keys = self.compose.environment_keys if self.compose else frozenset()
        if self.containers and key not in compose_keys:
            shown, value = across({c.name: c.env.get(key) for c in self.containers})
            out[RUNNING] = Reading(shown, value, f"environment of {', '.join(c.name for c in self.containers)}")
        out[ON_DISK] = Reading(self.env.get(key), self.env.get(key), f"{guide.ENV_FILE}, sourced")
        return out

    def norm(self, key: str, expected) -> object:
        return bool(expected) if key in GUNICORN_FLAGS else str(expected)

    def url_sides(self, key: str, fields: list[str]) -> dict[str, Reading]:
        """`fields` of a URL of .env.production (never its password) as the containers run it and as
        the file sets it once sourced; like `sides`, no running side for a key Compose sets itself."""
        out = {}
        compose_keys = self.compose.environment_keys if self.compose else frozenset()
        if self.containers and key not in compose_keys:
            shown, value = across({c.name: {f: c.urls.get(key, {}).get(f) for f in fields} for c in self.containers})
            out[RUNNING] = Reading(shown, value, f"environment of {', '.join(c.name for c in self.containers)}")
        parts = self.env_urls.get(key) or {}
        filed = {f: parts.get(f) for f in fields} if parts else None
        out[ON_DISK] = Reading(filed, filed, f"{guide.ENV_FILE}, sourced")
        return out


APP_FILES = f"{guide.COMPOSE_FILE} {guide.START_SCRIPT} {guide.ENV_FILE}"
# `ok PATH` or `missing PATH` per file, from one fixed stat as root (root reads what exists); when
# sudo refused it, nothing: the probe cannot audit
APP_FILE_STATUS = (f"out=$($SUDO stat -L -c '%n' {APP_FILES} 2>&1); printf '%s\\n' \"$out\" "
                   "| grep -qv -e '^/' -e '^stat: ' && exit 0; "
                   f"for f in {APP_FILES}; do if printf '%s\\n' \"$out\" | grep -qxF \"$f\"; then echo \"ok $f\"; "
                   "else echo \"missing $f\"; fi; done")


def app_commands(session, host, ports: tuple[int, ...], keys: list[str]) -> dict[str, str]:
    access_log, error_log = session.expected("APP-GUNICORN-ACCESS-LOG"), session.expected("APP-GUNICORN-ERROR-LOG")
    commands = {
        "files": APP_FILE_STATUS,
        "compose": f"$SUDO cat {guide.COMPOSE_FILE}",
        "start_script": f"$SUDO cat {guide.START_SCRIPT}",
        "start_script_mode": f"$SUDO stat -L -c '%a' {guide.START_SCRIPT}",
        "env_file": f"$SUDO cat {guide.ENV_FILE}",
        "env_sourced": sourced_env_command(guide.ENV_FILE, keys),
        "logs": f"date +%s; $SUDO stat -c '%n %s %Y' {access_log} {error_log}",
    }
    if host.settings.app_runtime == "gunicorn":
        commands["ps"] = "ps -ww -eo pid,ppid,uid,args"
    for port in ports:
        commands[f"health_{port}"] = (f"curl -sS -o /dev/null -w '%{{http_code}}\\n' --max-time 5 "
                                      f"http://127.0.0.1:{port}/health")
        commands[f"metrics_{port}"] = f"curl -fsS --max-time 5 http://127.0.0.1:{port}/metrics"
    return commands


@probe()
def app(session, host) -> AppFacts:
    """An app host: Compose file, start script, env file, logs, ps, and each instance's /health, /metrics."""
    runtime = host.settings.app_runtime
    count = int(host.vars.get("audit_app_instances") or guide.APP_INSTANCES)
    ports = instance_ports(session.expected("APP-GUNICORN-BIND")["ports"], count)
    secrets = session.expected("APP-ENV-SECRETS")
    keys = list(dict.fromkeys([*session.expected("APP-ENV-FILE-KEYS"), *PUBLIC_ENV, *secrets["keys"],
                               *secrets["url_passwords"], *URL_KEYS]))
    out = session.access.collect(host, app_commands(session, host, ports, keys))
    status = file_status(out["files"])
    if not status:
        raise CouldNotAudit(host.name, guide.APP_DIR, "the audit account could not look at its files (sudo?)")
    unreadable = [p for p, s in status.items() if s == "unreadable"]
    if unreadable:
        raise CouldNotAudit(host.name, ", ".join(unreadable), "not readable by the audit account")
    present = {p for p, s in status.items() if s == "ok"}
    sourced = parse_sourced_env(out["env_sourced"]) if guide.ENV_FILE in present else {}
    now, logs = log_files(out["logs"])
    containers, engine_error = (), None
    if runtime != "gunicorn":
        try:
            containers = session.facts.get("app_containers").containers
        except CouldNotAudit as exc:
            engine_error = (exc.host, exc.service, exc.why)
    mode = out["start_script_mode"]
    return AppFacts(
        host=host.name, runtime=runtime, ports=ports, instance_count=count,
        compose=parse_compose(out["compose"]) if guide.COMPOSE_FILE in present else None,
        start_script=out["start_script"] if guide.START_SCRIPT in present else None,
        start_script_mode=int(mode, 8) if re.fullmatch(r"[0-7]+", mode) else None,
        env_keys=tuple(env_file_keys(out["env_file"])) if guide.ENV_FILE in present else None,
        env={k: sourced.get(k) for k in PUBLIC_ENV}, secret_problems=secret_problems(sourced, secrets),
        env_urls={k: url_parts(sourced.get(k)) for k in URL_KEYS},
        log_now=now, log_files=logs, health={p: out[f"health_{p}"] for p in ports},
        metrics={p: {m: tuple(sorted(ls)) for m, ls in metric_names(out[f"metrics_{p}"]).items()} for p in ports},
        processes=tuple(parse_ps(out.get("ps", ""))), containers=containers, engine_error=engine_error)


# ---------------------------------------------------------------- the public name: health, login

@dataclass(frozen=True)
class PublicAnswers:
    url: str
    status: dict[str, int]  # path -> HTTP status through NGINX


@probe(per_host=False)
def app_public(session) -> PublicAnswers:
    """GET /health and /api/v1/health at the public name."""
    public = session.access.public()
    paths = [session.expected(r)["path"] for r in ("APP-HEALTH-ENDPOINT", "APP-API-V1-HEALTH")]
    return PublicAnswers(public.url, {p: public.get(p).status_code for p in dict.fromkeys(paths)})


@dataclass(frozen=True)
class Token:
    """What a check judges of an access token (never the token itself)."""

    problem: str | None = None  # not a JWT
    header: dict = field(default_factory=dict)
    claims: tuple[str, ...] = ()
    lifetime_minutes: float | None = None  # exp - iat (iat: when it was received, when absent)
    signature_valid: bool = False  # HS256 with the deployment's JWT secret


def token_facts(token: str, secret: str, at: float) -> Token:
    """A compact JWT's header, claims, lifetime and signature check."""
    parts = token.split(".")
    if len(parts) != 3:
        return Token(problem=f"not a compact JWT ({len(parts)} parts)")
    try:
        header, payload, signature = (base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in parts)
        header, payload = dict(json.loads(header)), dict(json.loads(payload))
        lifetime = round((float(payload.get("exp", 0)) - float(payload.get("iat", at))) / 60, 2)
    except (ValueError, TypeError, AttributeError) as exc:
        return Token(problem=f"not a JWT ({describe(exc)})")
    digest = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    return Token(None, header, tuple(sorted(payload)), lifetime, hmac.compare_digest(digest, signature))


@dataclass(frozen=True)
class Login:
    status: int
    token: Token | None  # None: the answer carries no access_token


@dataclass(frozen=True)
class LoginFacts:
    path: str
    good: Login  # with the inventory's credentials
    bad: Login   # with a wrong password


def login(session, path: str, username: str, password: str, secret: str) -> Login:
    """One login through NGINX (retried while the login zone answers 429/503)."""
    public = session.access.public()
    for attempt in range(LOGIN_RETRIES + 1):
        resp = public.get(path, method="POST", json={"username": username, "password": password})
        if resp.status_code not in RATE_LIMITED:
            break
        if attempt < LOGIN_RETRIES:
            time.sleep(LOGIN_RETRY_WAIT)
    else:
        raise CouldNotAudit(None, f"POST {path} at {public.url}",
                            f"HTTP {resp.status_code} (rate limited) {LOGIN_RETRIES + 1} times: cannot log in now")
    try:
        body = resp.json()
    except ValueError:
        body = {}
    token = body.get("access_token") if isinstance(body, dict) else None
    return Login(resp.status_code, token_facts(str(token), secret, time.time()) if token else None)


@probe(per_host=False, quiet=True)  # before the audit loads the deployment: a login is a timed request
def app_login(session) -> LoginFacts:
    """Two logins at the public name: the inventory's credentials, then a wrong password."""
    access = session.access
    path = session.expected("APP-LOGIN-JWT")["path"]
    user, password, secret = (access.secret(n) for n in ("app_username", "app_password", "jwt_secret"))
    return LoginFacts(path, login(session, path, user, password, secret),
                      login(session, path, user, WRONG_PASSWORD, secret))
