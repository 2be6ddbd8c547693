"""Pure logic of the app stand-in (provision/app) that the host venv can import."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "provision" / "app"
GUIDE = REPO / "docs" / "guide" / "production-deployment-guide.md"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import provision.app as app_image  # noqa: E402


@pytest.fixture
def app_src(monkeypatch):
    """Import the app's `src.pynomaly` package the way /app does; forget it afterwards."""
    monkeypatch.syspath_prepend(str(APP_DIR))
    yield
    for name in [name for name in sys.modules if name == "src" or name.startswith("src.")]:
        del sys.modules[name]


def _guide_block(marker: str) -> str:
    text = GUIDE.read_text()
    start = text.index(marker)
    return text[start : text.index("```", start)]


def test_production_config_is_the_guides_class_verbatim():
    block = _guide_block("# src/pynomaly/infrastructure/config/production.py")
    source = (APP_DIR / "src/pynomaly/infrastructure/config/production.py").read_text()
    assert source == block


def test_production_config_values(app_src):
    from src.pynomaly.infrastructure.config.production import ProductionConfig as C

    pool = (C.DATABASE_POOL_SIZE, C.DATABASE_MAX_OVERFLOW, C.DATABASE_POOL_TIMEOUT, C.DATABASE_POOL_RECYCLE)
    assert pool == (20, 30, 30, 3600)
    assert (C.REDIS_MAX_CONNECTIONS, C.REDIS_SOCKET_KEEPALIVE) == (50, True)
    assert C.REDIS_SOCKET_KEEPALIVE_OPTIONS == {"TCP_KEEPINTVL": 1, "TCP_KEEPCNT": 3, "TCP_KEEPIDLE": 1}
    assert (C.CACHE_DEFAULT_TIMEOUT, C.CACHE_REDIS_DB) == (300, 1)
    assert (C.JWT_ALGORITHM, C.JWT_ACCESS_TOKEN_EXPIRE_MINUTES) == ("HS256", 30)
    assert C.LOG_LEVEL == "INFO"


def test_indexes_are_the_guides_statements():
    block = _guide_block("-- Performance indexes")
    guide = [line.rstrip(";") for line in block.splitlines() if line.startswith("CREATE INDEX")]
    ns: dict = {}
    exec((APP_DIR / "src/pynomaly/infrastructure/database/indexes.py").read_text(), ns)
    ours = [sql.replace(" IF NOT EXISTS", "") for sql in ns["PERFORMANCE_INDEXES"]]
    assert ours == guide
    assert len(ns["index_names"]()) == 10


def test_redact_url_hides_passwords(app_src):
    from src.pynomaly.infrastructure.config.settings import redact_url

    assert redact_url("redis://:s3cret@cache1:6379/0") == "redis://:***@cache1:6379/0"
    assert redact_url("postgresql://u:p%40ss@db1:5432/x") == "postgresql://u:***@db1:5432/x"
    assert redact_url("redis://localhost:6379/2") == "redis://localhost:6379/2"


def test_jwt_secret_prefers_jwt_secret(app_src, monkeypatch):
    from src.pynomaly.infrastructure.config import settings

    monkeypatch.setenv("JWT_SECRET", "from-env")
    assert settings.jwt_secret() == "from-env"
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.setattr(settings.config, "SECRET_KEY", None)
    with pytest.raises(RuntimeError):
        settings.jwt_secret()


def test_password_hashing(app_src):
    from src.pynomaly.infrastructure.security.passwords import hash_password, verify_password

    hashed = hash_password("correct horse")
    assert hashed.startswith("pbkdf2_sha256$310000$")
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong", hashed)
    assert not verify_password("correct horse", "garbage")
    assert hash_password("correct horse") != hashed  # salted


def test_token_lifetime(app_src, monkeypatch):
    jwt = pytest.importorskip("jwt", reason="PyJWT is not in this venv; the integration test covers tokens")
    from src.pynomaly.infrastructure.security import tokens

    monkeypatch.setenv("JWT_SECRET", "k")
    claims = jwt.decode(tokens.create_access_token("u", now=1_000), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == tokens.token_lifetime_seconds() == 1800


def test_start_script_has_the_guides_gunicorn_flags():
    script = (APP_DIR / "scripts/start_production.sh").read_text()
    flags = re.findall(r"^\s+(--[\w-]+(?: [^\s\\]\S*)?)(?: \\)?$", script, re.M)
    assert flags == [
        "--bind 0.0.0.0:${PORT:-8000}",
        "--workers 4",
        "--worker-class uvicorn.workers.UvicornWorker",
        "--worker-connections 1000",
        "--max-requests 1000",
        "--max-requests-jitter 50",
        "--preload",
        "--timeout 30",
        "--keep-alive 2",
        "--access-logfile /var/log/pynomaly/access.log",
        "--error-logfile /var/log/pynomaly/error.log",
        "--log-level info",
    ]


def test_dockerfile_healthcheck():
    dockerfile = (APP_DIR / "Dockerfile").read_text()
    assert "HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 \\\n" in dockerfile
    assert "CMD curl -f http://localhost:${PORT:-8000}/health || exit 1" in dockerfile
    assert "useradd -m -u 1000 pynomaly" in dockerfile
    assert "USER pynomaly" in dockerfile


def test_content_hash_covers_image_files_only(tmp_path, monkeypatch):
    names = {str(path.relative_to(APP_DIR)) for path in app_image._image_files()}
    assert {"Dockerfile", "scripts/start_production.sh", "src/pynomaly/presentation/api/app.py"} <= names
    assert "README.md" not in names
    assert "__init__.py" not in names
    assert app_image.content_hash("sha256:a") == app_image.content_hash("sha256:a")
    assert app_image.content_hash("sha256:a") != app_image.content_hash("sha256:b")


class _Image:
    def __init__(self, image_id):
        self.id, self.tags = image_id, []

    def tag(self, repo, tag):
        self.tags.append(f"{repo}:{tag}")


class _Images:
    def __init__(self, existing):
        self.existing, self.builds = existing, []

    def get(self, name):
        import docker.errors

        if name not in self.existing:
            raise docker.errors.ImageNotFound(name)
        return self.existing[name]

    def build(self, **kwargs):
        self.builds.append(kwargs)
        image = self.existing[kwargs["tag"]] = _Image("sha256:built")
        return image, []


class _Client:
    def __init__(self, existing):
        self.images = _Images(existing)


def test_build_image_builds_once_and_tags_latest():
    pytest.importorskip("docker")
    client = _Client({"base:1": _Image("sha256:base")})
    tag = app_image.build_image(client, "base:1")
    assert re.fullmatch(r"pynomaly:[0-9a-f]{12}", tag)
    assert client.images.builds[0]["buildargs"] == {"BASE_IMAGE": "base:1"}
    assert client.images.builds[0]["path"] == str(APP_DIR)
    assert app_image.build_image(client, "base:1") == tag
    assert len(client.images.builds) == 1  # reused
    assert client.images.existing[tag].tags == ["pynomaly:latest", "pynomaly:latest"]
    assert app_image.build_image(client, "base:1", latest=False) == tag
    assert len(client.images.existing[tag].tags) == 2


def test_environment_description_names_what_the_app_reads():
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "ENVIRONMENT", "PORT", "APP_USERNAME",
                 "APP_PASSWORD", "PROMETHEUS_MULTIPROC_DIR"):  # fmt: skip
        assert name in app_image.ENVIRONMENT
    assert set(app_image.REQUIRED_ENVIRONMENT) <= set(app_image.ENVIRONMENT)
