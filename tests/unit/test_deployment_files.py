"""audit/probes/deployment_files.py on captured files: the guide's Compose file and workflow
(compliant) against the reference deployment's (the services run on their own hosts)."""

from __future__ import annotations

import re
from pathlib import Path

from audit.probes.cicd import has_command, parse_job
from audit.probes.deployment_files import image_facts, parse_services, remote_commands

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs/guide/production-deployment-guide.md").read_text()


def _block(lang: str, marker: str) -> str:
    return next(b for b in re.findall(rf"```{lang}\n(.*?)```", GUIDE, re.S) if marker in b)


def test_the_guides_compose_file_has_its_services_volumes_and_depends_on():
    found = parse_services(_block("yaml", "pynomaly-app:"))
    assert found.problem is None
    assert found.services["postgres"]["image"] == "postgres:14"
    assert found.services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "${DB_PASSWORD}"
    assert "./scripts/init_db.sql:/docker-entrypoint-initdb.d/init.sql" in found.services["postgres"]["volumes"]
    assert found.services["redis"]["command"] == "redis-server --requirepass ${REDIS_PASSWORD}"
    assert found.services["nginx"]["ports"] == ["80:80", "443:443"]
    assert found.services["nginx"]["depends_on"] == ["pynomaly-app"]
    assert found.services["pynomaly-app"]["depends_on"] == ["postgres", "redis"]
    assert found.volumes == ("postgres_data", "redis_data")


def test_the_reference_compose_file_has_only_the_app():
    found = parse_services((ROOT / "provision/files/web/docker-compose.prod.yml").read_text())
    assert set(found.services) == {"pynomaly-app"}
    assert found.services["pynomaly-app"]["depends_on"] == []
    assert found.volumes == ("pynomaly-logs",)
    assert parse_services(None).problem == "missing"
    assert "not valid YAML" in parse_services("a: [").problem


def test_compose_secrets_are_never_kept():
    found = parse_services("services:\n  postgres:\n    environment:\n      - POSTGRES_PASSWORD=hunter2\n"
                           "  redis:\n    command: redis-server --requirepass hunter2\n")
    assert found.services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "<literal>"
    assert found.services["redis"]["command"] == "redis-server --requirepass <literal>"
    assert "hunter2" not in repr(found)


def test_image_facts_of_the_official_python_image_and_of_the_reference_image():
    official = image_facts({"Env": ["PATH=/usr/local/bin", "PYTHON_VERSION=3.11.9", "GPG_KEY=x"], "WorkingDir": "/app",
                            "Cmd": ["python", "-m", "uvicorn", "src.pynomaly.presentation.api.app:app", "--host",
                                    "0.0.0.0", "--port", "8000"], "Entrypoint": None})
    assert official["python_version"] == "3.11.9"
    assert official["cmd"][2] == "uvicorn"
    assert official["entrypoint"] == []
    reference = image_facts({"Env": ["PROMETHEUS_MULTIPROC_DIR=/tmp/m"], "WorkingDir": "/app",
                             "Cmd": ["/app/scripts/start_production.sh"], "Entrypoint": []})
    assert reference["python_version"] is None
    assert reference["cmd"] == ["/app/scripts/start_production.sh"]


def test_the_deploy_jobs_remote_pull_then_compose_up():
    import yaml

    doc = yaml.safe_load(_block("yaml", "name: Deploy to Production"))
    lines = parse_job(doc["jobs"]["deploy"]).run
    remote = remote_commands(lines, "${{ secrets.PROD_SERVER }}")
    assert has_command(remote[:1], "docker pull")
    assert has_command(remote[1:], "docker-compose -f /opt/pynomaly/docker-compose.prod.yml up -d")
    assert all(doc["jobs"][j]["runs-on"] == "ubuntu-latest" for j in doc["jobs"])
    assert all(doc["jobs"][j]["steps"][0]["uses"] == "actions/checkout@v3" for j in doc["jobs"])
    assert remote_commands(["ssh other 'docker pull x'"], "${{ secrets.PROD_SERVER }}") == []
