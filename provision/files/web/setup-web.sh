#!/bin/sh
# web1: file permissions of the guide (Application Security), NGINX reload. Idempotent.
set -eu
mkdir -p /opt/pynomaly/scripts /opt/pynomaly/static /opt/backups/application /var/log/pynomaly
chown -R pynomaly:pynomaly /opt/pynomaly
chmod -R 750 /opt/pynomaly
chmod 600 /opt/pynomaly/.env.production
# The app instances (uid 1000 = pynomaly) write their logs into this shared volume.
chown pynomaly:pynomaly /var/log/pynomaly
# NGINX serves /opt/pynomaly/static/ and must be able to read it under mode 750.
usermod -a -G pynomaly www-data
nginx -t -q
service nginx reload >/dev/null || service nginx start >/dev/null
