#!/bin/sh
# app1 (fleet): the guide's permissions on /opt/pynomaly (Application Security) and the log and
# backup folders. The app image and `docker-compose up -d` follow from provision. Idempotent.
set -eu
mkdir -p /opt/pynomaly/scripts /opt/backups/application /var/log/pynomaly
chown -R pynomaly:pynomaly /opt/pynomaly
chmod -R 750 /opt/pynomaly
chmod 600 /opt/pynomaly/.env.production /opt/pynomaly/.env
# The replicas (uid 1000 = pynomaly) write their Gunicorn logs here (a bind mount).
chown pynomaly:pynomaly /var/log/pynomaly
# A replica that is down leaves its port unpublished: NGINX's connection then reaches app1's own
# INPUT chain, where ufw's default (deny = drop) would keep it waiting proxy_connect_timeout (60 s
# in the guide's /docs and /health locations) before trying the next server. Refused at once
# instead, as a closed port on the guide's single server is. (Published ports are forwarded by
# Docker and never reach this rule; outside the deployment network the default drop stays.)
ufw reject from @@DEPLOYMENT_NET@@ to any port 8000:8002 proto tcp >/dev/null
