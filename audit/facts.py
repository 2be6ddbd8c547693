"""Host facts gathered in one remote command: each section is `### name` followed by its output.

Checks read `server.facts["name"]`; a missing tool leaves its section empty. Add a section here
rather than running one more remote command per check.
"""

from __future__ import annotations

FACT_COMMANDS: dict[str, str] = {
    "os_release": "cat /etc/os-release",
    "nproc": "nproc",
    "meminfo": "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo",
    "loadavg": "cat /proc/loadavg",
    "root_disk": "df -P -B1 / | tail -n 1",
    "disks": "df -P -B1 -x tmpfs -x devtmpfs -x overlay -x squashfs 2>/dev/null | tail -n +2",
    "rotational": "for d in /sys/block/*/queue/rotational; do echo \"$d $(cat $d)\"; done",
    "nic_speed": "for n in /sys/class/net/*; do [ \"${n##*/}\" = lo ] || "
                 "echo \"${n##*/} $(cat $n/speed 2>/dev/null)\"; done",
    "python": "python3 --version 2>&1",
    "postgres": "for b in /usr/lib/postgresql/*/bin/postgres /usr/pgsql-*/bin/postgres; do "
                "[ -x \"$b\" ] && \"$b\" -V; done; command -v postgres >/dev/null && postgres -V",
    "redis": "command -v redis-server >/dev/null && redis-server --version",
    "nginx": "command -v nginx >/dev/null && nginx -v 2>&1",
    "certbot": "command -v certbot >/dev/null && certbot --version 2>&1",
    "docker": "command -v docker >/dev/null && docker version --format '{{.Server.Version}}' 2>/dev/null",
    "compose": "(docker compose version --short 2>/dev/null || docker-compose version --short 2>/dev/null)",
}

MARK = "### pynomaly-audit:"


def gather_script(commands: dict[str, str]) -> str:
    """One shell script that prints each command's output under a `### pynomaly-audit:NAME` line."""
    return "; ".join(f"echo '{MARK}{name}'; ({cmd}) 2>/dev/null" for name, cmd in commands.items())


def parse_sections(output: str, commands: dict[str, str]) -> dict[str, str]:
    """name -> output (stripped) for every command; a command that printed nothing maps to ''."""
    found: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith(MARK) and line[len(MARK):].strip() in commands:
            current = line[len(MARK):].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {name: "\n".join(found.get(name, [])).strip() for name in commands}


def parse_facts(output: str) -> dict[str, str]:
    return parse_sections(output, FACT_COMMANDS)
