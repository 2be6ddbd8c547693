"""Run the audit the way a user does (a pytest subprocess) and read its outcomes.

`run_audit()` returns the per-check outcomes that the plugin writes to outcomes.json, so that
integration tests can assert which requirements turned red, on which hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from audit.inventory import absolutise_paths

ROOT = Path(__file__).resolve().parents[2]
LOCAL_INVENTORY = ROOT / "inventories" / "local.yml"


@dataclass
class AuditRun:
    exit_code: int
    stdout: str
    stderr: str
    tests: dict[str, dict]
    reports: Path

    def outcomes_of(self, req_id: str) -> dict[str, str]:
        """nodeid -> outcome for every check that verifies `req_id`."""
        return {n: t["outcome"] for n, t in self.tests.items() if req_id in t["requirements"].split(",")}

    def by_outcome(self, outcome: str) -> dict[str, dict]:
        return {n: t for n, t in self.tests.items() if t["outcome"] == outcome}

    def red_requirements(self) -> set[str]:
        """Requirements with at least one failed or errored check."""
        return {r for t in self.tests.values() if t["outcome"] in ("failed", "error")
                for r in t["requirements"].split(",") if r}

    def explain(self) -> str:
        bad = {n: t for n, t in self.tests.items() if t["outcome"] in ("failed", "error")}
        return f"exit {self.exit_code}; not green: {json.dumps(bad, indent=1)}\n{self.stdout[-4000:]}"


def inventory_variant(tmp_path: Path, base: Path = LOCAL_INVENTORY, **global_vars: Any) -> Path:
    """A copy of an inventory with absolute paths and some global vars changed; returns its path.

    `hosts={"group": {"host": {...}}}` adds hosts to groups.
    """
    data = yaml.safe_load(base.read_text())
    extra_hosts = global_vars.pop("hosts", {})
    absolutise_paths(data, base.parent)
    data["all"].setdefault("vars", {}).update(global_vars)
    for group, hosts in extra_hosts.items():
        children = data["all"].setdefault("children", {})
        target = _find_group(children, group)
        if target is None:
            target = children.setdefault(group, {})
        if target.get("hosts") is None:
            target["hosts"] = {}
        target["hosts"].update(hosts)
    path = tmp_path / f"inventory-{len(list(tmp_path.glob('inventory-*.yml')))}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _find_group(children: dict, name: str) -> dict | None:
    for gname, group in (children or {}).items():
        if gname == name:
            return group
        found = _find_group((group or {}).get("children"), name)
        if found is not None:
            return found
    return None


def run_audit(inventory: Path | str, out_dir: Path, *args: str, timeout: int = 900,
              env: dict[str, str] | None = None) -> AuditRun:
    """`pytest --hosts=INVENTORY ARGS` in a subprocess; reports go to `out_dir`; `env` adds to
    the environment."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", f"--hosts={inventory}", f"--alluredir={out_dir / 'allure-results'}",
           f"--junitxml={out_dir / 'junit.xml'}", "-p", "no:cacheprovider", "-q", "-rfEs", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})
    assert_no_secret_leaked(out_dir, proc.stdout + proc.stderr)
    outcomes = out_dir / "outcomes.json"
    tests = json.loads(outcomes.read_text())["tests"] if outcomes.exists() else {}
    return AuditRun(proc.returncode, proc.stdout, proc.stderr, tests, out_dir)


def state_secrets() -> dict[str, str]:
    """Both flavours' secret values (name -> value), from their state folders."""
    found = {}
    for state in (".state", ".state-fleet"):
        for p in (ROOT / state / "secrets").glob("*"):
            if p.is_file() and len(p.read_text().strip()) >= 6:
                found[f"{state}/{p.name}"] = p.read_text().strip()
    return found


def assert_no_secret_leaked(out_dir: Path, output: str) -> None:
    """Every audit run in the integration tests is also a leak test: no secret value from the
    state folder may appear in pytest's output or in any report file (names only in messages)."""
    secrets = state_secrets()
    for name, value in secrets.items():
        assert value not in output, f"secret {name} appears in the audit's output"
        for path in out_dir.rglob("*"):
            if path.is_file() and value in path.read_text(errors="replace"):
                raise AssertionError(f"secret {name} appears in report file {path}")
