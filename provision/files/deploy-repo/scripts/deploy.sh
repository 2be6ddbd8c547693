#!/bin/bash
# /opt/pynomaly/scripts/deploy.sh

set -e

IMAGE_TAG=$1
if [ -z "$IMAGE_TAG" ]; then
    echo "Usage: $0 <image_tag>"
    exit 1
fi

echo "Deploying Pynomaly version $IMAGE_TAG..."

# Pull new image
docker pull pynomaly:$IMAGE_TAG

# Update docker-compose file
sed -i "s/pynomaly:latest/pynomaly:$IMAGE_TAG/g" /opt/pynomaly/docker-compose.prod.yml

# Run database migrations
docker run --rm --network pynomaly_pynomaly-network \
  -e DATABASE_URL=$DATABASE_URL \
  pynomaly:$IMAGE_TAG python -m alembic upgrade head

# Rolling update
docker-compose -f /opt/pynomaly/docker-compose.prod.yml up -d --no-deps pynomaly-app

# Health check
sleep 30
curl -f http://localhost/health || exit 1

echo "Deployment completed successfully!"
