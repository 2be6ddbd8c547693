#!/bin/sh
# Every host: the guide's firewall, root's crontab. Idempotent.
set -eu
INTERNAL=@@DEPLOYMENT_NET@@

# Firewall (guide: Infrastructure Setup > Network Configuration). PostgreSQL,
# Redis and the Redis Cluster ports (and their bus ports) only from the
# deployment's network.
ufw default deny incoming >/dev/null
ufw default allow outgoing >/dev/null
ufw allow 80/tcp >/dev/null
ufw allow 443/tcp >/dev/null
ufw allow 22/tcp >/dev/null
for port in 5432 6379 7000 7001 17000 17001; do
    ufw allow from "$INTERNAL" to any port "$port" proto tcp >/dev/null
done
ufw --force enable >/dev/null

# root's crontab (if this host has one)
if [ -f /etc/pynomaly/crontab ]; then
    crontab /etc/pynomaly/crontab
fi
