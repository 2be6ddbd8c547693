"""The Pynomaly stand-in app image: its build, and the environment it needs.

The image runs the guide's start_production.sh: `alembic upgrade head` (safe when
several instances start together), then gunicorn on 0.0.0.0:$PORT. See README.md.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
IMAGE_REPO = "pynomaly"

# Files of this folder that do not go into the image (also in .dockerignore).
_NOT_IN_IMAGE = {"README.md", "__init__.py"}

ENVIRONMENT: dict[str, str] = {
    "DATABASE_URL": "required: postgresql://pynomaly_user:PASSWORD@HOST:5432/pynomaly_prod",
    "REDIS_URL": "required: redis://:PASSWORD@HOST:6379/0 (the cache uses db 1 on the same server)",
    "JWT_SECRET": "required: HS256 signing key for access tokens (the app refuses to start without it)",
    "ENVIRONMENT": "production (shown by the config dump)",
    "PORT": "listen port, default 8000; the three instances use 8000, 8001, 8002",
    "APP_USERNAME": "login name that `python3 -m src.pynomaly.seed` creates or updates",
    "APP_PASSWORD": "its password (seed only)",
    "LOG_LEVEL": "optional, default INFO (ProductionConfig.LOG_LEVEL)",
    "PROMETHEUS_MULTIPROC_DIR": "optional, default /tmp/pynomaly-metrics; emptied at start",
}
REQUIRED_ENVIRONMENT = ("DATABASE_URL", "REDIS_URL", "JWT_SECRET")

MIGRATE_COMMAND = ["python3", "-m", "alembic", "upgrade", "head"]
SEED_COMMAND = ["python3", "-m", "src.pynomaly.seed"]
CONFIG_DUMP_COMMAND = ["python3", "-m", "src.pynomaly.infrastructure.config.dump"]

log = logging.getLogger(__name__)


def _image_files() -> list[Path]:
    """The build context's files that reach the image, sorted."""
    files = []
    for path in sorted(APP_DIR.rglob("*")):
        rel = path.relative_to(APP_DIR)
        if path.is_dir() or "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        if len(rel.parts) == 1 and rel.name in _NOT_IN_IMAGE:
            continue
        files.append(path)
    return files


def content_hash(base_image_id: str) -> str:
    """12 hex digits over the base image id and the files that go into the image."""
    digest = hashlib.sha256(base_image_id.encode())
    for path in _image_files():
        digest.update(str(path.relative_to(APP_DIR)).encode() + b"\0")
        digest.update(b"x" if path.stat().st_mode & 0o111 else b"-")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build_image(docker_client, base_image_tag: str, *, latest: bool = True) -> str:
    """Build (or reuse) `pynomaly:<content-hash>`, tag it `pynomaly:latest`, return the first tag.

    Tests pass latest=False so that they never move the deployment's `latest`.
    """
    import docker.errors

    base = docker_client.images.get(base_image_tag)
    tag = f"{IMAGE_REPO}:{content_hash(base.id)}"
    try:
        image = docker_client.images.get(tag)
        log.info("app image %s exists; not rebuilding", tag)
    except docker.errors.ImageNotFound:
        log.info("building app image %s on %s", tag, base_image_tag)
        try:
            image, _ = docker_client.images.build(
                path=str(APP_DIR),
                tag=tag,
                buildargs={"BASE_IMAGE": base_image_tag},
                labels={"org.pynomaly.base-image": base_image_tag},
                rm=True,
                forcerm=True,
                timeout=1800,
            )
        except docker.errors.BuildError as exc:
            tail = "".join(str(line.get("stream") or line.get("error") or "") for line in exc.build_log)[-3000:]
            raise RuntimeError(f"building {tag} failed: {exc.msg}\n{tail}") from exc
    if latest:
        image.tag(IMAGE_REPO, "latest")
    return tag
