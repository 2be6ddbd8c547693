#!/bin/bash
# /opt/pynomaly/scripts/backup_app.sh

BACKUP_DIR="/opt/backups/application"
APP_DIR="/opt/pynomaly"
TIMESTAMP=$(date +%Y%m%d_%H%M%S)

# Create backup
tar -czf $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz $APP_DIR

# Upload to S3: only when S3_BUCKET is set (reference deployment: no S3)
if [ -n "${S3_BUCKET:-}" ]; then
    aws s3 cp $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz s3://$S3_BUCKET/
fi

# Clean up old backups
find $BACKUP_DIR -name "*.tar.gz" -mtime +7 -delete
