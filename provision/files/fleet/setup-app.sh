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
