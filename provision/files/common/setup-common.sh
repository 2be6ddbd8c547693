#!/bin/sh
# Every host: the guide's firewall for this host's roles, root's crontab. Idempotent.
set -eu
INTERNAL=@@DEPLOYMENT_NET@@
ROLES=" @@ROLES@@ "
has() { case "$ROLES" in *" $1 "*) return 0;; esac; return 1; }
internal() { ufw allow from "$INTERNAL" to any port "$1" proto tcp >/dev/null; }

# Firewall (guide: Infrastructure Setup > Network Configuration): SSH everywhere,
# HTTP/HTTPS on the web host, PostgreSQL and Redis "internal only" (from the
# deployment's network), the Redis Cluster ports and their bus ports likewise.
ufw default deny incoming >/dev/null
ufw default allow outgoing >/dev/null
if has web; then
    ufw allow 80/tcp >/dev/null
    ufw allow 443/tcp >/dev/null
fi
ufw allow 22/tcp >/dev/null
if has db_primary || has db_replica; then internal 5432; fi
if has redis; then internal 6379; fi
if has redis_cluster; then
    for port in 7000 7001 17000 17001; do internal "$port"; done
fi
ufw --force enable >/dev/null

# root's crontab (if this host has one)
if [ -f /etc/pynomaly/crontab ]; then
    crontab /etc/pynomaly/crontab
fi
