"""The reference topology of docs/contracts.md: network, hosts, ports, services."""

from __future__ import annotations

from dataclasses import dataclass, field

NETWORK = "pynomaly-ref"
SUBNET = "172.28.77.0/24"
GATEWAY = "172.28.77.254"
DEPLOYMENT_NET = "172.28.77.0/25"  # "internal" for ufw; the gateway is outside it
PUBLIC_NAME = "pynomaly.test"
PUBLIC_URL = f"https://{PUBLIC_NAME}"

LABEL = "pynomaly-ref.deployment"  # every container and the network carry it
COMPOSE_PROJECT = "pynomaly"
APP_SERVICE = "pynomaly-app"
APP_PORTS = (8000, 8001, 8002)
CLUSTER_PORTS = (7000, 7001)
# Docker volume shared by web1 and the app instances: /var/log/pynomaly.
LOG_VOLUME = f"{COMPOSE_PROJECT}_pynomaly-logs"
LOG_DIR = "/var/log/pynomaly"

# Services every host runs, in start order (init.d names).
COMMON_SERVICES = ("rsyslog", "ufw", "ssh", "cron", "fail2ban")


@dataclass(frozen=True)
class Host:
    """One container playing one of the guide's servers."""

    name: str
    ip: str
    public_ip: str
    ports: tuple[int, ...]
    roles: tuple[str, ...]
    services: tuple[str, ...] = field(default=())

    @property
    def all_services(self) -> tuple[str, ...]:
        """Init.d services of this host, in start order (fail2ban last)."""
        first = COMMON_SERVICES[:-1]
        return first + self.services + COMMON_SERVICES[-1:]

    @property
    def second_ip(self) -> str:
        """A second published address of the same container (127.77.1.x): the benchmark's
        12-host inventory audits every container under two names, each over its own SSH."""
        return self.public_ip.replace("127.77.0.", "127.77.1.", 1)

    def has(self, role: str) -> bool:
        return role in self.roles


MONITORING_SERVICES = (
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-postgres-exporter",
    "prometheus-redis-exporter",
    "prometheus-nginx-exporter",
)
CLUSTER_SERVICES = tuple(f"redis-cluster-{p}" for p in CLUSTER_PORTS)

HOSTS: tuple[Host, ...] = (
    Host("web1", "172.28.77.11", "127.77.0.11", (22, 80, 443),
         ("web", "app", "monitoring", "backup_app"),
         ("nginx",) + MONITORING_SERVICES),
    Host("db1", "172.28.77.21", "127.77.0.21", (22, 5432),
         ("db_primary", "backup_db"), ("postgresql",)),
    Host("db2", "172.28.77.22", "127.77.0.22", (22, 5432),
         ("db_replica",), ("postgresql",)),
    Host("cache1", "172.28.77.31", "127.77.0.31", (22, 6379, 7000, 7001),
         ("redis", "redis_cluster"), ("redis-server",) + CLUSTER_SERVICES),
    Host("cache2", "172.28.77.32", "127.77.0.32", (22, 7000, 7001),
         ("redis_cluster",), CLUSTER_SERVICES),
    Host("cache3", "172.28.77.33", "127.77.0.33", (22, 7000, 7001),
         ("redis_cluster",), CLUSTER_SERVICES),
)


def host(name: str) -> Host:
    """The host called ``name``."""
    for h in HOSTS:
        if h.name == name:
            return h
    raise KeyError(name)


def hosts_with(role: str) -> list[Host]:
    return [h for h in HOSTS if h.has(role)]


def app_container_name(n: int) -> str:
    return f"{COMPOSE_PROJECT}-app-{n}"


def app_count() -> int:
    """How many app instances the deployment runs: 3 (the guide), or what `scale N` set."""
    from .state import State

    return int(State().load().get("app_instances") or len(APP_PORTS))


def app_ports(count: int | None = None) -> tuple[int, ...]:
    """Ports of instances 1..count (8000, 8001, ...); count defaults to app_count()."""
    return tuple(APP_PORTS[0] + i for i in range(count or app_count()))
