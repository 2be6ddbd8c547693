"""The requirement matrix: every catalogued requirement -> its checks -> outcome per host.

Which checks cover which requirement is read statically from the check modules (every
`mark.requirement("ID", ...)` call), so the matrix counts uncovered requirements even when a
run selects only some checks, and works the same under pytest-xdist.
"""

from __future__ import annotations

import ast
import html
from collections import defaultdict
from functools import cache
from pathlib import Path

from audit.catalogue import Catalogue
from audit.judge import combine_sides

CHECKS_DIR = Path(__file__).resolve().parent.parent / "checks"


def check_modules(checks_dir: Path = CHECKS_DIR) -> list[Path]:
    """The product's check modules: checks/<area>.py."""
    return sorted(p for p in checks_dir.glob("*.py") if not p.name.startswith("_"))


def declared_requirements(checks_dir: Path = CHECKS_DIR) -> dict[str, set[str]]:
    """requirement id -> names of the check functions (module::function) that declare it, including
    the catalogue's value rows (`fact:`), judged by the one generic check of checks/values.py."""
    found: dict[str, set[str]] = defaultdict(set)
    for req_id, owners in _declared(Path(checks_dir).resolve()).items():
        found[req_id] |= owners
    return found


@cache
def _declared(checks_dir: Path) -> dict[str, frozenset[str]]:
    from audit.catalogue import load_catalogue

    found: dict[str, set[str]] = defaultdict(set)
    if (checks_dir / "values.py").exists():
        catalogue = load_catalogue()
        for req in catalogue.requirements + catalogue.advisories:
            if req.fact is not None:
                found[req.id].add(VALUE_CHECK)
    for path in check_modules(checks_dir):
        tree = ast.parse(path.read_text(), filename=str(path))
        constants = _string_constants(tree)
        # checks are module-level functions; `pytestmark` marks a whole module
        owners = [(f"{path.stem}::{n.name}", n.decorator_list) for n in tree.body
                  if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        owners.append((path.stem, [n.value for n in tree.body if isinstance(n, ast.Assign)
                                   and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)]))
        for owner, decorators in owners:
            for deco in decorators:
                for call in ast.walk(deco):
                    if isinstance(call, ast.Call) and _is_requirement_call(call.func):
                        for arg in call.args:
                            for req_id in _ids_of(arg, constants):
                                found[req_id].add(owner)
    return {k: frozenset(v) for k, v in found.items()}


def _string_constants(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level NAME = ("ID", ...) / ["ID", ...] / {"ID": ...}: the strings (keys of a dict)."""
    out: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Tuple | ast.List | ast.Dict):
            items = node.value.keys if isinstance(node.value, ast.Dict) else node.value.elts
            strings = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name) and strings:
                    out[target.id] = strings
    return out


def _ids_of(arg: ast.expr, constants: dict[str, list[str]]) -> list[str]:
    """Ids named by one argument: a literal, or *NAME / NAME of a module-level constant."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name):
        return constants.get(arg.value.id, [])
    if isinstance(arg, ast.Dict):  # per_requirement_on({"ID": "role", ...})
        return [k.value for k in arg.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    if isinstance(arg, ast.Name) and arg.id in constants:  # per_requirement_on(TABLE)
        return constants[arg.id]
    return []


def _is_requirement_call(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("requirement", "per_requirement", "per_requirement_on")


VALUE_CHECK = "values::check_catalogued_value"
OUTCOME_ORDER = ["failed", "error", "passed", "skipped"]
# Display order of the matrix statuses (every status `build` can give a row).
STATUSES = ["passed", "failed", "error", "waived", "not applicable", "not run", "uncovered", "not automatable"]
STATUS_HELP = {
    "passed": "every check of the requirement passed on every host it ran on",
    "failed": "non-compliant: a check found the deployment differs from the guide (or its waiver expired)",
    "error": "could not audit: a host, service, role or inventory setting the check needs was missing or unreachable",
    "waived": "an active waiver covers the requirement (see the note)",
    "not applicable": "the inventory declares it does not apply here (audit_not_applicable, see the note)",
    "not run": "one or more of its checks did not run in this audit (deselected, or an opt-in marker not chosen)",
    "uncovered": "no check names this requirement yet",
    "not automatable": "cannot be checked by a program (see the note)",
}
SIDES_HELP = ("running vs on disk: whether the state the service runs and its configuration on disk "
              "(what the next reload/restart applies) agree, across the requirement's checks and hosts: "
              "agree, differ, running only or on disk only (the other side cannot be read); "
              "empty: not judged as settings with two sides")


def build(catalogue: Catalogue, by_test: dict[str, dict], checks_dir: Path = CHECKS_DIR) -> list[dict]:
    """One row per requirement: checks, outcome per host, overall status. A requirement is
    covered by the checks that declare it in checks/ and by any check that ran and named it."""
    declared = declared_requirements(checks_dir)
    per_req: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    ran: dict[str, set[str]] = defaultdict(set)
    reasons: dict[str, str] = {}
    problems: dict[str, str] = {}  # requirement -> first failure message (why it is red)
    sides: dict[str, set[str]] = defaultdict(set)  # requirement -> its checks' running/on-disk verdicts
    for nodeid, entry in by_test.items():
        for req in filter(None, entry.get("requirements", "").split(",")):
            per_req[req][entry.get("host") or "-"].append(entry["outcome"])
            if entry.get("sides"):
                sides[req].add(entry["sides"])
            ran[req].add(_check_name(nodeid))
            if entry.get("category") in ("waived", "not-applicable"):
                reasons[req] = entry.get("reason", "")
            elif entry.get("message") and entry["outcome"] in ("failed", "error"):
                host = entry.get("host")
                problems.setdefault(req, f"{host}: {entry['message']}" if host else entry["message"])
    rows = []
    for req in catalogue.requirements + catalogue.advisories:
        hosts = {h: _worst(o) for h, o in sorted(per_req.get(req.id, {}).items())}
        checks = sorted(declared.get(req.id, set()) | ran.get(req.id, set()))
        if not req.automatable:
            status = "not automatable"
        elif not checks:
            status = "uncovered"
        elif not hosts:
            status = "not run"
        elif all(v == "skipped" for v in hosts.values()):
            status = "not applicable" if "not applicable" in reasons.get(req.id, "") else "waived"
        else:
            status = _worst(list(hosts.values()))
            if status == "passed" and not set(declared.get(req.id, set())) <= ran.get(req.id, set()):
                status = "not run"
        rows.append({"id": req.id, "kind": "advisory" if req.advisory else "requirement", "source": req.source,
                     "severity": req.severity, "statement": req.statement,
                     "checks": checks, "hosts": hosts, "status": status,
                     "sides": combine_sides(sides[req.id]) if sides.get(req.id) else "",
                     "note": req.reason or (problems.get(req.id, "") if status in ("failed", "error")
                                            else reasons.get(req.id, ""))})
    return rows


def coverage(catalogue: Catalogue, by_test: dict[str, dict], checks_dir: Path = CHECKS_DIR) -> dict[str, str]:
    """Per requirement: "audited" when every check that declares it ran to a verdict on every
    host (passed, failed, waived or not applicable), else why not: "not run" (a check of it did
    not run), "could not audit", "uncovered" (no check) or "not automatable"."""
    declared = declared_requirements(checks_dir)
    seen: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for nodeid, entry in by_test.items():
        for req in filter(None, entry.get("requirements", "").split(",")):
            seen[req][_check_name(nodeid)].append(entry["outcome"])
    status = {}
    for req in catalogue.requirements:
        funcs = declared.get(req.id, set()) | set(seen.get(req.id, {}))
        if not req.automatable:
            status[req.id] = "not automatable"
        elif not funcs:
            status[req.id] = "uncovered"
        elif any(f not in seen.get(req.id, {}) for f in funcs):
            status[req.id] = "not run"
        elif any("error" in outs for outs in seen[req.id].values()):
            status[req.id] = "could not audit"
        else:
            status[req.id] = "audited"
    return status


def _check_name(nodeid: str) -> str:
    """`checks/tls.py::check_x[web1]` -> `tls::check_x` (the form `declared_requirements` uses)."""
    path, _, rest = nodeid.partition("::")
    return f"{Path(path).stem}::{rest.split('[', 1)[0]}"


def _worst(outcomes: list[str]) -> str:
    return min(outcomes, key=OUTCOME_ORDER.index) if outcomes else "not run"


def summary(rows: list[dict]) -> dict[str, int]:
    """Requirement count per status, in display order, every status present (0 when none), and total."""
    counts = dict.fromkeys(STATUSES, 0)
    guide = [r for r in rows if r.get("kind", "requirement") == "requirement"]
    for row in guide:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    counts["total"] = len(guide)
    return counts


def summary_line(rows: list[dict]) -> str:
    """`passed 12, failed 1, ...` in display order: the matrix in one line for a CI log."""
    return ", ".join(f"{k} {v}" for k, v in summary(rows).items())


def attention(rows: list[dict]) -> list[dict]:
    """Rows a reader must act on: non-compliant, then could-not-audit; by severity."""
    rank = {"blocker": 0, "critical": 1, "normal": 2, "minor": 3}
    return sorted((r for r in rows if r["status"] in ("failed", "error")
                   and r.get("kind", "requirement") == "requirement"),
                  key=lambda r: (r["status"] != "failed", rank.get(r["severity"], 9), r["id"]))


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: list[dict], headline: str | None = None) -> str:
    """The matrix as Markdown: the run's headline (PARTIAL when narrowed), counts, then what needs
    attention, then every requirement. Plain enough to read with `cat` in a CI log."""
    counts = summary(rows)
    lines = ["# Requirement matrix", ""] + ([headline, ""] if headline else [])
    lines += ["| status | requirements | meaning |", "|---|---:|---|"]
    lines += [f"| {k} | {v} | {STATUS_HELP.get(k, '')} |" for k, v in counts.items()]
    todo = attention(rows)
    lines += ["", f"## Needs attention ({len(todo)})", ""]
    if todo:
        lines += ["| requirement | severity | status | per host | statement | why |", "|---|---|---|---|---|---|"]
        for r in todo:
            hosts = " ".join(f"{h}={o}" for h, o in r["hosts"].items()) or "-"
            lines.append(f"| {r['id']} | {r['severity']} | {r['status']} | {hosts} | {_md(r['statement'])} "
                         f"| {_md(r['note'])} |")
    else:
        lines.append("Nothing failed and nothing was left unaudited.")
    lines += ["", "## Every requirement", "", SIDES_HELP, "",
              "| requirement | severity | status | per host | running vs on disk | checks | note |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("kind") == "advisory":
            continue
        hosts = " ".join(f"{h}={o}" for h, o in r["hosts"].items()) or "-"
        checks = "<br>".join(r["checks"]) or "-"
        lines.append(f"| {r['id']} | {r['severity']} | {r['status']} | {hosts} | {r.get('sides') or '-'} | {checks} "
                     f"| {_md(r['note'])} |")
    advisories = [r for r in rows if r.get("kind") == "advisory"]
    if advisories:
        lines += ["", f"## Advisories beyond the guide ({len(advisories)}; only --gate=hardened counts them)", "",
                  "| advisory | severity | status | per host | source | statement | note |",
                  "|---|---|---|---|---|---|---|"]
        for r in advisories:
            hosts = " ".join(f"{h}={o}" for h, o in r["hosts"].items()) or "-"
            lines.append(f"| {r['id']} | {r['severity']} | {r['status']} | {hosts} | {_md(r['source'])} "
                         f"| {_md(r['statement'])} | {_md(r['note'])} |")
    return "\n".join(lines) + "\n"


_STATUS_COLOUR = {"passed": "#15803d", "failed": "#dc2626", "error": "#d97706", "waived": "#7c3aed",
                  "skipped": "#64748b", "not run": "#64748b", "uncovered": "#0369a1", "not automatable": "#475569"}


def to_html(rows: list[dict], title: str = "Requirement matrix", meta: dict[str, str] | None = None) -> str:
    """The matrix as one self-contained HTML page (inline CSS, no script, no outside resource)."""
    esc = html.escape
    counts = summary(rows)
    head = "".join(
        f'<tr class="count" data-status="{esc(k)}"><th>{esc(k)}</th><td>{v}</td>'
        f"<td>{esc(STATUS_HELP.get(k, 'catalogued requirements'))}</td></tr>" for k, v in counts.items())
    info = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in (meta or {}).items())

    def row(r: dict) -> str:
        colour = _STATUS_COLOUR.get(r["status"], "#000")
        hosts = " ".join(f'<span class="host {esc(o)}">{esc(h)}: {esc(o)}</span>' for h, o in r["hosts"].items())
        return (f'<tr data-status="{esc(r["status"])}"><td class="id">{esc(r["id"])}</td>'
                f"<td>{esc(r['severity'])}</td>"
                f'<td><span class="badge" style="background:{colour}">{esc(r["status"])}</span></td>'
                f"<td>{hosts or '-'}</td><td class=\"sides\">{esc(r.get('sides') or '-')}</td>"
                f"<td>{esc(r['statement'])}</td>"
                f"<td>{'<br>'.join(esc(c) for c in r['checks']) or '-'}</td><td>{esc(r['note'])}</td></tr>")

    advisories = [r for r in rows if r.get("kind") == "advisory"]
    advisories_html = (f"<h2>Advisories beyond the guide ({len(advisories)}; only --gate=hardened counts them)</h2>"
                       '<table id="advisories"><thead><tr><th>advisory</th><th>severity</th><th>status</th>'
                       "<th>per host</th><th>running vs on disk</th><th>statement</th><th>checks</th><th>note</th>"
                       "</tr></thead><tbody>" + "".join(row(r) for r in advisories)
                       + "</tbody></table>") if advisories else ""
    todo = attention(rows)
    todo_html = ("<table><thead><tr><th>requirement</th><th>severity</th><th>status</th><th>per host</th>"
                 "<th>running vs on disk</th><th>statement</th><th>checks</th><th>note</th></tr></thead><tbody>"
                 + "".join(row(r) for r in todo) + "</tbody></table>") if todo else \
        "<p>Nothing failed and nothing was left unaudited.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{esc(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2937; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
th, td {{ border: 1px solid #d1d5db; padding: .25em .5em; text-align: left; vertical-align: top; }}
thead th {{ background: #f3f4f6; position: sticky; top: 0; }}
.count td:nth-child(2) {{ text-align: right; font-weight: bold; }}
.badge {{ color: #fff; border-radius: .6em; padding: 0 .5em; white-space: nowrap; }}
.id {{ font-family: ui-monospace, monospace; white-space: nowrap; }}
.host {{ white-space: nowrap; margin-right: .5em; }}
.host.failed {{ color: #dc2626; }} .host.error {{ color: #d97706; }} .host.passed {{ color: #15803d; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p id="summary">{esc(summary_line(rows))}</p>
{f'<table class="meta"><tbody>{info}</tbody></table>' if info else ''}
<h2>Requirements by status</h2>
<table id="counts"><tbody>{head}</tbody></table>
<h2>Needs attention ({len(todo)})</h2>
{todo_html}
<h2>Every requirement</h2>
<p id="sides-help">{esc(SIDES_HELP)}</p>
<table id="matrix"><thead><tr><th>requirement</th><th>severity</th><th>status</th><th>per host</th>
<th title="{esc(SIDES_HELP)}">running vs on disk</th><th>statement</th><th>checks</th><th>note</th></tr></thead><tbody>
{"".join(row(r) for r in rows if r.get("kind") != "advisory")}
</tbody></table>
{advisories_html}
</body></html>
"""
