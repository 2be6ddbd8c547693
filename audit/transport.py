"""How the suite reaches hosts: testinfra over OpenSSH with connection sharing, and SSH tunnels.

One generated ssh_config names every inventory host (address, port, user, key, known_hosts)
and turns on multiplexing (ControlMaster/ControlPath), so that all checks and all xdist workers
of a run share one TCP connection per host. Services that are not public (PostgreSQL, Redis,
Prometheus) are reached through `ssh -O forward` on that same connection, as an auditor would
in prod. Every network operation has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

from audit.inventory import Host, Inventory
from audit.outcomes import HostUnreachable

CONNECT_TIMEOUT = 5
COMMAND_TIMEOUT = 60


def new_run() -> None:
    """A fresh run id for an audit (its process, or its xdist controller before the workers start,
    who inherit it): an audit started from within another (a test of the suite) never shares the
    other's SSH masters or facts."""
    os.environ["PYNOMALY_AUDIT_RUN"] = uuid.uuid4().hex[:10]


def run_id() -> str:
    """Shared by the xdist controller and its workers, so they share SSH masters and facts."""
    return os.environ.get("PYNOMALY_AUDIT_RUN") or os.environ.setdefault("PYNOMALY_AUDIT_RUN", uuid.uuid4().hex[:10])


def control_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"pa-{run_id()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def ssh_config_text(inventory: Inventory) -> str:
    """An ssh_config stanza per SSH host of the inventory (for raw ssh:// specs, after testinfra's
    own --ssh-config file when one is given: its host keys and identities apply)."""
    lines = [f"Include {inventory.globals['ssh_config']}", ""] if inventory.globals.get("ssh_config") else []
    for host in inventory.hosts.values():
        if host.connection not in ("ssh", "paramiko"):
            continue
        v = host.vars
        lines += [f"Host {host.name}", f"  HostName {host.address}", f"  Port {host.port}"]
        if host.user:
            lines.append(f"  User {host.user}")
        if v.get("ansible_ssh_private_key_file"):
            lines += [f"  IdentityFile {v['ansible_ssh_private_key_file']}", "  IdentitiesOnly yes"]
        if v.get("audit_known_hosts"):
            lines += [f"  UserKnownHostsFile {v['audit_known_hosts']}", "  StrictHostKeyChecking yes"]
        lines += [
            "  BatchMode yes",
            f"  ConnectTimeout {CONNECT_TIMEOUT}",
            "  ServerAliveInterval 5",
            "  ServerAliveCountMax 3",
            "  ControlMaster auto",
            f"  ControlPath {control_dir()}/%C",
            "  ControlPersist 600",  # the run ends them (close); an idle one must outlive long opt-in checks
            "  LogLevel ERROR",
            "",
        ]
    return "\n".join(lines)


class Transport:
    """Per-process SSH plumbing for one inventory: the config file and the tunnels."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        fd, path = tempfile.mkstemp(prefix="ssh_config-", dir=control_dir())
        with os.fdopen(fd, "w") as fh:
            fh.write(ssh_config_text(inventory))
        self.ssh_config = path
        self._lock = threading.Lock()
        self._forwards: dict[tuple[str, str, int], int] = {}
        self.stats: dict[str, dict[str, int]] = {}  # host -> {"commands": n, "forwards": n}

    def count(self, host: str, what: str) -> None:
        entry = self.stats.setdefault(host, {"commands": 0, "forwards": 0})
        entry[what] += 1

    def ssh(self, host: Host, *args: str, command: str | None = None, timeout: int = 20) -> subprocess.CompletedProcess:
        """`ssh [options] HOST [command]` with the run's ssh_config."""
        return subprocess.run(["ssh", "-F", self.ssh_config, *args, host.name, *([command] if command else [])],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def session(self, host: Host, command: str, reverse: tuple[int, int] | None = None, log=None) -> subprocess.Popen:
        """A long-running command on a connection of its own (not the shared one: it ends with the
        command), stdin a pipe, output to `log`; `reverse=(remote, local)`: the host's
        127.0.0.1:remote reaches this machine's 127.0.0.1:local through that connection."""
        args = ["-S", "none", "-o", "ExitOnForwardFailure=yes"]
        if reverse:
            args += ["-R", f"127.0.0.1:{reverse[0]}:127.0.0.1:{reverse[1]}"]
        self.count(host.name, "commands")
        return subprocess.Popen(["ssh", "-F", self.ssh_config, *args, host.name, command], stdin=subprocess.PIPE,
                                stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True)

    def forward(self, host: Host, remote_port: int, remote_host: str = "127.0.0.1") -> tuple[str, int]:
        """A local (address, port) that reaches remote_host:remote_port as seen from `host`."""
        if host.connection == "local":
            return remote_host, remote_port
        key = (host.name, remote_host, remote_port)
        with self._lock:
            if key in self._forwards:
                return "127.0.0.1", self._forwards[key]
            last = ""
            self.count(host.name, "forwards")
            for _ in range(3):
                port = _free_port()
                proc = self.ssh(host, "-O", "forward", "-L", f"127.0.0.1:{port}:{remote_host}:{remote_port}")
                if proc.returncode == 0:
                    self._forwards[key] = port
                    return "127.0.0.1", port
                last = proc.stderr.strip()
                if "control socket" in last.lower() or "no such file" in last.lower():
                    # no shared connection (yet, or no more: ControlPersist ends an idle one):
                    # this one becomes it
                    self.ssh(host, command="true")
            raise HostUnreachable(host.name, f"cannot forward to {remote_host}:{remote_port} over SSH: {last}")

    def close(self) -> None:
        """Stop the shared SSH masters (the controller does this once, at the end of the run)."""
        for host in self.inventory.hosts.values():
            if host.connection in ("ssh", "paramiko"):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.ssh(host, "-O", "exit", timeout=5)
        shutil.rmtree(control_dir(), ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_cause(text: str) -> str:
    """The last line ssh printed (its reason), or a generic one."""
    text = (text or "").strip().splitlines()
    return text[-1] if text else "ssh exited with status 255"


class EngineTunnel:
    """A local unix socket to a host's Docker engine over the suite's own SSH connection: every
    connection to it runs `[sudo -n] docker system dial-stdio` on the host and relays the bytes.
    Written here because the Docker SDK's own ssh:// transport uses neither a given ssh_config
    (host keys, multiplexing) nor sudo, and an audit account is rightly not in the docker group."""

    def __init__(self, transport: Transport, host: Host):
        self.command = ["ssh", "-F", transport.ssh_config, host.name,
                        *(["sudo", "-n"] if host.become else []), "docker", "system", "dial-stdio"]
        self.path = str(control_dir() / f"docker-{host.name}-{os.getpid()}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(self.path)
        self._server.listen(16)
        threading.Thread(target=self._accept, daemon=True, name=f"engine-{host.name}").start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)

        def upstream() -> None:
            with contextlib.suppress(OSError, ValueError):
                while data := conn.recv(65536):
                    proc.stdin.write(data)
                    proc.stdin.flush()
            with contextlib.suppress(OSError):
                proc.stdin.close()

        pump = threading.Thread(target=upstream, daemon=True)
        pump.start()
        with contextlib.suppress(OSError, ValueError):
            while data := proc.stdout.read1(65536):
                conn.sendall(data)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        pump.join(timeout=5)
        conn.close()
        proc.kill()
        proc.wait(timeout=5)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.close()
            os.unlink(self.path)
