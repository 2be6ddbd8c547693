"""The fleet topology (docs/contracts.md, "Fleet deployment"): network, hosts, units.

Same host names as the reference where the role is the same, plus app1. Everything that Docker
or the runner can see has a name of its own (label, containers, network, volume, loopback
addresses, state folder), so the reference flavour never sees the fleet and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NETWORK = "pynomaly-fleet"
SUBNET = "172.28.78.0/24"
GATEWAY = "172.28.78.254"
DEPLOYMENT_NET = "172.28.78.0/25"  # "internal" for ufw and the app ports; the gateway is outside it
PUBLIC_NAME = "pynomaly.test"
PUBLIC_URL = f"https://{PUBLIC_NAME}"

LABEL = "pynomaly-fleet.deployment"  # every container, the network and the volumes carry it
CONFIG_LABEL = "pynomaly-fleet.config"
CONTAINER_PREFIX = "fleet-"
AUDIT_USER = "auditor"

COMPOSE_PROJECT = "pynomaly"  # docker-compose's project: the directory of the compose file
APP_SERVICE = "pynomaly-app"
APP_PORTS = (8000, 8001, 8002)  # published on app1 ("8000-8002:8000": one per replica)
CLUSTER_PORTS = (7000, 7001)
APP_DIR = "/opt/pynomaly"
COMPOSE_FILE = f"{APP_DIR}/docker-compose.prod.yml"

# systemd units every host runs; the firewall unit is the host's own (ufw or netfilter-persistent).
COMMON_UNITS = ("rsyslog", "ssh", "cron", "fail2ban")
MONITORING_UNITS = (
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-postgres-exporter",
    "prometheus-redis-exporter",
    "prometheus-nginx-exporter",
)
CLUSTER_UNITS = tuple(f"redis-server@{p}" for p in CLUSTER_PORTS)
POSTGRES_UNIT = "postgresql@15-main"  # `postgresql` itself is an umbrella oneshot: always "active"


@dataclass(frozen=True)
class Host:
    """One container playing one of the guide's servers, with systemd as PID 1."""

    name: str
    ip: str
    public_ip: str
    ports: tuple[int, ...]
    roles: tuple[str, ...]
    units: tuple[str, ...] = field(default=())
    firewall: str = "ufw"  # or "iptables" (the guide's Network Security rules, netfilter-persistent)
    docker_engine: bool = False  # runs Docker (docker.io) inside: the Compose-run app host

    @property
    def container(self) -> str:
        return CONTAINER_PREFIX + self.name

    @property
    def firewall_unit(self) -> str:
        return "netfilter-persistent" if self.firewall == "iptables" else "ufw"

    @property
    def all_units(self) -> tuple[str, ...]:
        """The units `status` and the health wait look at, in start order."""
        return (self.firewall_unit,) + COMMON_UNITS + self.units

    @property
    def groups(self) -> tuple[str, ...]:
        """Inventory groups: the roles, plus `iptables` for the host without ufw."""
        return self.roles + (("iptables",) if self.firewall == "iptables" else ())

    def has(self, role: str) -> bool:
        return role in self.roles


HOSTS: tuple[Host, ...] = (
    Host("web1", "172.28.78.11", "127.78.0.11", (22, 80, 443), ("web", "monitoring"),
         ("nginx",) + MONITORING_UNITS, firewall="iptables"),
    Host("app1", "172.28.78.41", "127.78.0.41", (22,), ("app", "backup_app", "docker"),
         ("containerd", "docker", "pynomaly-app"), docker_engine=True),
    Host("db1", "172.28.78.21", "127.78.0.21", (22, 5432), ("db_primary", "backup_db"),
         (POSTGRES_UNIT,)),
    Host("db2", "172.28.78.22", "127.78.0.22", (22, 5432), ("db_replica",), (POSTGRES_UNIT,)),
    Host("cache1", "172.28.78.31", "127.78.0.31", (22, 6379, 7000, 7001), ("redis", "redis_cluster"),
         ("redis-server",) + CLUSTER_UNITS),
    Host("cache2", "172.28.78.32", "127.78.0.32", (22, 7000, 7001), ("redis_cluster",), CLUSTER_UNITS),
    Host("cache3", "172.28.78.33", "127.78.0.33", (22, 7000, 7001), ("redis_cluster",), CLUSTER_UNITS),
)

# Units of the image that a host runs only when its roles say so (disabled in the image).
ROLE_UNITS = ("nginx", "postgresql", "redis-server", *CLUSTER_UNITS, *MONITORING_UNITS,
              "containerd", "docker", "docker.socket", "pynomaly-app")

# What `systemctl enable` takes for a unit the host runs (the umbrella for the cluster unit).
ENABLE_AS = {POSTGRES_UNIT: "postgresql"}

# Reference service names (drifts, the reference's `service X ...`) -> fleet units.
SERVICE_UNITS = {
    "postgresql": POSTGRES_UNIT,
    **{f"redis-cluster-{p}": f"redis-server@{p}" for p in CLUSTER_PORTS},
}


def host(name: str) -> Host:
    for h in HOSTS:
        if h.name == name:
            return h
    raise KeyError(name)


def hosts_with(role: str) -> list[Host]:
    return [h for h in HOSTS if h.has(role)]


def app_container_name(n: int) -> str:
    """docker-compose 1.29's name of replica n: <project>_<service>_<n>."""
    return f"{COMPOSE_PROJECT}_{APP_SERVICE}_{n}"
