#!/bin/bash
# /opt/pynomaly/scripts/backup_db.sh

BACKUP_DIR="/opt/backups/postgres"
DB_NAME="pynomaly_prod"
DB_USER="pynomaly_user"
TIMESTAMP=$(date +%Y%m%d_%H%M%S)

# Create backup directory
mkdir -p $BACKUP_DIR

# Perform backup (pg_dump reads the password from root's ~/.pgpass)
pg_dump -h localhost -U $DB_USER -d $DB_NAME | gzip > $BACKUP_DIR/pynomaly_backup_$TIMESTAMP.sql.gz

# Upload to S3 (optional): only when S3_BUCKET is set (reference deployment: no S3)
if [ -n "${S3_BUCKET:-}" ]; then
    aws s3 cp $BACKUP_DIR/pynomaly_backup_$TIMESTAMP.sql.gz s3://$S3_BUCKET/
fi

# Clean up old backups (keep last 30 days)
find $BACKUP_DIR -name "*.sql.gz" -mtime +30 -delete
