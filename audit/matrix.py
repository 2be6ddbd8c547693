"""The requirement matrix: every catalogued requirement -> its checks -> outcome per host.

Which checks cover which requirement is read statically from the check modules (every
`mark.requirement("ID", ...)` call), so the matrix counts uncovered requirements even when a
run selects only some checks, and works the same under pytest-xdist.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from audit.catalogue import Catalogue

CHECKS_DIR = Path(__file__).resolve().parent.parent / "checks"


def declared_requirements(checks_dir: Path = CHECKS_DIR) -> dict[str, set[str]]:
    """requirement id -> names of the check functions (module::function) that declare it."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(checks_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                continue
            owner = f"{path.stem}::{node.name}" if not isinstance(node, ast.Module) else path.stem
            targets = node.decorator_list if not isinstance(node, ast.Module) else [
                n.value for n in node.body if isinstance(n, ast.Assign)
                and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)]
            for deco in targets:
                for call in ast.walk(deco):
                    if isinstance(call, ast.Call) and _is_requirement_call(call.func):
                        for arg in call.args:
                            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                                found[arg.value].add(owner)
    return found


def _is_requirement_call(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("requirement", "per_requirement")


OUTCOME_ORDER = ["failed", "error", "passed", "skipped"]


def build(catalogue: Catalogue, by_test: dict[str, dict]) -> list[dict]:
    """One row per requirement: checks, outcome per host, overall status."""
    declared = declared_requirements()
    per_req: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    reasons: dict[str, str] = {}
    for entry in by_test.values():
        for req in filter(None, entry.get("requirements", "").split(",")):
            per_req[req][entry.get("host") or "-"].append(entry["outcome"])
            if entry.get("category") == "waived":
                reasons[req] = entry.get("reason", "")
    rows = []
    for req in catalogue.requirements:
        hosts = {h: _worst(o) for h, o in sorted(per_req.get(req.id, {}).items())}
        if not req.automatable:
            status = "not automatable"
        elif req.id not in declared:
            status = "uncovered"
        elif not hosts:
            status = "not run"
        elif req.id in reasons and all(v == "skipped" for v in hosts.values()):
            status = "waived"
        else:
            status = _worst(list(hosts.values()))
        rows.append({"id": req.id, "severity": req.severity, "statement": req.statement,
                     "checks": sorted(declared.get(req.id, [])), "hosts": hosts, "status": status,
                     "note": req.reason or reasons.get(req.id, "")})
    return rows


def _worst(outcomes: list[str]) -> str:
    return min(outcomes, key=OUTCOME_ORDER.index) if outcomes else "not run"


def summary(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row["status"]] += 1
    counts["total"] = len(rows)
    return dict(counts)


def to_markdown(rows: list[dict]) -> str:
    counts = summary(rows)
    head = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    lines = ["# Requirement matrix", "", head, "",
             "| requirement | severity | status | per host | checks |", "|---|---|---|---|---|"]
    for r in rows:
        hosts = " ".join(f"{h}={o}" for h, o in r["hosts"].items()) or "-"
        checks = "<br>".join(r["checks"]) or "-"
        lines.append(f"| {r['id']} | {r['severity']} | {r['status']} | {hosts} | {checks} |")
    return "\n".join(lines) + "\n"
