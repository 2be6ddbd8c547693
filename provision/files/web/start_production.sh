#!/bin/bash
# /opt/pynomaly/start_production.sh

set -e

# Load environment variables
source /opt/pynomaly/.env.production

# Run database migrations
python -m alembic upgrade head

# Start application with Gunicorn
exec gunicorn src.pynomaly.presentation.api.app:app \
  --bind 0.0.0.0:8000 \
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
