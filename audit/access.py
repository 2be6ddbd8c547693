"""The one way the suite reaches a deployment: remote commands, forwarded ports, PostgreSQL, Redis,
the Docker engine, HTTP to the public name and the Prometheus/Alertmanager/Grafana APIs.

One timeout policy (`CONNECT`, `ANSWER`, `COMMAND` seconds), one secret lookup (`secret()`:
the inventory's reference, resolved and registered for masking), and one mapping of failures to
the suite's outcome: every failure to reach or read something is a `CouldNotAudit` that names
the host, the service and why, in the suite's words. Connections are opened once per process
and shared by every check and probe of it (thread-safe: the fact prefetcher uses threads).

Checks never come here: probes (audit/probes/) do, and checks judge what the probes saw.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from audit import evidence, guide
from audit.inventory import Host, Inventory, InventoryError, resolve_secret
from audit.outcomes import CouldNotAudit, HostUnreachable
from audit.transport import EngineTunnel, Transport, ssh_cause

CONNECT = 5      # seconds to open a connection to anything (SSH, PostgreSQL, Redis, HTTP, engine)
ANSWER = 20      # seconds for one answer (a query, a Redis command, an HTTP response, an API call)
COMMAND = 60     # seconds for one remote command group (one round trip of a probe)

MARK = "### pynomaly-audit:"
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class Login:
    """The outcome of a login attempt that a check judges (a refused login can be the finding)."""

    ok: bool
    message: str


def describe(exc: BaseException) -> str:
    """An exception as one line of the suite's words (first line of its message)."""
    text = " ".join(str(exc).split("\n", 1)[0].split())
    return text or type(exc).__name__


def gather_script(commands: dict[str, str]) -> str:
    """One shell script that prints each command's output under a `### pynomaly-audit:NAME` line.
    Commands that need root are written `$SUDO cmd`: empty when the audit logs in as root, `sudo -n`
    (never a password prompt) for an inventory host with `ansible_become: true`."""
    # a newline before each marker: a command whose output does not end with one keeps its section
    return "; ".join(f"printf '\\n{MARK}{name}\\n'; ({cmd}) 2>/dev/null" for name, cmd in commands.items())


def parse_sections(output: str, names) -> dict[str, str]:
    """name -> output (stripped) for every command; a command that printed nothing maps to ''."""
    found: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith(MARK) and line[len(MARK):].strip() in names:
            current = line[len(MARK):].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {name: "\n".join(found.get(name, [])).strip() for name in names}


class Access:
    """Everything the probes read, for one inventory, in one pytest process."""

    def __init__(self, inventory: Inventory, transport: Transport | None):
        self.inventory = inventory
        self.transport = transport
        self._lock = threading.RLock()
        self._backends: dict[str, Any] = {}
        self._pg: dict[tuple, Any] = {}
        self._redis: dict[tuple, Any] = {}
        self._docker: dict[str, Any] = {}
        self._public = None
        self._apis: dict[str, Any] = {}
        self._tunnels: list[EngineTunnel] = []

    # ------------------------------------------------------------ secrets

    def secret(self, name: str) -> str:
        """The value behind the inventory's reference, registered for masking everywhere."""
        try:
            value = resolve_secret(self.inventory, name)
        except InventoryError as exc:
            raise CouldNotAudit(None, f"secret {name}", f"{exc} (inventory all.vars.audit_secrets.{name})") from None
        evidence.register_secret(value)
        return value

    # ------------------------------------------------------------ remote commands

    def _backend(self, host: Host):
        import testinfra

        with self._lock:
            if host.name not in self._backends:
                if host.connection == "local":
                    backend = testinfra.get_host("local://")
                elif host.connection == "docker":
                    backend = testinfra.get_host(f"docker://{host.address}")
                else:
                    backend = testinfra.get_host(f"ssh://{host.name}", ssh_config=self.transport.ssh_config,
                                                 timeout=CONNECT)
                self._backends[host.name] = backend
            return self._backends[host.name]

    def sudo_prefix(self, host: Host) -> str:
        return "sudo -n" if host.become else ""

    def run(self, host: Host, command: str, timeout: int = COMMAND):
        """Run a shell command on the host, bounded by `timeout` seconds on the host's side; the
        testinfra CommandResult. Failures of the transport itself are HostUnreachable."""
        # an account's PATH may lack the sbin directories (nginx -v, ufw, iptables-save live there)
        wrapped = f"SUDO={shlex.quote(self.sudo_prefix(host))}; PATH=$PATH:{SBIN}; export SUDO PATH; " \
                  f"timeout {int(timeout)} sh -c {shlex.quote(command)}"
        if self.transport is not None:
            self.transport.count(host.name, "commands")
        try:
            result = self._spawn_once_more(host, wrapped)
        except RuntimeError as exc:  # testinfra's ssh backend: ssh itself failed (rc 255)
            cause = ssh_cause(getattr(exc.args[0], "stderr", "") if exc.args else "")
            raise HostUnreachable(host.name, f"{host.address}: {cause}") from None
        except subprocess.TimeoutExpired:
            raise HostUnreachable(host.name, f"no answer within {timeout} s") from None
        except Exception as exc:  # noqa: BLE001 - local/docker backends: any failure means could not audit
            raise HostUnreachable(host.name, f"{host.connection}: {describe(exc)}") from None
        if result.rc == 255 and host.connection == "ssh" and not result.stdout:
            raise HostUnreachable(host.name, f"{host.address}: {ssh_cause(result.stderr)}")
        if result.rc == 124:
            raise HostUnreachable(host.name, f"a command did not finish within {timeout} s")
        return result

    def _spawn_once_more(self, host: Host, wrapped: str):
        """The backend's run; when this machine could not start the client process (fork/exec
        EFAULT, EAGAIN or ENOMEM under load: seen once as "[Errno 14] Bad address: '/bin/sh'"),
        once more after a pause, since that says nothing of the host."""
        try:
            return self._backend(host).run(wrapped)
        except OSError as exc:
            if exc.errno not in (errno.EFAULT, errno.EAGAIN, errno.ENOMEM):
                raise
            time.sleep(0.5)
            return self._backend(host).run(wrapped)

    def collect(self, host: Host, commands: dict[str, str], timeout: int = COMMAND) -> dict[str, str]:
        """Run a named group of commands in ONE round trip; name -> output ('' when it printed
        nothing). Commands that need root use `$SUDO`."""
        return parse_sections(self.run(host, gather_script(commands), timeout=timeout).stdout, commands)

    def reach(self, host: Host) -> str:
        """Prove the host answers (and that sudo works without a password where the inventory
        says `ansible_become`); what it said, or CouldNotAudit naming SSH or sudo."""
        probe = "id -un"
        if host.become:
            probe += "; sudo -n true 2>&1 && echo sudo-ok"
        try:
            out = self.run(host, probe, timeout=15)
        except HostUnreachable as exc:  # one retry: a first connection can lose a race or a SYN
            if "Permission denied" in exc.why or "Host key verification" in exc.why:
                raise
            time.sleep(1)
            out = self.run(host, probe, timeout=15)
        lines = out.stdout.split()
        if host.become and "sudo-ok" not in lines:
            said = " ".join((out.stdout + out.stderr).split()[1:])[:200] or f"exit {out.rc}"
            raise CouldNotAudit(host.name, "sudo",
                                f"`sudo -n true` as {lines[0] if lines else host.user} failed without asking for a "
                                f"password ({said}): the inventory says ansible_become, grant the audit "
                                "account NOPASSWD sudo (README: what an operator must grant)")
        return lines[0] if lines else ""

    def spawn(self, host: Host, command: str, reverse: tuple[int, int] | None = None, log=None):
        """A long-running command on an SSH host (an opt-in action's: the load workers), on an SSH
        connection of its own that lives as long as the command (Transport.session); the caller
        stops it and checks what is left on the host."""
        if host.connection not in ("ssh", "paramiko") or self.transport is None:
            raise CouldNotAudit(host.name, "a long-running command", f"needs a host reached over SSH "
                                f"(this one is reached by {host.connection})")
        return self.transport.session(host, command, reverse, log)

    # ------------------------------------------------------------ ports

    def forward(self, host: Host, port: int, remote_host: str = "127.0.0.1") -> tuple[str, int]:
        """A local (address, port) that reaches `remote_host:port` as seen from `host`: an SSH
        forward over the host's shared connection, loopback for `local://`, the container's own
        address for `docker://`."""
        if host.connection == "local":
            return remote_host, port
        if host.connection == "docker":
            return (self._container_address(host, host.address) if remote_host in ("127.0.0.1", "localhost")
                    else remote_host), port
        if self.transport is None:
            raise CouldNotAudit(host.name, f"port {port}", "no SSH transport")
        return self.transport.forward(host, port, remote_host)

    def _container_address(self, host: Host, name: str) -> str:
        proc = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                               name], capture_output=True, text=True, timeout=ANSWER, check=False)
        addresses = proc.stdout.split()
        if proc.returncode or not addresses:
            raise CouldNotAudit(host.name, "Docker container address",
                                describe(proc.stderr) if proc.stderr else "the container has no network address")
        return addresses[0]

    # ------------------------------------------------------------ PostgreSQL

    def postgres(self, host: Host, database: str = guide.DATABASE):
        """The audit role's read-only connection to PostgreSQL on `host` (port 5432 as the host sees
        it), one per host and database: autocommit, read-only sessions, statement timeout."""
        key = (host.name, database)
        with self._lock:
            conn = self._pg.get(key)
            if conn is not None and not conn.closed:
                return conn
            password = self.secret("db_audit_password")
            conn = self._pg_connect(host, database, guide.AUDIT_ROLE, password)
            self._pg[key] = conn
            return conn

    def _pg_connect(self, host: Host, database: str, user: str, password: str, **libpq):
        import psycopg

        address, port = self.forward(host, guide.PG_PORT)
        try:
            return psycopg.connect(host=address, port=port, dbname=database, user=user, password=password,
                                   connect_timeout=CONNECT, autocommit=True, sslmode="prefer",
                                   application_name="pynomaly-audit",
                                   options=f"-c default_transaction_read_only=on -c statement_timeout={ANSWER * 1000}",
                                   **libpq)
        except psycopg.OperationalError as exc:
            raise CouldNotAudit(host.name, f"PostgreSQL (port {guide.PG_PORT}, database {database}, login {user})",
                                pg_failure(str(exc))) from None

    def query(self, host: Host, sql: str, params: tuple = (), database: str = guide.DATABASE) -> list[dict]:
        """Rows of a read-only query as dicts; a failure is CouldNotAudit naming the host."""
        import psycopg
        from psycopg.rows import dict_row

        conn = self.postgres(host, database)
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(sql, params or None)
                return list(cur.fetchall()) if cur.description else []
        except psycopg.Error as exc:
            if conn.closed or isinstance(exc, psycopg.OperationalError):
                with self._lock:
                    self._pg.pop((host.name, database), None)
            raise CouldNotAudit(host.name, f"PostgreSQL query on {database}", pg_failure(str(exc))) from None

    def pg_login(self, host: Host, user: str, password: str, database: str = guide.DATABASE, **libpq) -> Login:
        """Try a login (the check judges the outcome): ok with who logged in, or refused and why.
        Only an authentication refusal is an answer; an unreachable server is CouldNotAudit."""
        import psycopg

        try:
            conn = self._pg_connect(host, database, user, password, **libpq)
        except CouldNotAudit as exc:
            if is_auth_failure(exc.why):
                return Login(False, f"login as {user} refused: {exc.why}")
            raise
        with conn:
            try:
                row = conn.execute("SELECT current_user, current_setting('transaction_read_only')").fetchone()
            except psycopg.Error as exc:
                raise CouldNotAudit(host.name, "PostgreSQL", pg_failure(str(exc))) from None
        return Login(True, f"logged in as {row[0]} (read-only session: {row[1]})")

    def pg_connect(self, host: Host, user: str, password: str, database: str = guide.DATABASE, **libpq):
        """A connection of its own as `user` (read-only sessions; the caller closes it): the writer
        of an opt-in `writes` probe, which lifts read-only for its own transaction only."""
        return self._pg_connect(host, database, user, password, **libpq)

    # ------------------------------------------------------------ Redis

    def redis(self, host: Host, port: int = guide.REDIS_PORT, password: str | None | bool = True):
        """A redis-py client for the Redis on `host:port` (as the host sees it). `password=True`
        uses the inventory's `redis_password`; None connects without one; a string uses it
        (the placeholder probe). RESP2, no retries (an audit reports at once), short timeouts."""
        import redis as redis_py
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        secret = self.secret("redis_password") if password is True else password
        key = (host.name, port, "secret" if password is True else password)
        with self._lock:
            if key in self._redis:
                return self._redis[key]
            address, local = self.forward(host, port)
            client = redis_py.Redis(host=address, port=local, password=secret, socket_connect_timeout=CONNECT,
                                    socket_timeout=ANSWER, decode_responses=True, client_name="pynomaly-audit",
                                    protocol=2, retry=Retry(NoBackoff(), 0))
            if password is True or password is None:
                self._redis[key] = client
            return client

    def redis_call(self, host: Host, port: int, *command: str, password: str | None | bool = True) -> Any:
        """One Redis command; a transport failure is CouldNotAudit. Redis' own error answers
        (NOAUTH, unknown command, WRONGPASS) are returned as `RedisAnswer` for the probe to read."""
        import redis as redis_py

        client = self.redis(host, port, password)
        try:
            return client.execute_command(*command)
        except (redis_py.AuthenticationError, redis_py.ResponseError) as exc:
            return RedisAnswer(type(exc).__name__, str(exc))
        except redis_py.RedisError as exc:
            raise CouldNotAudit(host.name, f"Redis on port {port}", redis_failure(exc)) from None
        finally:
            if not (password is True or password is None):
                client.close()

    # ------------------------------------------------------------ the Docker engine

    def docker(self, url: str | None = None):
        """A Docker SDK client for the engine that runs the app (`audit_docker_url`), pinged."""
        import docker

        url = url or self.inventory.setting("audit_docker_url")
        if not url:
            raise CouldNotAudit(None, "the Docker engine",
                                "the inventory names none (all.vars.audit_docker_url)")
        with self._lock:
            if url in self._docker:
                return self._docker[url]
            try:
                base, kwargs = url, ({"use_ssh_client": True} if url.startswith("ssh://") else {})
                host = self.engine_host(url)
                if host is not None:  # an inventory host: its engine over the suite's own SSH, with sudo
                    self._tunnels.append(EngineTunnel(self.transport, host))
                    base, kwargs = self._tunnels[-1].url, {}
                client = docker.DockerClient(base_url=base, timeout=ANSWER, **kwargs)
                client.api.trust_env = False  # loopback/project hosts only: no proxy from the environment
                client.ping()
            except Exception as exc:  # noqa: BLE001 - any engine failure means: could not audit
                raise CouldNotAudit(None, f"the Docker engine {url}", describe(exc)) from None
            self._docker[url] = client
            return client

    def engine_host(self, url: str) -> Host | None:
        """The inventory host an ssh:// engine URL names (by name or address), if any."""
        if not url.startswith("ssh://") or self.transport is None:
            return None
        target = urlparse(url).hostname
        return next((h for h in self.inventory.hosts.values()
                     if target in (h.name, h.address) and h.connection == "ssh"), None)

    # ------------------------------------------------------------ HTTP

    def public(self) -> Public:
        """The deployment's public endpoint (`audit_public_url`, reached at `audit_resolve`'s address
        like curl --resolve, verified with `audit_ca_bundle`)."""
        with self._lock:
            if self._public is None:
                url = self.inventory.setting("audit_public_url")
                if not url:
                    raise CouldNotAudit(None, "the public endpoint",
                                        "the inventory names none (all.vars.audit_public_url)")
                self._public = Public(url, self.inventory.setting("audit_resolve") or {},
                                      self.inventory.setting("audit_ca_bundle"))
            return self._public

    def api(self, name: str) -> Api:
        """The Prometheus, Alertmanager or Grafana HTTP API of the inventory (`audit_<name>`: url,
        optionally `via` a host whose SSH connection reaches it)."""
        with self._lock:
            if name in self._apis:
                return self._apis[name]
            endpoint = self.inventory.setting(f"audit_{name}")
            if not endpoint:
                raise CouldNotAudit(None, f"the {name} API", f"the inventory names none (all.vars.audit_{name})")
            url, via = endpoint.get("url"), endpoint.get("via")
            if via:
                parsed = urlparse(url)
                port = parsed.port or (443 if parsed.scheme == "https" else 80)
                address, local = self.forward(self.inventory.hosts[via], port, parsed.hostname or "127.0.0.1")
                url = parsed._replace(netloc=f"{address}:{local}").geturl()
            self._apis[name] = Api(url, name)
            return self._apis[name]

    def close(self) -> None:
        for tunnel in self._tunnels:
            tunnel.close()
        for conn in list(self._pg.values()):
            with contextlib.suppress(Exception):
                conn.close()
        for client in list(self._redis.values()):
            with contextlib.suppress(Exception):
                client.close()


@dataclass(frozen=True)
class RedisAnswer:
    """An error answer of Redis (its own words), e.g. NOAUTH or an unknown command."""

    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


class Public:
    """HTTP(S) to the public name with an address override, the CA bundle, and the timeouts."""

    def __init__(self, url: str, resolve: dict[str, str], ca_bundle: str | None):
        from audit.http import public_session

        self.url = url.rstrip("/")
        parsed = urlparse(url)
        self.name = parsed.hostname or ""
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.address = resolve.get(self.name, self.name)
        self.ca_bundle = ca_bundle
        self.resolve = resolve
        self.session = public_session(resolve, ca_bundle)
        self._lock = threading.Lock()

    def get(self, path: str, *, scheme: str | None = None, method: str = "GET", **kwargs):
        """One request to the public endpoint; connection failures are CouldNotAudit."""
        import requests

        base = self.url if scheme is None else f"{scheme}://{urlparse(self.url).netloc}"
        kwargs.setdefault("timeout", (CONNECT, ANSWER))
        kwargs.setdefault("allow_redirects", False)
        try:
            return self.session.request(method, base + path, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise CouldNotAudit(None, f"the public endpoint {base}",
                                f"TLS verification failed: {describe(exc)}") from None
        except requests.RequestException as exc:
            raise CouldNotAudit(None, f"the public endpoint {base}", describe(exc)) from None

    def alpn(self, offered: list[str]) -> str | None:
        """The protocol the endpoint selects by ALPN from `offered`, in one TLS handshake to the
        public name (SNI, verified with the CA bundle); a failed handshake is CouldNotAudit."""
        import socket
        import ssl

        ctx = ssl.create_default_context(cafile=self.ca_bundle)
        ctx.set_alpn_protocols(offered)
        try:
            with socket.create_connection((self.address, self.port), timeout=CONNECT) as raw, \
                    ctx.wrap_socket(raw, server_hostname=self.name) as tls:
                return tls.selected_alpn_protocol()
        except (OSError, ssl.SSLError) as exc:
            raise CouldNotAudit(None, f"the public endpoint {self.name}:{self.port}",
                                f"TLS handshake: {describe(exc)}") from None


class Api:
    """GET JSON from a Prometheus-style HTTP API (a tunnelled local URL); failures are CouldNotAudit."""

    def __init__(self, base: str, name: str):
        import requests

        self.base, self.name = base.rstrip("/"), name
        # One session (its connections reused); the environment's proxies and CA bundles do not
        # apply: the API is a tunnel on loopback, and reading os.environ from prefetch threads
        # races with pytest's own PYTEST_CURRENT_TEST updates.
        self.session = requests.Session()
        self.session.trust_env = False

    def raw(self, path: str, **params: Any):
        import requests

        try:
            resp = self.session.get(self.base + path, params=params or None, timeout=(CONNECT, ANSWER))
        except requests.RequestException as exc:
            raise CouldNotAudit(None, f"the {self.name} API", describe(exc)) from None
        if resp.status_code >= 400:
            raise CouldNotAudit(None, f"the {self.name} API", f"GET {path} answered HTTP {resp.status_code}")
        return resp

    def get(self, path: str, **params: Any) -> Any:
        body = self.raw(path, **params)
        try:
            data = body.json()
        except json.JSONDecodeError:
            raise CouldNotAudit(None, f"the {self.name} API", f"GET {path} did not answer JSON") from None
        if isinstance(data, dict) and data.get("status") not in (None, "success"):
            raise CouldNotAudit(None, f"the {self.name} API", f"{path}: {data.get('errorType')}: {data.get('error')}")
        return data.get("data", data) if isinstance(data, dict) else data

    def text(self, path: str) -> str:
        return self.raw(path).text

    def status(self, path: str) -> tuple[int | None, str]:
        """(HTTP status, start of the body) of a GET, e.g. a readiness endpoint; (None, why) when
        the connection is refused or reset: the tunnel's host answered, so the service itself is
        down. A timeout is CouldNotAudit."""
        import requests

        try:
            resp = self.session.get(self.base + path, timeout=(CONNECT, ANSWER))
        except requests.ConnectionError as exc:
            return None, f"no answer through the tunnel: {type(exc).__name__}"
        except requests.RequestException as exc:
            raise CouldNotAudit(None, f"the {self.name} API", describe(exc)) from None
        return resp.status_code, " ".join(resp.text.split())[:100]


# ------------------------------------------------------------ failure words

AUTH_FAILURES = ("password authentication failed", "no password supplied", "authentication failed",
                 "no pg_hba.conf entry", "scram", "server requested", "role \"", "does not exist",
                 "is not permitted to log in", "require_auth")


def is_auth_failure(message: str) -> bool:
    """A PostgreSQL error that is a refused login rather than an unreachable server."""
    lowered = message.lower()
    return any(k in lowered for k in AUTH_FAILURES) and "could not connect" not in lowered \
        and "connection refused" not in lowered


def pg_failure(message: str) -> str:
    """A libpq error in the suite's words: refused, timed out, or its own first line."""
    lowered = message.lower()
    if "connection refused" in lowered:
        return "PostgreSQL refuses connections (is it running and listening?)"
    if "timeout expired" in lowered or "timed out" in lowered:
        return f"no answer within {CONNECT} s"
    if "server closed the connection" in lowered:
        return "the server closed the connection"
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("connection to server at")] or lines
    return " ".join(useful)[:300] or "PostgreSQL failed without a message"


def redis_failure(exc: BaseException) -> str:
    text = describe(exc)
    lowered = text.lower()
    if "connection refused" in lowered or "error 111" in lowered:
        return "Redis refuses connections (is it running?)"
    if "timeout" in lowered or "timed out" in lowered:
        return f"no answer within {ANSWER} s"
    return text


def in_network(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False
