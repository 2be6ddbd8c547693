#!/bin/bash
# /opt/pynomaly/scripts/monthly_maintenance.sh
# PostgreSQL runs on db1: VACUUM ANALYZE connects with the app's DATABASE_URL
# (pynomaly_user owns the tables) instead of `sudo -u postgres psql` on this host.
set -a; source /opt/pynomaly/.env.production; set +a

# Database maintenance
psql "$DATABASE_URL" -c "VACUUM ANALYZE;"

# Update dependencies
pip list --outdated

# Security audit
sudo apt install -y unattended-upgrades
sudo unattended-upgrade --dry-run

# Review and rotate API keys
python /opt/pynomaly/scripts/audit_api_keys.py
