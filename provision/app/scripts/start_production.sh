#!/bin/bash
# /opt/pynomaly/start_production.sh (the guide's "Application Startup Script")

set -e

# Load environment variables (when the file exists; the container may get them from --env-file)
if [ -f /opt/pynomaly/.env.production ]; then
  set -a
  source /opt/pynomaly/.env.production
  set +a
fi

# Prometheus multiprocess mode: one directory per instance, emptied at start
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/pynomaly-metrics}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db

# Run database migrations
python3 -m alembic upgrade head

# Start application with Gunicorn
exec gunicorn src.pynomaly.presentation.api.app:app \
  --bind 0.0.0.0:${PORT:-8000} \
  --workers 4 \
  --worker-class uvicorn.workers.UvicornWorker \
  --worker-connections 1000 \
  --max-requests 1000 \
  --max-requests-jitter 50 \
  --preload \
  --timeout 30 \
  --keep-alive 2 \
  --access-logfile /var/log/pynomaly/access.log \
  --error-logfile /var/log/pynomaly/error.log \
  --log-level info
