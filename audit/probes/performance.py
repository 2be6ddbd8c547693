"""Performance Optimization > Application Configuration (ProductionConfig): the values each app
instance builds its configuration with, read ONCE per app host.

A docker/compose host: the app's own config dump (`python3 -m src.pynomaly.infrastructure.config.dump`,
read back from the engine and Redis pool the app builds, secrets redacted), run in every running
app container through the Docker engine API (`audit_docker_url`); the signing secrets and
REDIS_URL come from the containers' environment. A Gunicorn host: the same dump run on the host
in /opt/pynomaly with .env.production sourced, as start_production.sh does. Secrets are judged
here and never kept: the facts hold what is wrong with the signing secret and REDIS_URL without
its password.
"""

from __future__ import annotations

import json
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from audit import guide
from audit.facts import probe
from audit.judge import RUNNING, Reading
from audit.outcomes import CouldNotAudit
from audit.probes.app import across, engine_failure, parse_sourced_env, read_containers, sourced_env_command

DUMP = ["python3", "-m", "src.pynomaly.infrastructure.config.dump"]
GUNICORN_DUMP = f"cd {guide.APP_DIR} && set -a && . {guide.ENV_FILE} >/dev/null 2>&1 && set +a && exec {' '.join(DUMP)}"
SECRETS = ("SECRET_KEY", "JWT_SECRET")
PLACEHOLDERS = re.compile(r"(?i)^(|changeme|change[-_ ]?me|secret|your[-_].*|.*here|\$\{.*\}|@@.*@@|none|null|xxx+)$")


# ---------------------------------------------------------------- parsing and judging (unit-tested)

def setting(config: dict, path: tuple[str, ...] | str):
    """A value of the dump by its path (("database", "pool_size") or "database.pool_size")."""
    value = config
    for key in path.split(".") if isinstance(path, str) else path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def strip_password(url: str | None) -> str | None:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url) if url else url


def rate_limit_problem(config: dict, env: dict, want: dict) -> str | None:
    """None when RATE_LIMIT_STORAGE_URL is REDIS_URL (or, unset, the guide's default)."""
    url = setting(config, ("redis", "rate_limit_storage_url"))
    source = env.get(want["env"])
    expected_url = strip_password(source) if source else want["default"]
    if not url or not url.startswith(("redis://", "rediss://")):
        return f"rate-limit storage is {url!r}, not Redis"
    if strip_password(url) != expected_url:
        return f"rate-limit storage is {url}, guide: ${want['env']} ({expected_url})"
    return None


def signing_secret_problem(env: dict) -> str | None:
    """None when the app's signing secret is set: SECRET_KEY (ProductionConfig) and JWT_SECRET
    (the guide's .env.production, which the app prefers) are, where present, not placeholders,
    and at least one of them is present."""
    present = {k: env[k] for k in SECRETS if env.get(k) is not None}
    if not any(v.strip() for v in present.values()):
        return "neither SECRET_KEY nor JWT_SECRET is set"
    bad = [k for k, v in present.items() if PLACEHOLDERS.match(v.strip()) or len(v.strip()) < 16]
    return f"{', '.join(bad)} empty, too short or a placeholder" if bad else None


def parse_dump(text: str) -> dict:
    """The dump's JSON (after anything the interpreter printed first); ValueError when there is none."""
    return json.loads(text[text.index("{"):])


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class Instance:
    config: dict                  # the dump (its own secrets redacted)
    secret_problem: str | None    # signing_secret_problem of its environment (None: set)
    env_urls: dict[str, str | None]  # PERF-RATE-LIMIT-STORAGE's variable, password stripped


@dataclass(frozen=True)
class AppConfigFacts:
    """The config dump of every running app instance of a host."""

    instances: dict[str, Instance]

    def sides(self, key: str) -> dict[str, Reading]:
        """A ProductionConfig value (`database.pool_size`) as each instance builds it."""
        shown, value = across({n: setting(i.config, key) for n, i in self.instances.items()})
        return {RUNNING: Reading(shown, value, f"config dump of {', '.join(self.instances) or 'no running instance'}")}

    def norm(self, key: str, expected) -> object:
        return expected


def instance(name: str, text: str, env: dict, url_key: str) -> Instance:
    try:
        config = parse_dump(text)
    except ValueError:
        raise CouldNotAudit(name, "the app's config dump", f"no JSON in its output: {text[-300:]!r}") from None
    return Instance(config, signing_secret_problem(env), {url_key: strip_password(env.get(url_key))})


@probe()
def app_config(session, host) -> AppConfigFacts:
    """ProductionConfig as each app instance builds it (the app's config dump)."""
    url_key = session.expected("PERF-RATE-LIMIT-STORAGE")["env"]
    if host.settings.app_runtime == "gunicorn":  # the dump runs as the app's own account, as the app does
        app_user = session.expected("SEC-APP-DIR-OWNER")["owner"]
        out = session.access.collect(host, {
            "dump": f"$SUDO runuser -u {app_user} -- env -i PATH=/usr/local/bin:/usr/bin:/bin "
                    f"bash -c {shlex.quote(GUNICORN_DUMP)} 2>&1",
            "env": sourced_env_command(guide.ENV_FILE, [*SECRETS, url_key])})
        return AppConfigFacts({host.name: instance(host.name, out["dump"], parse_sourced_env(out["env"]), url_key)})
    url, _, found = read_containers(session, running=True)

    def read(c) -> Instance:
        try:
            code, raw = c.exec_run(DUMP, workdir="/app", demux=False)
        except Exception as exc:  # noqa: BLE001 - any engine failure means: could not audit
            raise engine_failure(url, exc) from None
        text = raw.decode(errors="replace") if raw else ""
        if code != 0:
            raise CouldNotAudit(c.name, "the app's config dump", f"exit {code}: {text[-300:]!r}")
        env = dict(e.split("=", 1) for e in c.attrs["Config"].get("Env") or [] if "=" in e)
        return instance(c.name, text, env, url_key)

    with ThreadPoolExecutor(max_workers=4) as pool:
        read_all = dict(zip((c.name for c in found), pool.map(read, found), strict=True))
    return AppConfigFacts(dict(sorted(read_all.items())))
