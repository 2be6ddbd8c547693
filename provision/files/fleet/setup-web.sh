#!/bin/sh
# web1 (fleet): the static tree NGINX serves, with the guide's permissions (Application
# Security), then an NGINX configuration test and reload. The app itself runs on app1. Idempotent.
set -eu
mkdir -p /opt/pynomaly/static
chown -R pynomaly:pynomaly /opt/pynomaly
chmod -R 750 /opt/pynomaly
# NGINX serves /opt/pynomaly/static/ and must be able to read it under mode 750.
usermod -a -G pynomaly www-data
nginx -t -q
systemctl reload-or-restart nginx
