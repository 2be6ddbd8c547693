"""The CI examples parse, run the README's commands, and those commands exist in the repo."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github" / "workflows" / "nightly-audit.yml"
GITLAB = ROOT / ".gitlab-ci.yml"
README = (ROOT / "README.md").read_text()
# The CI block of the README ("Nightly in CI"): each example runs these lines as they are.
CI_COMMANDS = [
    "bash scripts/bootstrap.sh --no-browser",
    'code=0; .venv/bin/pytest --hosts="$INVENTORY" -n auto --gate="$GATE" || code=$?',
    ".venv/bin/python -m reports --single-file",
]


def github() -> dict:
    data = yaml.safe_load(GITHUB.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def gitlab() -> dict:
    return yaml.safe_load(GITLAB.read_text())


def github_lines() -> list[str]:
    steps = github()["jobs"]["audit"]["steps"]
    return [line.strip() for step in steps for line in step.get("run", "").splitlines() if line.strip()]


def gitlab_lines() -> list[str]:
    job = gitlab()["nightly-audit"]
    return [line.strip() for line in job["before_script"] + job["script"]]


def test_readme_shows_the_ci_commands():
    block = README[README.index("### Nightly in CI"):]
    for command in CI_COMMANDS:
        assert command in block


@pytest.mark.parametrize("lines", [github_lines, gitlab_lines], ids=["github", "gitlab"])
def test_examples_run_the_readme_commands_and_they_exist(lines):
    run = lines()
    for command in CI_COMMANDS:
        assert command in run, command
    for line in run:
        for word in shlex.split(line.replace(";", " ; ").replace("||", " || "), posix=True):
            if re.match(r"^(scripts|\.venv/bin|tools)/", word):
                assert word.startswith(".venv/bin/") or (ROOT / word).exists(), word
        for module in re.findall(r"python -m (\w+)", line):
            assert (ROOT / module / "__main__.py").exists(), module
    assert (ROOT / "reports" / "__main__.py").exists()
    assert "--no-browser" in (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r"--gate=\"\$GATE\"", " ".join(run))


def test_github_workflow():
    data = github()
    assert data["on"]["schedule"][0]["cron"]
    assert "workflow_dispatch" in data["on"]
    assert data["on"]["workflow_dispatch"]["inputs"]["gate"]["options"] == ["nightly", "pre-release"]
    steps = data["jobs"]["audit"]["steps"]
    uses = {s.get("uses", "").split("@")[0]: s for s in steps}
    assert uses["actions/cache/restore"]["with"]["path"] == "reports/history"
    assert uses["actions/cache/save"]["with"]["path"] == "reports/history"
    assert uses["actions/cache/save"]["if"] == "always()"
    upload = uses["actions/upload-artifact"]
    assert upload["if"] == "always()"
    for path in ("reports/html/", "reports/junit.xml", "reports/requirements.md", "reports/requirements.html"):
        assert path in upload["with"]["path"]
    assert uses["mikepenz/action-junit-report"]["with"]["report_paths"] == "reports/junit.xml"
    by_name = {s.get("name"): s for s in steps}
    assert by_name["HTML report"]["if"] == "always()"  # the report also when the audit failed
    gate = by_name["Gate"]
    assert gate is steps[-1]
    assert "steps.audit.outputs.code" in gate["env"]["CODE"]
    assert 'echo "code=$code" >> "$GITHUB_OUTPUT"' in by_name["Audit"]["run"]


def test_gitlab_pipeline():
    data = gitlab()
    job = data["nightly-audit"]
    rules = data[job["extends"]]["rules"]
    assert any('$CI_PIPELINE_SOURCE == "schedule"' in r["if"] for r in rules)
    assert job["cache"]["paths"] == ["reports/history/"]
    assert job["cache"]["when"] == "always"
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "reports/junit.xml"
    assert "reports/html/" in job["artifacts"]["paths"]
    assert job["script"][-1] == "exit $code"
    pages = data["pages"]
    assert "when" not in pages  # GitLab refuses `when` beside `rules`: it is in each rule
    assert all(r["when"] == "always" for r in pages["rules"])
    assert pages["artifacts"]["paths"] == ["public"]
