"""Guide: Architecture Overview and Components - NGINX in front of several app instances, traffic
spread across them, a hot-standby PostgreSQL replica, Redis Cluster, the monitoring stack.
What is read, and how: audit/probes/architecture.py (and the NGINX and Redis areas' probes).
"""

from __future__ import annotations

import pytest

from audit.probes.architecture import proxied_locations


@pytest.mark.roles("web")
@pytest.mark.requirement("ARCH-NGINX-FRONT")
def check_nginx_fronts_the_app(judge, nginx, arch_front):
    """"Load Balancer (NGINX) -> Application Servers": public HTTPS is answered by NGINX, whose
    locations proxy to upstream pynomaly_backend."""
    want = judge.expected
    proxied = proxied_locations(nginx.config, want["upstream"])
    judge.that((arch_front.server or "").lower().startswith(want["proxy"]) and arch_front.status == 200,
               what=f"GET {arch_front.url}", found={"status": arch_front.status or arch_front.error,
                                                    "Server": arch_front.server},
               expected={"status": 200, "Server": f"{want['proxy']}..."})
    defined = nginx.config.upstream(want["upstream"]) is not None
    judge.that(defined and ("/" in proxied or "/health" in proxied), what=f"upstream {want['upstream']}",
               found={"defined": defined, "locations proxied to it": proxied},
               expected={"defined": True, "locations proxied to it": "/ or /health"}, where="nginx -T")


@pytest.mark.roles("app")
@pytest.mark.requirement("ARCH-MULTIPLE-APP-INSTANCES")
def check_several_app_instances_answer(judge, arch_instances):
    """"Application Servers: Multiple Pynomaly instances for high availability" - each declared
    instance answers GET /health with 200 on its own port."""
    judge.that(len(arch_instances.ports) >= judge.expected["min_instances"], what="app instances declared",
               found=list(arch_instances.ports), expected=f"at least {judge.expected['min_instances']}")
    judge.each(arch_instances.health, lambda code: code == "200", what="GET /health per instance (HTTP status)",
               expected="200 on every port")


@pytest.mark.roles("web")
@pytest.mark.requirement("ARCH-LOAD-BALANCING")
def check_traffic_reaches_every_instance(judge, arch_spread):
    """"Load Balancer (NGINX)" distributes requests: GET /docs through NGINX, 3 per instance;
    every instance's own request counter for /docs grows."""
    sent = f"{len(arch_spread.statuses)} sent, statuses {', '.join(sorted(set(arch_spread.statuses)))}"
    judge.each(arch_spread.served, lambda n: n > 0, what=f"GET /docs served per instance ({sent})",
               expected="every instance > 0")


@pytest.mark.roles("db_replica")
@pytest.mark.requirement("ARCH-DB-READ-REPLICA")
def check_replica_serves_read_only_queries(judge, arch_replica):
    """"Database: PostgreSQL with read replicas" - hot_standby on, and pynomaly_prod answers
    read-only queries on the replica."""
    found = arch_replica.row or {"refused": arch_replica.refused}
    judge.that(found.get("hot_standby") == judge.expected["hot_standby"], what="read-only query on the replica",
               found=found, expected=judge.expected)


@pytest.mark.roles("redis_cluster")
@pytest.mark.requirement("ARCH-REDIS-CLUSTER")
def check_redis_runs_as_cluster(judge, arch_cluster):
    """"Cache: Redis cluster for session and data caching" - cluster_enabled:1 on every node."""
    want = judge.expected["cluster_enabled"]
    judge.each(arch_cluster, lambda enabled: enabled == want, what="cluster_enabled per node", expected=want)


@pytest.mark.roles("monitoring")
@pytest.mark.requirement("ARCH-MONITORING-STACK")
def check_prometheus_is_healthy(judge, arch_prometheus):
    """"Monitoring: Prometheus, Grafana, ELK stack" - Prometheus answers /-/healthy."""
    judge.that(arch_prometheus.status == 200, what=f"GET {arch_prometheus.url}",
               found={"status": arch_prometheus.status, "body": arch_prometheus.body}, expected="200")


@pytest.mark.roles("monitoring")
@pytest.mark.requirement("ARCH-MONITORING-GRAFANA")
def check_grafana_is_healthy(judge, arch_grafana):
    """"Monitoring: Prometheus, Grafana, ELK stack" - Grafana answers /api/health."""
    judge.that(arch_grafana.status == 200, what=f"GET {arch_grafana.url}",
               found={"status": arch_grafana.status, "body": arch_grafana.body}, expected="200")
