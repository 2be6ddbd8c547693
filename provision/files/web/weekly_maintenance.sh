#!/bin/bash
# /opt/pynomaly/scripts/weekly_maintenance.sh
# PostgreSQL runs on db1: the database step connects with the app's DATABASE_URL
# instead of `sudo -u postgres psql` on this host (see provision/DEVIATIONS.md).
set -a; source /opt/pynomaly/.env.production; set +a

# Update system packages
sudo apt update && sudo apt list --upgradable

# Analyze database performance
psql "$DATABASE_URL" -c "SELECT schemaname, relname AS tablename, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables;"

# Check SSL certificate expiry
openssl x509 -in /etc/letsencrypt/live/pynomaly.test/cert.pem -text -noout | grep "Not After"

# Clean old log files
find /var/log/pynomaly -name "*.log.*" -mtime +30 -delete
