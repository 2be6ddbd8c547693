"""Guide: CI/CD Pipeline - the GitHub Actions workflow (parsed YAML) and the deployment script of
the deployment repository that the inventory names (`audit_deploy_repo`, a local checkout).

Read-only: the files are parsed; deploy.sh is run once, without an image tag, in a sandbox
(empty environment, a PATH of recording stubs, a scratch directory, 10 s) to prove that it stops
with its usage before doing anything.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from audit.evidence import attach, compare
from audit.hostparse import script_commands

WORKFLOW = ".github/workflows/deploy.yml"
DEPLOY_SCRIPT = "scripts/deploy.sh"
STUBS = ("docker", "docker-compose", "sed", "curl", "sleep", "ssh", "scp", "git", "psql", "alembic",
         "python", "python3", "rsync", "kubectl", "systemctl", "service", "aws", "rm", "cp", "mv")


@pytest.fixture(scope="module")
def repo(inventory) -> Path:
    path = inventory.setting("audit_deploy_repo")
    if not path:
        pytest.skip("the inventory names no deployment repository (audit_deploy_repo)")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"deployment repository {root} (audit_deploy_repo) is not a directory")
    return root


@pytest.fixture(scope="module")
def workflow(repo) -> dict:
    path = repo / WORKFLOW
    assert path.is_file(), f"{path} does not exist"
    text = path.read_text()
    attach(WORKFLOW, text)
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def deploy_script(repo) -> tuple[Path, str]:
    path = repo / DEPLOY_SCRIPT
    assert path.is_file(), f"{path} does not exist"
    return path, path.read_text()


# ---------------------------------------------------------------- parsing (unit-tested)

def triggers(workflow: dict) -> dict:
    """`on:` normalised (PyYAML reads the bare key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on or {}


def job(workflow: dict, name: str) -> dict:
    return (workflow.get("jobs") or {}).get(name) or {}


def steps(job_def: dict) -> list[dict]:
    return [s for s in job_def.get("steps") or [] if isinstance(s, dict)]


def run_lines(job_def: dict) -> list[str]:
    """Every command line of the job's `run:` steps, comments dropped, whitespace normalised."""
    out = []
    for s in steps(job_def):
        for line in str(s.get("run") or "").splitlines():
            line = " ".join(line.split())
            if line and not line.startswith("#"):
                out.append(line)
    return out


def uses(job_def: dict, action: str) -> list[dict]:
    """Steps that use `action` (owner/name, any version)."""
    return [s for s in steps(job_def) if str(s.get("uses", "")).split("@")[0] == action]


def has_command(lines: list[str], command: str) -> bool:
    """A line runs `command`: its words appear in order at the start of a command (also after
    &&, ||, ; or |)."""
    want = command.split()
    for line in lines:
        for part in re.split(r"&&|\|\||;|\|", line):
            got = part.split()
            if got[:len(want)] == want:
                return True
    return False


def condition(text: str | None) -> str:
    """An `if:` expression without ${{ }} and with normalised whitespace and quotes."""
    text = str(text or "").strip()
    m = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    text = m.group(1) if m else text
    return " ".join(text.replace('"', "'").split())


def first_index(lines: list[str], needle: str) -> int | None:
    for i, line in enumerate(lines):
        if needle in line:
            return i
    return None


def errexit_before_commands(lines: list[str]) -> bool:
    """`set -e` (or -o errexit, or a shebang's -e) comes before the first real command."""
    for line in lines:
        words = line.split()
        if words[0] == "set":
            flags = " ".join(words[1:])
            if re.search(r"(^|\s)-[a-zA-Z]*e", flags) or "errexit" in flags:
                return True
            continue
        return False
    return False


def sandbox_run(script: Path, timeout: int = 10) -> dict:
    """Run `bash script` with no argument, an empty environment and a PATH of stubs that only
    record that they were called; returns rc, output and the stubbed commands it reached."""
    with tempfile.TemporaryDirectory(prefix="deploy-sandbox-") as tmp:
        bindir, log = Path(tmp, "bin"), Path(tmp, "called.log")
        bindir.mkdir()
        for name in STUBS:
            stub = bindir / name
            stub.write_text(f"#!/bin/bash\necho {shlex.quote(name)} \"$@\" >> {shlex.quote(str(log))}\n")
            stub.chmod(0o755)
        proc = subprocess.run(["/bin/bash", str(script)], cwd=tmp, capture_output=True, text=True,
                              timeout=timeout, env={"PATH": str(bindir), "HOME": tmp}, check=False,
                              stdin=subprocess.DEVNULL)
        called = log.read_text().splitlines() if log.exists() else []
    return {"rc": proc.returncode, "stdout": proc.stdout[-2000:], "stderr": proc.stderr[-2000:],
            "called": called}


# ---------------------------------------------------------------- the workflow

@pytest.mark.requirement("CICD-WORKFLOW-TRIGGERS")
def test_workflow_triggers(workflow, expected):
    """"on: push: branches: [main]  workflow_dispatch:"."""
    want = expected("CICD-WORKFLOW-TRIGGERS")
    on = triggers(workflow)
    branches = (on.get("push") or {}).get("branches") if isinstance(on.get("push"), dict) else None
    actual = {"push_branches": branches, "workflow_dispatch": "workflow_dispatch" in on}
    compare("triggers", actual, want)
    assert set(want["push_branches"]) <= set(branches or []), f"{WORKFLOW}: runs on push to {branches}"
    assert actual["workflow_dispatch"] == want["workflow_dispatch"], f"{WORKFLOW}: no workflow_dispatch trigger"


@pytest.mark.requirement("CICD-WORKFLOW-JOBS")
def test_workflow_jobs(workflow, expected):
    """"jobs: test, security-scan, deploy"."""
    jobs = sorted(workflow.get("jobs") or {})
    compare("jobs", jobs, expected("CICD-WORKFLOW-JOBS"))
    missing = [j for j in expected("CICD-WORKFLOW-JOBS") if j not in jobs]
    assert not missing, f"{WORKFLOW}: missing job(s) {missing} (has {jobs})"


@pytest.mark.requirement("CICD-TEST-PYTHON")
def test_test_job_python_version(workflow, expected):
    """"uses: actions/setup-python@v4  with: python-version: '3.11'"."""
    versions = [str((s.get("with") or {}).get("python-version")) for s in uses(job(workflow, "test"),
                                                                               "actions/setup-python")]
    compare("job test: python-version", versions, expected("CICD-TEST-PYTHON"))
    assert expected("CICD-TEST-PYTHON") in versions, f"{WORKFLOW}: job test sets up Python {versions or 'never'}"


@pytest.mark.requirement("CICD-TEST-COVERAGE")
def test_test_job_runs_coverage(workflow, expected):
    """"pytest tests/ -v --cov=src/pynomaly --cov-report=xml" and "uses: codecov/codecov-action@v3"."""
    want = expected("CICD-TEST-COVERAGE")
    test = job(workflow, "test")
    lines = run_lines(test)
    pytest_lines = [line for line in lines if has_command([line], "pytest")]
    upload = [s.get("uses") for s in uses(test, want["upload"].split("@")[0])]
    compare("job test", {"pytest": pytest_lines, "upload": upload}, want)
    wanted_flags = set(want["command"].split()[1:])
    assert any(wanted_flags <= set(line.split()) for line in pytest_lines), (
        f"{WORKFLOW}: job test does not run `{want['command']}` (runs {pytest_lines})")
    assert want["upload"] in upload, f"{WORKFLOW}: job test does not upload coverage with {want['upload']}"


@pytest.mark.requirement("CICD-SECURITY-SCAN")
def test_security_scan_job(workflow, expected):
    """"bandit -r src/" and "safety check" in job security-scan."""
    lines = run_lines(job(workflow, "security-scan"))
    compare("job security-scan", lines, expected("CICD-SECURITY-SCAN"))
    missing = [c for c in expected("CICD-SECURITY-SCAN") if not has_command(lines, c)]
    assert not missing, f"{WORKFLOW}: job security-scan does not run {missing}"


@pytest.mark.requirement("CICD-DEPLOY-GATED")
def test_deploy_job_is_gated(workflow, expected):
    """"deploy: needs: [test, security-scan]  if: github.ref == 'refs/heads/main'"."""
    want = expected("CICD-DEPLOY-GATED")
    deploy = job(workflow, "deploy")
    needs = deploy.get("needs") or []
    needs = [needs] if isinstance(needs, str) else list(needs)
    actual = {"needs": needs, "if": condition(deploy.get("if"))}
    compare("job deploy", actual, want)
    assert set(want["needs"]) <= set(needs), f"{WORKFLOW}: job deploy needs only {needs}"
    assert actual["if"] == condition(want["if"]), f"{WORKFLOW}: job deploy runs if {actual['if'] or 'always'}"


@pytest.mark.requirement("CICD-DEPLOY-IMAGE-BY-SHA")
def test_deploy_job_ships_the_commit_image(workflow, expected):
    """"docker build -t pynomaly:${{ github.sha }} ." ... push to ${{ secrets.DOCKER_REGISTRY }} ...
    ssh ${{ secrets.PROD_SERVER }}"."""
    want = expected("CICD-DEPLOY-IMAGE-BY-SHA")
    lines = run_lines(job(workflow, "deploy"))
    tag = want["tag"]
    registry, server = (f"${{{{ secrets.{s} }}}}" for s in want["secrets"])
    checks = {
        "build": any(has_command([line], "docker build") and f"pynomaly:{tag}" in line for line in lines),
        "push": any(has_command([line], "docker push") and f"{registry}/pynomaly:{tag}" in line for line in lines),
        "deploy": any(has_command([line], "ssh") and server in line for line in lines),
    }
    compare("job deploy", {"run": lines, "found": checks}, {"tag": tag, "secrets": want["secrets"]})
    missing = [k for k, ok in checks.items() if not ok]
    assert not missing, f"{WORKFLOW}: job deploy does not {missing} pynomaly:{tag} via the secrets"


# ---------------------------------------------------------------- the deployment script

@pytest.mark.requirement("CICD-DEPLOY-SCRIPT")
def test_deploy_script_is_executable_with_set_e(deploy_script):
    """"/opt/pynomaly/scripts/deploy.sh ... set -e"."""
    path, text = deploy_script
    attach("deploy.sh", text)
    executable = os.access(path, os.X_OK)
    errexit = errexit_before_commands(script_commands(text))
    compare("deploy.sh", {"executable": executable, "set -e before the first command": errexit}, True)
    assert executable, f"{path} is not executable"
    assert errexit, f"{path} does not stop on the first error (no `set -e` before its commands)"


@pytest.mark.requirement("CICD-DEPLOY-SCRIPT-REQUIRES-TAG")
def test_deploy_script_refuses_to_run_without_a_tag(deploy_script, expected):
    """"if [ -z "$IMAGE_TAG" ]; then echo "Usage: $0 <image_tag>"; exit 1; fi" - run without an
    argument in a sandbox: usage, exit 1, no command reached."""
    path, _ = deploy_script
    result = sandbox_run(path)
    compare("deploy.sh without an argument (sandboxed)", result,
            {"rc": expected("CICD-DEPLOY-SCRIPT-REQUIRES-TAG")["exit_code"], "called": []})
    assert not result["called"], f"{path} without an image tag went on to run {result['called'][:3]}"
    assert result["rc"] == expected("CICD-DEPLOY-SCRIPT-REQUIRES-TAG")["exit_code"], (
        f"{path} without an image tag exited {result['rc']}")
    assert "usage" in (result["stdout"] + result["stderr"]).lower(), f"{path} printed no usage"


@pytest.mark.requirement("CICD-DEPLOY-MIGRATIONS-BEFORE-UPDATE")
def test_deploy_script_migrates_before_the_rolling_update(deploy_script, expected):
    """"docker pull ... sed -i ... docker run ... alembic upgrade head ... docker-compose -f
    /opt/pynomaly/docker-compose.prod.yml up -d --no-deps pynomaly-app", in that order."""
    _, text = deploy_script
    lines = script_commands(text)
    order = {step: first_index(lines, step) for step in expected("CICD-DEPLOY-MIGRATIONS-BEFORE-UPDATE")}
    compare("line of each step", order, "all present, in this order")
    missing = [s for s, i in order.items() if i is None]
    assert not missing, f"deploy.sh does not run {missing}"
    seen = list(order.values())
    assert seen == sorted(seen), f"deploy.sh runs the steps out of order: {order}"


@pytest.mark.requirement("CICD-DEPLOY-HEALTH-CHECK-AFTER")
def test_deploy_script_health_checks_after_the_update(deploy_script, expected):
    """"sleep 30; curl -f http://localhost/health || exit 1" after the rolling update."""
    want = expected("CICD-DEPLOY-HEALTH-CHECK-AFTER")
    lines = script_commands(text := deploy_script[1])
    update = first_index(lines, "up -d --no-deps pynomaly-app")
    after = lines[update + 1:] if update is not None else []
    sleep = next((line for line in after if re.fullmatch(r"sleep \d+", line)), None)
    check = next((line for line in after if want["command"] in line), None)
    fails = bool(check) and bool(re.search(r"\|\|\s*exit\s+[1-9]", check) or errexit_before_commands(
        script_commands(text)) and "||" not in check)
    actual = {"sleep": sleep, "health check": check, "fails the deployment": fails}
    compare("after the rolling update", actual, want)
    assert update is not None, "deploy.sh has no rolling update"
    assert check, f"deploy.sh does not run `{want['command']}` after the rolling update"
    assert fails, f"deploy.sh does not exit non-zero when the health check fails: {check!r}"
    waited = int(sleep.split()[1]) if sleep else 0
    assert waited >= want["wait_seconds"], (
        f"deploy.sh waits {sleep or 'not at all'} before the health check, guide: sleep {want['wait_seconds']}")
