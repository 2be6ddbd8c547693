"""The guide's fixed names, paths and ports: one place for the checks, the probes and the drifts.

Values a deployment may legitimately choose differently, and that a check compares, live in the
requirement catalogue (checks/requirements.yml, overridable per inventory with audit_expected);
what is here is where the guide says things are and what it calls them.
"""

from __future__ import annotations

# Database Configuration
DATABASE = "pynomaly_prod"
APP_ROLE = "pynomaly_user"
AUDIT_ROLE = "pynomaly_audit"  # the suite's own least-privilege role (docs/contracts.md)
PG_PORT = 5432

# Redis Configuration
REDIS_PORT = 6379
REDIS_CONF = "/etc/redis/redis.conf"
CLUSTER_PORTS = (7000, 7001)
CLUSTER_SLOTS = 16384

# Application Deployment
APP_DIR = "/opt/pynomaly"
COMPOSE_FILE = f"{APP_DIR}/docker-compose.prod.yml"
START_SCRIPT = f"{APP_DIR}/start_production.sh"
ENV_FILE = f"{APP_DIR}/.env.production"
SCRIPTS_DIR = f"{APP_DIR}/scripts"
APP_SERVICE = "pynomaly-app"  # the Compose service
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_NUMBER_LABEL = "com.docker.compose.container-number"
APP_PORTS = (8000, 8001, 8002)  # the upstream's three instances
APP_INSTANCES = 3
APP_LOG_DIR = "/var/log/pynomaly"

# NGINX and TLS
NGINX_CONF = "/etc/nginx/nginx.conf"
PLACEHOLDER_DOMAIN = "your-domain.com"
LETSENCRYPT_LIVE = "/etc/letsencrypt/live"

# Monitoring & Logging
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
RULES_FILE = "/etc/prometheus/pynomaly_rules.yml"
GRAFANA_DASHBOARD = "/etc/grafana/dashboards/pynomaly.json"

# Backup & Recovery
BACKUP_DB_SCRIPT = f"{SCRIPTS_DIR}/backup_db.sh"
BACKUP_APP_SCRIPT = f"{SCRIPTS_DIR}/backup_app.sh"
BACKUP_DB_DIR = "/opt/backups/postgres"
BACKUP_APP_DIR = "/opt/backups/application"

# Security Hardening
FAIL2BAN_JAIL = "/etc/fail2ban/jail.local"
IPTABLES_RULES = "/etc/iptables/rules.v4"

# Network, Security Hardening, Monitoring Checklist, Maintenance (the host areas)
SERVER_ROLES = ("web", "app", "monitoring", "db_primary", "db_replica", "redis", "redis_cluster",
                "backup_db", "backup_app")  # "every host": the servers, not the Docker engine (group docker)
IPTABLES_GROUP = "iptables"  # hosts whose firewall is plain iptables, not ufw (docs/contracts.md)
AUTH_LOGS = ("/var/log/auth.log", "/var/log/secure")  # sshd's log: Debian/Ubuntu, RHEL
MAINTENANCE_SCRIPTS = {period: f"{SCRIPTS_DIR}/{period}_maintenance.sh" for period in ("daily", "weekly", "monthly")}
API_KEY_SCRIPT = f"{SCRIPTS_DIR}/audit_api_keys.py"

# PostgreSQL, Backup & Recovery, Architecture (the guide's tables, its logrotate entry)
APP_TABLES = ("users", "audit_logs", "api_keys")  # the application's tables a database backup must hold
LOGROTATE_CONF = "/etc/logrotate.d/pynomaly"
