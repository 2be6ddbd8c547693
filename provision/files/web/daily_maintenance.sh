#!/bin/bash
# /opt/pynomaly/scripts/daily_maintenance.sh

# Check disk space
df -h | grep -E "9[0-9]%" && echo "ALERT: Disk space critical"

# Check logs for errors
grep -i error /var/log/pynomaly/error.log | tail -10

# Backup verification
test -f /opt/backups/postgres/pynomaly_backup_$(date +%Y%m%d)*.sql.gz || echo "ALERT: No backup found for today"

# Health check
curl -f http://localhost/health || echo "ALERT: Health check failed"
