"""Guide: CI/CD Pipeline - the GitHub Actions workflow and the deployment script of the deployment
repository that the inventory names (`audit_deploy_repo`). What is read, and how:
audit/probes/cicd.py (the files parsed, deploy.sh run once without a tag in a sandbox).
"""

from __future__ import annotations

import re

import pytest

from audit.probes.cicd import WORKFLOW, condition, errexit_before_commands, first_index, has_command


def _workflow(judge, cicd) -> None:
    if cicd.workflow_problem:
        judge.fail(cicd.workflow_problem)


def _script(judge, cicd) -> list[str]:
    if cicd.script_problem:
        judge.fail(cicd.script_problem)
    return list(cicd.script_lines)


# ---------------------------------------------------------------- the workflow

@pytest.mark.requirement("CICD-WORKFLOW-TRIGGERS")
def check_workflow_triggers(judge, cicd):
    """"on: push: branches: [main]  workflow_dispatch:"."""
    _workflow(judge, cicd)
    want, push = judge.expected, cicd.triggers.get("push")
    found = {"push_branches": push.get("branches") if isinstance(push, dict) else None,
             "workflow_dispatch": "workflow_dispatch" in cicd.triggers}
    judge.that(set(want["push_branches"]) <= set(found["push_branches"] or [])
               and found["workflow_dispatch"] == want["workflow_dispatch"], what="triggers", found=found,
               where=WORKFLOW)


@pytest.mark.requirement("CICD-WORKFLOW-JOBS")
def check_workflow_jobs(judge, cicd):
    """"jobs: test, security-scan, deploy"."""
    _workflow(judge, cicd)
    judge.that(set(judge.expected) <= set(cicd.jobs), what="jobs", found=sorted(cicd.jobs), where=WORKFLOW)


@pytest.mark.requirement("CICD-TEST-PYTHON")
def check_test_job_python_version(judge, cicd):
    """"uses: actions/setup-python@v4  with: python-version: '3.11'"."""
    _workflow(judge, cicd)
    setups = cicd.job("test").using("actions/setup-python")
    versions = [str((s.get("with") or {}).get("python-version")) for s in setups]
    judge.that(judge.expected in versions, what="job test: python-version", found=versions, where=WORKFLOW)


@pytest.mark.requirement("CICD-TEST-COVERAGE")
def check_test_job_runs_coverage(judge, cicd):
    """"pytest tests/ -v --cov=src/pynomaly --cov-report=xml" and "uses: codecov/codecov-action@v3"."""
    _workflow(judge, cicd)
    want, test = judge.expected, cicd.job("test")
    found = {"pytest": [line for line in test.run if has_command([line], "pytest")],
             "upload": [s.get("uses") for s in test.using(want["upload"].split("@")[0])]}
    flags = set(want["command"].split()[1:])
    judge.that(any(flags <= set(line.split()) for line in found["pytest"]) and want["upload"] in found["upload"],
               what="job test", found=found, where=WORKFLOW)


@pytest.mark.requirement("CICD-SECURITY-SCAN")
def check_security_scan_job(judge, cicd):
    """"bandit -r src/" and "safety check" in job security-scan."""
    _workflow(judge, cicd)
    lines = list(cicd.job("security-scan").run)
    judge.that(all(has_command(lines, c) for c in judge.expected), what="job security-scan runs", found=lines,
               where=WORKFLOW)


@pytest.mark.requirement("CICD-DEPLOY-GATED")
def check_deploy_job_is_gated(judge, cicd):
    """"deploy: needs: [test, security-scan]  if: github.ref == 'refs/heads/main'"."""
    _workflow(judge, cicd)
    want, deploy = judge.expected, cicd.job("deploy")
    judge.that(set(want["needs"]) <= set(deploy.needs) and deploy.condition == condition(want["if"]),
               what="job deploy", found={"needs": list(deploy.needs), "if": deploy.condition or "always"},
               where=WORKFLOW)


@pytest.mark.requirement("CICD-DEPLOY-IMAGE-BY-SHA")
def check_deploy_job_ships_the_commit_image(judge, cicd):
    """"docker build -t pynomaly:${{ github.sha }} ." ... push to ${{ secrets.DOCKER_REGISTRY }} ...
    ssh ${{ secrets.PROD_SERVER }}"."""
    _workflow(judge, cicd)
    want, lines = judge.expected, cicd.job("deploy").run
    registry, server = (f"${{{{ secrets.{s} }}}}" for s in want["secrets"])
    steps = {"build": any(has_command([line], "docker build") and f"pynomaly:{want['tag']}" in line for line in lines),
             "push": any(has_command([line], "docker push") and f"{registry}/pynomaly:{want['tag']}" in line
                         for line in lines),
             "deploy": any(has_command([line], "ssh") and server in line for line in lines)}
    judge.that(all(steps.values()), what="job deploy builds, pushes and deploys the commit's image",
               found={"run": list(lines), "found": steps}, where=WORKFLOW)


# ---------------------------------------------------------------- the deployment script

@pytest.mark.requirement("CICD-DEPLOY-SCRIPT")
def check_deploy_script_is_executable_with_set_e(judge, cicd):
    """"/opt/pynomaly/scripts/deploy.sh ... set -e"."""
    lines = _script(judge, cicd)
    judge.equal({"executable": cicd.executable, "set -e before the first command": errexit_before_commands(lines)},
                what=cicd.script, expected={"executable": True, "set -e before the first command": True})


@pytest.mark.requirement("CICD-DEPLOY-SCRIPT-REQUIRES-TAG")
def check_deploy_script_refuses_to_run_without_a_tag(judge, cicd):
    """"if [ -z "$IMAGE_TAG" ]; then echo "Usage: $0 <image_tag>"; exit 1; fi" - run without an
    argument in a sandbox: usage, exit 1, no command reached."""
    _script(judge, cicd)
    run = cicd.sandbox
    judge.that(not run["called"] and run["rc"] == judge.expected["exit_code"]
               and "usage" in (run["stdout"] + run["stderr"]).lower(), what=f"{cicd.script} without an image tag",
               found=run, expected={"rc": judge.expected["exit_code"], "called": [], "prints": "usage"})


@pytest.mark.requirement("CICD-DEPLOY-MIGRATIONS-BEFORE-UPDATE")
def check_deploy_script_migrates_before_the_rolling_update(judge, cicd):
    """"docker pull ... sed -i ... docker run ... alembic upgrade head ... docker-compose -f
    /opt/pynomaly/docker-compose.prod.yml up -d --no-deps pynomaly-app", in that order."""
    lines = _script(judge, cicd)
    order = {step: first_index(lines, step) for step in judge.expected}
    seen = list(order.values())
    judge.that(None not in seen and seen == sorted(seen), what="line of each step", found=order,
               expected="all present, in the guide's order", where=cicd.script)


@pytest.mark.requirement("CICD-DEPLOY-HEALTH-CHECK-AFTER")
def check_deploy_script_health_checks_after_the_update(judge, cicd):
    """"sleep 30; curl -f http://localhost/health || exit 1" after the rolling update."""
    want, lines = judge.expected, _script(judge, cicd)
    update = first_index(lines, "up -d --no-deps pynomaly-app")
    after = lines[update + 1:] if update is not None else []
    sleep = next((line for line in after if re.fullmatch(r"sleep \d+", line)), None)
    check = next((line for line in after if want["command"] in line), None)
    fails = bool(check) and bool(re.search(r"\|\|\s*exit\s+[1-9]", check)
                                 or errexit_before_commands(lines) and "||" not in check)
    found = {"rolling update": update is not None, "sleep": sleep, "health check": check, "fails the deployment": fails}
    judge.that(fails and int(sleep.split()[1] if sleep else 0) >= want["wait_seconds"],
               what="after the rolling update", found=found, where=cicd.script)
