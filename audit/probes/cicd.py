"""CI/CD (guide: CI/CD Pipeline): the GitHub Actions workflow and the deployment script of the
deployment repository the inventory names (`audit_deploy_repo`, a local checkout).

Read-only: the files are parsed; deploy.sh is run once, without an image tag, in a sandbox (empty
environment, a PATH of recording stubs, a scratch directory, 10 s) to see whether it stops with
its usage before doing anything.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audit.facts import probe
from audit.outcomes import CouldNotAudit
from audit.probes.shell import script_commands
from audit.settings import required

WORKFLOW = ".github/workflows/deploy.yml"
DEPLOY_SCRIPT = "scripts/deploy.sh"
STUBS = ("docker", "docker-compose", "sed", "curl", "sleep", "ssh", "scp", "git", "psql", "alembic",
         "python", "python3", "rsync", "kubectl", "systemctl", "service", "aws", "rm", "cp", "mv")


# ---------------------------------------------------------------- parsing (unit-tested)

def triggers(workflow: dict) -> dict:
    """`on:` normalised (PyYAML reads the bare key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on or {}


def steps(job_def: dict) -> list[dict]:
    return [s for s in job_def.get("steps") or [] if isinstance(s, dict)]


def run_lines(job_def: dict) -> list[str]:
    """Every command line of the job's `run:` steps, comments dropped, whitespace normalised."""
    return [line for s in steps(job_def) for line in (" ".join(raw.split()) for raw in str(s.get("run") or "")
                                                       .splitlines()) if line and not line.startswith("#")]


def uses(job_def: dict, action: str) -> list[dict]:
    """Steps that use `action` (owner/name, any version)."""
    return [s for s in steps(job_def) if str(s.get("uses", "")).split("@")[0] == action]


def has_command(lines: list[str], command: str) -> bool:
    """A line runs `command`: its words appear in order at the start of a command (also after
    &&, ||, ; or |)."""
    want = command.split()
    return any(part.split()[:len(want)] == want for line in lines for part in re.split(r"&&|\|\||;|\|", line))


def condition(text: str | None) -> str:
    """An `if:` expression without ${{ }} and with normalised whitespace and quotes."""
    text = str(text or "").strip()
    m = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    return " ".join((m.group(1) if m else text).replace('"', "'").split())


def first_index(lines: list[str], needle: str) -> int | None:
    return next((i for i, line in enumerate(lines) if needle in line), None)


def errexit_before_commands(lines: list[str]) -> bool:
    """`set -e` (or -o errexit, or a shebang's -e) comes before the first real command."""
    for line in lines:
        words = line.split()
        if words[0] != "set":
            return False
        flags = " ".join(words[1:])
        if re.search(r"(^|\s)-[a-zA-Z]*e", flags) or "errexit" in flags:
            return True
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
    return {"rc": proc.returncode, "stdout": proc.stdout[-2000:], "stderr": proc.stderr[-2000:], "called": called}


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class Job:
    """One workflow job, as the checks read it."""

    run: tuple[str, ...] = ()                 # its `run:` command lines
    uses: tuple[dict, ...] = ()               # its `uses:` steps ({uses, with})
    needs: tuple[str, ...] = ()
    condition: str = ""                       # its `if:`, normalised

    def using(self, action: str) -> list[dict]:
        return uses({"steps": list(self.uses)}, action)


def parse_job(job_def: dict) -> Job:
    needs = job_def.get("needs") or []
    return Job(tuple(run_lines(job_def)), tuple(s for s in steps(job_def) if "uses" in s),
               (needs,) if isinstance(needs, str) else tuple(needs), condition(job_def.get("if")))


@dataclass(frozen=True)
class CicdFacts:
    """The deployment repository's workflow and deployment script."""

    repo: str
    workflow_problem: str = ""                # why there is no workflow (missing, not YAML)
    triggers: dict = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    script: str = ""                          # deploy.sh's path
    script_problem: str = ""                  # why there is no script
    script_lines: tuple[str, ...] = ()        # its command lines
    executable: bool = False
    sandbox: dict = field(default_factory=dict)  # the run without an image tag

    def job(self, name: str) -> Job:
        return self.jobs.get(name) or Job()


def read_workflow(path: Path) -> tuple[dict | None, str]:
    if not path.is_file():
        return None, f"{path} does not exist"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return None, f"{path} is not valid YAML: {' '.join(str(exc).split())}"
    return (data, "") if isinstance(data, dict) else (None, f"{path} is not a YAML mapping")


@probe(per_host=False)
def cicd(session) -> CicdFacts:
    """The workflow and deploy.sh of the deployment repository, and deploy.sh run without a tag."""
    root = Path(required(session.inventory.setting("audit_deploy_repo"), "all.vars.audit_deploy_repo"))
    if not root.is_dir():
        raise CouldNotAudit(None, "the deployment repository",
                            f"{root} is not a directory (all.vars.audit_deploy_repo)")
    workflow, problem = read_workflow(root / WORKFLOW)
    script = root / DEPLOY_SCRIPT
    facts = {"workflow_problem": problem, "script": str(script)}
    if workflow is not None:
        facts |= {"triggers": triggers(workflow),
                  "jobs": {str(k): parse_job(v or {}) for k, v in (workflow.get("jobs") or {}).items()}}
    if not script.is_file():
        return CicdFacts(str(root), script_problem=f"{script} does not exist", **facts)
    try:
        sandbox = sandbox_run(script)
    except subprocess.TimeoutExpired:
        sandbox = {"rc": None, "stdout": "", "stderr": "did not stop within 10 s", "called": ["(still running)"]}
    return CicdFacts(str(root), script_lines=tuple(script_commands(script.read_text())),
                     executable=os.access(script, os.X_OK), sandbox=sandbox, **facts)
