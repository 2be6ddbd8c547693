"""What the host-level areas (network, checklist) read from hosts, and the exposure probes.

- `network_facts(server)`: ONE `server.collect("network", ...)` round trip per host (ufw status,
  iptables-save, the saved rules, listening sockets), shared by test_network and test_checklist.
- `probe(address, port, kind)`: a protocol-level probe with a short timeout from the runner:
  PostgreSQL answers an SSLRequest with 'S' or 'N', Redis answers PING with +PONG or -NOAUTH,
  SSH sends its banner. A port that accepts TCP but answers nothing counts as closed.
- `internal_probe_script(targets)`: the same probes as one bash script, run on a host inside
  the deployment network (bash /dev/tcp, no extra tools).
"""

from __future__ import annotations

import socket
import time
from typing import Any

PROBE_TIMEOUT = 2.0

# What the first bytes of a service's answer look like, per protocol.
PG_SSLREQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
PROBES: dict[str, tuple[bytes, tuple[bytes, ...]]] = {
    "postgres": (PG_SSLREQUEST, (b"S", b"N")),
    "redis": (b"PING\r\n", (b"+PONG", b"-NOAUTH", b"-ERR", b"-DENIED")),
    "ssh": (b"", (b"SSH-",)),
    "any": (b"\r\n\r\n", (b"",)),  # any answer at all
}


def setting(server, key: str, default: Any = None, inventory=None) -> Any:
    """A suite setting: the host's audit_settings, else the inventory's global audit_settings."""
    own = (server.host_vars.vars.get("audit_settings") or {}) if server is not None else {}
    if key in own:
        return own[key]
    if inventory is not None:
        return (inventory.setting("audit_settings") or {}).get(key, default)
    return default


def network_commands() -> dict[str, str]:
    return {
        "ufw": "ufw status verbose 2>&1",
        "iptables": "iptables-save 2>&1",
        "rules_v4": "cat /etc/iptables/rules.v4 2>&1",
        "listening": "ss -Htln 2>&1",
    }


def network_facts(server) -> dict[str, str]:
    return server.collect("network", network_commands())


def classify(kind: str, answer: bytes | None) -> bool:
    """Did the service answer like `kind`? None = no connection / no answer."""
    if answer is None:
        return False
    expect = PROBES[kind][1]
    if kind == "any":
        return bool(answer)
    return any(answer.startswith(e) for e in expect)


def probe(address: str, port: int, kind: str, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Probe address:port from the runner; {'open': bool, 'answer': ..., 'ms': ..., 'why': ...}."""
    send = PROBES[kind][0]
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if send:
                sock.sendall(send)
            answer = sock.recv(16)
    except TimeoutError:
        return {"open": False, "why": "timeout (filtered, or accepted but silent)"}
    except OSError as exc:
        return {"open": False, "why": f"{type(exc).__name__}: {exc.strerror or exc}"}
    ms = round((time.monotonic() - started) * 1000, 1)
    opened = classify(kind, answer)
    return {"open": opened, "answer": answer[:8].decode("latin-1"), "ms": ms,
            "why": "protocol answer" if opened else "connected but no protocol answer"}


def internal_probe_script(targets: list[tuple[str, int, str]], timeout: int = 3) -> dict[str, str]:
    """Commands (name "host:port") that probe each target from inside, printing the answer's first
    bytes (empty when nothing answered)."""
    cmds = {}
    for host, port, kind in targets:
        send = PROBES[kind][0]
        payload = "".join(f"\\x{b:02x}" for b in send)
        cmds[f"{host}:{port}"] = (
            f"timeout {timeout} bash -c 'exec 3<>/dev/tcp/{host}/{port} || exit 1; "
            f"printf \"{payload}\" >&3; dd bs=64 count=1 <&3 2>/dev/null' 2>/dev/null | od -An -c | tr -d ' \\n'; echo")
    return cmds


def decode_od(text: str) -> bytes:
    """The `od -An -c` text of a short answer back to bytes (enough for the probes' prefixes)."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt.isdigit():
                out.append(int(text[i + 1:i + 4], 8))
                i += 4
                continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0"}.get(nxt, nxt.encode())
            i += 2
            continue
        out += ch.encode("latin-1")
        i += 1
    return bytes(out)
