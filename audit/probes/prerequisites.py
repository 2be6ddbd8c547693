"""Prerequisites (guide: System Requirements, Software Dependencies): the operating system, cores,
memory, root storage and its media, link speed, and the versions of the guide's software, read
on every host in ONE round trip. A tool that is not installed leaves its version None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from audit.facts import probe
from audit.judge import Reading

COMMANDS = {
    "os_release": "cat /etc/os-release",
    "nproc": "nproc",
    "meminfo": "grep -E '^MemTotal:' /proc/meminfo",
    "root_disk": "df -P -B1 / | tail -n 1",
    "rotational": "for d in /sys/block/*/queue/rotational; do echo \"$d $(cat $d)\"; done",
    "nic_speed": "for n in /sys/class/net/*; do [ \"${n##*/}\" = lo ] || "
                 "echo \"${n##*/} $(cat $n/speed 2>/dev/null)\"; done",
    "python": "python3 --version 2>&1",
    "postgres": "for b in /usr/lib/postgresql/*/bin/postgres /usr/pgsql-*/bin/postgres; do "
                "[ -x \"$b\" ] && \"$b\" -V; done; command -v postgres >/dev/null && postgres -V",
    "redis": "command -v redis-server >/dev/null && redis-server --version",
    "nginx": "command -v nginx >/dev/null && nginx -v 2>&1",
    "certbot": "command -v certbot >/dev/null && certbot --version 2>&1",
    "docker": "command -v docker >/dev/null && $SUDO docker version --format '{{.Server.Version}}' 2>/dev/null",
    "compose": "(docker compose version --short 2>/dev/null || docker-compose version --short 2>/dev/null)",
}
TOOL_REQUIREMENT = {"python": "PRE-PYTHON-VERSION", "postgres": "PRE-POSTGRES-VERSION", "redis": "PRE-REDIS-VERSION",
                    "nginx": "PRE-NGINX-VERSION", "certbot": "PRE-CERTBOT", "docker": "PRE-DOCKER-VERSION",
                    "compose": "PRE-COMPOSE-VERSION"}
VERSION_AFTER = {"postgres": "(PostgreSQL)", "redis": "v=", "nginx": "nginx/"}  # where the version is
SHOWN = {"docker": "docker version", "compose": "docker compose version", "python": "python3 --version",
         "postgres": "postgres -V", "redis": "redis-server --version", "nginx": "nginx -v"}
GIB, GB = 1024**3, 1000**3
MEMORY_SLACK = 0.95  # MemTotal excludes what firmware and kernel reserve: a 16 GB machine shows ~15.6 GiB
_NUMBER = re.compile(r"(?<![\w.])v?=?(\d+(?:\.\d+){0,3})")


# ---------------------------------------------------------------- parsing (unit-tested)

def find_version(text: str, after: str | None = None) -> Version | None:
    """The first dotted version number in `text` (after the marker `after`, when given)."""
    if after and after in text:
        text = text.split(after, 1)[1]
    for match in _NUMBER.finditer(text or ""):
        try:
            return Version(match.group(1))
        except InvalidVersion:
            continue
    return None


def os_release(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k: v.strip().strip('"') for k, v in pairs}


def memory_gib(meminfo: str) -> float | None:
    match = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    return int(match.group(1)) * 1024 / GIB if match else None


def root_disk(df_line: str) -> tuple[str, int | None]:
    """(device, size in bytes) of `df -P -B1 /`'s line."""
    fields = df_line.split()
    return (fields[0], int(fields[1])) if len(fields) >= 2 and fields[1].isdigit() else ("?", None)


def root_is_ssd(source: str, rotational: str) -> tuple[bool, str]:
    """The root filesystem's device is non-rotational; in a container (overlay root), every
    physical disk the host exposes must be."""
    flags = dict(line.split()[0:2] for line in rotational.splitlines() if len(line.split()) == 2)
    disks = {p.split("/")[3]: v for p, v in flags.items() if not re.match(r".*/(loop|ram|zram|nbd)\d", p)}
    if source.startswith("/dev/"):
        dev = source.rsplit("/", 1)[1]
        owners = [d for d in disks if dev.startswith(d)]
        if owners:
            disk = max(owners, key=len)
            return disks[disk] == "0", f"{source} on {disk}: rotational={disks[disk]}"
    return bool(disks) and all(v == "0" for v in disks.values()), f"{source}; disks: {disks}"


def link_speeds(text: str) -> dict[str, int | None]:
    """Interface -> link speed in Mb/s (None when the kernel does not know it)."""
    speeds = {}
    for line in text.splitlines():
        name, _, speed = line.partition(" ")
        speeds[name] = int(speed) if speed.strip().lstrip("-").isdigit() else None
    return speeds


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class PrerequisiteFacts:
    """One host's operating system, hardware and software versions."""

    os: dict[str, str]                   # /etc/os-release
    os_text: str
    cores: int | None
    memory_gib: float | None             # MemTotal
    root_device: str
    root_bytes: int | None
    ssd: bool
    ssd_how: str
    speeds: dict[str, int | None]        # Mb/s per interface
    outputs: dict[str, str]              # what each version command printed

    def version(self, tool: str) -> Version | None:
        return find_version(self.outputs[tool], VERSION_AFTER.get(tool))

    def sides(self, tool: str) -> dict[str, Reading]:
        """The installed version of `tool` (the PRE-*-VERSION value rows)."""
        found = self.version(tool)
        return {"installed": Reading(str(found) if found else self.outputs[tool] or "not installed", found,
                                     SHOWN[tool])}

    def norm(self, tool: str, minimum) -> Version:
        return Version(str(minimum))


@probe()
def prerequisites(session, host) -> PrerequisiteFacts:
    """The host's OS, cores, memory, root storage, links and software versions (one round trip)."""
    # a tool is asked only where a requirement judges it (certbot and docker-compose are slow
    # Python programs to start: asked everywhere they cost each host a second of CPU)
    tools = {k: c for k, c in COMMANDS.items() if k not in TOOL_REQUIREMENT or not host.roles
             or host.roles & set(session.catalogue[TOOL_REQUIREMENT[k]].roles or ())}
    out = dict.fromkeys(COMMANDS, "") | session.access.collect(host, tools)
    device, size = root_disk(out["root_disk"])
    ssd, how = root_is_ssd(device, out["rotational"])
    return PrerequisiteFacts(
        os=os_release(out["os_release"]), os_text=out["os_release"],
        cores=int(out["nproc"]) if out["nproc"].isdigit() else None, memory_gib=memory_gib(out["meminfo"]),
        root_device=device, root_bytes=size, ssd=ssd, ssd_how=how, speeds=link_speeds(out["nic_speed"]),
        outputs={k: out[k] for k in ("python", "postgres", "redis", "nginx", "certbot", "docker", "compose")})
