"""CI/CD checks' parsing of the workflow and deploy.sh (the guide's files and drifted copies)."""

from pathlib import Path

import yaml

from checks import test_cicd as c

REPO = Path(__file__).resolve().parents[2] / "provision" / "files" / "deploy-repo"
WORKFLOW_TEXT = (REPO / c.WORKFLOW).read_text()
SCRIPT_TEXT = (REPO / c.DEPLOY_SCRIPT).read_text()


def wf(text=WORKFLOW_TEXT):
    return yaml.safe_load(text)


def test_triggers_read_the_bare_on_key():
    on = c.triggers(wf())
    assert on["push"] == {"branches": ["main"]}
    assert "workflow_dispatch" in on
    assert c.triggers({"on": "push"}) == {"push": None}
    assert c.triggers({"on": ["push", "workflow_dispatch"]}) == {"push": None, "workflow_dispatch": None}


def test_jobs_and_steps():
    w = wf()
    assert sorted(w["jobs"]) == ["deploy", "security-scan", "test"]
    test = c.job(w, "test")
    assert [s["with"]["python-version"] for s in c.uses(test, "actions/setup-python")] == ["3.11"]
    assert [s["uses"] for s in c.uses(test, "codecov/codecov-action")] == ["codecov/codecov-action@v3"]
    assert "pytest tests/ -v --cov=src/pynomaly --cov-report=xml" in c.run_lines(test)


def test_security_scan_commands():
    lines = c.run_lines(c.job(wf(), "security-scan"))
    assert c.has_command(lines, "bandit -r src/")
    assert c.has_command(lines, "safety check")
    assert not c.has_command(["pip install bandit safety"], "safety check")
    assert c.has_command(["pip install x && safety check"], "safety check")


def test_deploy_gate():
    deploy = c.job(wf(), "deploy")
    assert deploy["needs"] == ["test", "security-scan"]
    assert c.condition(deploy["if"]) == c.condition("${{ github.ref == \"refs/heads/main\" }}")
    assert c.condition(None) == ""


def test_script_commands_and_errexit():
    lines = c.script_commands(SCRIPT_TEXT)
    assert lines[0] == "set -e"
    assert c.errexit_before_commands(lines)
    assert c.errexit_before_commands(["set -euo pipefail", "echo"])
    assert c.errexit_before_commands(["set -o errexit", "echo"])
    assert not c.errexit_before_commands(["IMAGE_TAG=$1", "set -e"])
    assert not c.errexit_before_commands([line for line in lines if line != "set -e"])
    joined = c.script_commands("docker run --rm \\\n  -e X=1 \\\n  img cmd\n")
    assert joined == ["docker run --rm -e X=1 img cmd"]


def test_step_order():
    lines = c.script_commands(SCRIPT_TEXT)
    steps = ["docker pull", "sed", "alembic upgrade head", "up -d --no-deps pynomaly-app"]
    order = [c.first_index(lines, s) for s in steps]
    assert order == sorted(order)
    assert None not in order


def test_sandbox_run_of_the_guide_script_stops_before_anything(tmp_path):
    script = tmp_path / "deploy.sh"
    script.write_text(SCRIPT_TEXT)
    result = c.sandbox_run(script)
    assert result["rc"] == 1
    assert result["called"] == []
    assert "Usage" in result["stdout"]


def test_sandbox_run_catches_a_script_without_guard(tmp_path):
    script = tmp_path / "deploy.sh"
    script.write_text(SCRIPT_TEXT.replace('if [ -z "$IMAGE_TAG" ]; then\n    echo "Usage: $0 <image_tag>"\n'
                                          '    exit 1\nfi\n', ""))
    result = c.sandbox_run(script)
    assert result["called"]
    assert result["called"][0].startswith("docker pull")
