"""CI/CD parsing (audit/probes/cicd.py) of the workflow and deploy.sh: the guide's files and
drifted copies, and the probe on a repository with files missing."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from audit.outcomes import CouldNotAudit
from audit.probes import cicd as c
from audit.probes.shell import script_commands

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
    test = w["jobs"]["test"]
    assert [s["with"]["python-version"] for s in c.uses(test, "actions/setup-python")] == ["3.11"]
    assert [s["uses"] for s in c.uses(test, "codecov/codecov-action")] == ["codecov/codecov-action@v3"]
    assert "pytest tests/ -v --cov=src/pynomaly --cov-report=xml" in c.run_lines(test)


def test_security_scan_commands():
    lines = c.run_lines(wf()["jobs"]["security-scan"])
    assert c.has_command(lines, "bandit -r src/")
    assert c.has_command(lines, "safety check")
    assert not c.has_command(["pip install bandit safety"], "safety check")
    assert c.has_command(["pip install x && safety check"], "safety check")


def test_deploy_gate():
    deploy = wf()["jobs"]["deploy"]
    assert deploy["needs"] == ["test", "security-scan"]
    assert c.condition(deploy["if"]) == c.condition("${{ github.ref == \"refs/heads/main\" }}")
    assert c.condition(None) == ""


def test_script_commands_and_errexit():
    lines = script_commands(SCRIPT_TEXT)
    assert lines[0] == "set -e"
    assert c.errexit_before_commands(lines)
    assert c.errexit_before_commands(["set -euo pipefail", "echo"])
    assert c.errexit_before_commands(["set -o errexit", "echo"])
    assert not c.errexit_before_commands(["IMAGE_TAG=$1", "set -e"])
    assert not c.errexit_before_commands([line for line in lines if line != "set -e"])
    joined = script_commands("docker run --rm \\\n  -e X=1 \\\n  img cmd\n")
    assert joined == ["docker run --rm -e X=1 img cmd"]


def test_step_order():
    lines = script_commands(SCRIPT_TEXT)
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


def session(repo):
    return SimpleNamespace(inventory=SimpleNamespace(setting=lambda key: repo if key == "audit_deploy_repo" else None))


def test_probe_reads_the_guide_repository():
    facts = c.cicd(session(str(REPO)))
    assert facts.workflow_problem == ""
    assert facts.job("deploy").needs == ("test", "security-scan")
    assert facts.job("deploy").condition == c.condition("github.ref == 'refs/heads/main'")
    assert [s["with"]["python-version"] for s in facts.job("test").using("actions/setup-python")] == ["3.11"]
    assert facts.triggers["push"] == {"branches": ["main"]}
    assert facts.script_lines[0] == "set -e"
    assert facts.sandbox["rc"] == 1
    assert facts.sandbox["called"] == []


def test_missing_setting_or_folder_is_could_not_audit(tmp_path):
    with pytest.raises(CouldNotAudit, match=r"all\.vars\.audit_deploy_repo"):
        c.cicd(session(None))
    with pytest.raises(CouldNotAudit, match="is not a directory"):
        c.cicd(session(str(tmp_path / "nowhere")))


def test_missing_or_broken_files_are_findings_with_nothing_read(tmp_path):
    """An empty repository: no workflow, no script; every check has nothing to pass on."""
    facts = c.cicd(session(str(tmp_path)))
    assert facts.workflow_problem.endswith("deploy.yml does not exist")
    assert facts.script_problem.endswith("deploy.sh does not exist")
    assert facts.jobs == {}
    assert facts.job("test").run == ()
    assert facts.job("deploy").needs == ()
    assert facts.script_lines == ()
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / c.WORKFLOW).write_text("on: [push\n")
    assert "is not valid YAML" in c.cicd(session(str(tmp_path))).workflow_problem
    (tmp_path / c.WORKFLOW).write_text("- just a list\n")
    assert "is not a YAML mapping" in c.cicd(session(str(tmp_path))).workflow_problem
    assert not c.has_command([], "safety check")
    assert c.first_index([], "docker pull") is None
    assert not c.errexit_before_commands([])
