"""The pytest plugin: `--hosts=NAME` -> inventory, fixtures by role, catalogue labels, waivers,
masking, outcome categories and exit codes. Loaded from the root conftest.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import allure
import pytest

from audit import evidence, matrix, outcomes
from audit.catalogue import Catalogue, load_catalogue
from audit.inventory import (
    Inventory,
    InventoryError,
    inventory_from_specs,
    load_inventory,
    resolve_inventory_arg,
    resolve_secret,
)
from audit.transport import HostUnreachable, Server, Transport
from audit.waivers import Waiver, WaiverError, find_waiver, load_waivers

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
SEVERITY = {"blocker": allure.severity_level.BLOCKER, "critical": allure.severity_level.CRITICAL,
            "normal": allure.severity_level.NORMAL, "minor": allure.severity_level.MINOR}
SEVERITY_RANK = ["minor", "normal", "critical", "blocker"]
EXPIRED_KEY = pytest.StashKey[str]()
MAX_LISTED = 25  # requirements needing attention listed at the end of the run


@dataclass
class AuditContext:
    """What one pytest process knows about the audit: inventory, catalogue, waivers, servers."""

    catalogue: Catalogue
    inventory: Inventory | None = None
    waivers: list[Waiver] = field(default_factory=list)
    transport: Transport | None = None
    servers: dict[str, Server] = field(default_factory=dict)
    results: outcomes.Tally = field(default_factory=outcomes.Tally)
    overrides_used: dict[str, Any] = field(default_factory=dict)

    def server(self, name: str) -> Server:
        if name not in self.servers:
            self.servers[name] = Server(self.inventory.hosts[name], self.transport)
        return self.servers[name]

    def expected(self, req_id: str) -> Any:
        if req_id not in self.catalogue.by_id:
            raise KeyError(f"unknown requirement id {req_id}")
        overrides = (self.inventory.setting("audit_expected") if self.inventory else None) or {}
        if req_id in overrides:
            return overrides[req_id]
        return self.catalogue[req_id].expected


CONTEXT_KEY = pytest.StashKey[AuditContext]()


def ctx_of(config: pytest.Config) -> AuditContext:
    return config.stash[CONTEXT_KEY]


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pynomaly-audit")
    group.addoption("--gate", choices=["pre-release", "nightly"], default=None,
                    help="pre-release: blocker+critical must pass and nothing may be broken; "
                         "nightly: everything runs and counts (the default)")


MARKERS = [
    "requirement(*ids): the catalogued requirement ids this check verifies",
    "roles(*roles): inventory roles whose hosts the check runs on (parametrizes `server`)",
    "load: sends load (opt-in: -m load)",
    "burst: sends a short burst of requests, e.g. rate limits (opt-in: -m burst)",
    "writes: writes to the deployment and cleans up (opt-in: -m writes)",
]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    try:
        catalogue = load_catalogue()
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"requirement catalogue: {exc}") from None
    ctx = AuditContext(catalogue=catalogue)
    config.stash[CONTEXT_KEY] = ctx
    if not is_worker(config):
        config.pluginmanager.register(ctx.results, "audit-outcome-tally")
    hosts = config.getoption("hosts", default=None)
    if not hosts:
        return
    try:
        path = resolve_inventory_arg(hosts)
        if path is None:
            ctx.inventory = inventory_from_specs(hosts)
        else:
            ctx.inventory = load_inventory(path)
            config.option.hosts = None  # testinfra's own `host` fixture must not parse NAME
        waiver_file = ctx.inventory.setting("audit_waivers")
        if waiver_file:
            ctx.waivers = load_waivers(waiver_file, set(catalogue.by_id))
    except (InventoryError, WaiverError) as exc:
        raise pytest.UsageError(str(exc)) from None
    for name in (ctx.inventory.setting("audit_secrets") or {}):
        with contextlib.suppress(InventoryError):  # a missing secret is reported by the check needing it
            evidence.register_secret(resolve_secret(ctx.inventory, name))
    ctx.transport = Transport(ctx.inventory) if ctx.inventory.hosts else None
    # xdist workers parse the command line afresh and write the Allure results of their checks:
    # they need the default folder too; only the controller empties it (before workers start).
    if getattr(config.option, "allure_report_dir", None) is None:
        config.option.allure_report_dir = str(REPORTS / "allure-results")
        config.option.clean_alluredir = not is_worker(config)
    if not is_worker(config):
        REPORTS.mkdir(exist_ok=True)
        if getattr(config.option, "xmlpath", None) is None:
            config.option.xmlpath = str(REPORTS / "junit.xml")


def pytest_sessionstart(session: pytest.Session) -> None:
    logging_plugin = session.config.pluginmanager.get_plugin("logging-plugin")
    for name in ("caplog_handler", "report_handler", "log_cli_handler", "log_file_handler"):
        handler = getattr(logging_plugin, name, None)
        if handler is not None:
            handler.addFilter(evidence.MaskingFilter())


def requirement_ids(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers("requirement"):
        ids.extend(mark.args)
    return list(dict.fromkeys(ids))


def item_host(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("server") if callspec else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `server` over the inventory hosts of the check's roles, ids = host names."""
    if "server" not in metafunc.fixturenames:
        return
    ctx = ctx_of(metafunc.config)
    roles = [r for m in metafunc.definition.iter_markers("roles") for r in m.args]
    if ctx.inventory is None:
        metafunc.parametrize("server", [pytest.param(None, marks=pytest.mark.skip(
            reason="no inventory: run with --hosts=NAME"))], ids=["no-inventory"], indirect=True)
        return
    hosts = ctx.inventory.hosts_with_role(*roles)
    if not hosts:
        reason = f"role {' / '.join(roles)} absent from inventory {ctx.inventory.name}"
        metafunc.parametrize("server", [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                             ids=["no-host"], indirect=True)
        return
    metafunc.parametrize("server", [h.name for h in hosts], ids=[h.name for h in hosts],
                         indirect=True, scope="function")


OPT_IN = ("load", "burst", "writes")


def _deselect_opt_in(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Checks marked load/burst/writes run only when `-m` names their marker."""
    markexpr = config.getoption("markexpr", default="") or ""
    dropped = [i for i in items if any(i.get_closest_marker(m) and m not in markexpr for m in OPT_IN)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = {id(i) for i in dropped}
        items[:] = [i for i in items if id(i) not in gone]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ctx = ctx_of(config)
    _deselect_opt_in(config, items)
    unknown = sorted({(item.nodeid, r) for item in items for r in requirement_ids(item)
                      if r not in ctx.catalogue.by_id})
    if unknown:
        lines = "\n".join(f"  {nodeid}: {req}" for nodeid, req in unknown)
        raise pytest.UsageError(f"checks name requirement ids that are not in the catalogue:\n{lines}")
    checks = [i for i in items if requirement_ids(i)]
    if checks and ctx.inventory is None:
        raise pytest.UsageError(
            "the checks need an inventory: run `pytest --hosts=NAME` "
            f"(available: {', '.join(_available())})")
    for item in checks:
        _catalogue_labels(item, ctx.catalogue)


def _catalogue_labels(item: pytest.Item, cat: Catalogue) -> None:
    """Feature (guide section), story (requirement), severity, guide link and host tag from the
    catalogue, as allure-pytest marks: set at collection, they label every check in the report,
    also the ones skipped before any fixture runs (waived, role absent)."""
    reqs = [cat[i] for i in requirement_ids(item)]
    label = pytest.mark.allure_label
    for title in dict.fromkeys(cat.sections[r.section].title for r in reqs):
        item.add_marker(label(title, label_type="feature"))
    for r in reqs:
        item.add_marker(label(f"{r.id}: {r.statement}", label_type="story"))
        item.add_marker(label(r.id, label_type="requirement"))
        item.add_marker(pytest.mark.allure_link(cat.guide_link(r.id), link_type="link",
                                                name=f"guide: {cat.sections[r.section].title}"))
    worst = max((r.severity for r in reqs), key=SEVERITY_RANK.index)
    item.add_marker(label(SEVERITY[worst].value, label_type="severity"))
    host = item_host(item)
    if host:
        item.add_marker(label(host, label_type="tag"))


def _available() -> list[str]:
    from audit.inventory import available_inventories
    return available_inventories()


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def server(request: pytest.FixtureRequest) -> Server:
    """The host under audit; errors (not fails) when it cannot be reached."""
    ctx = ctx_of(request.config)
    srv = ctx.server(request.param)
    srv.ensure_reachable()
    return srv


@pytest.fixture(scope="session")
def inventory(pytestconfig: pytest.Config) -> Inventory:
    ctx = ctx_of(pytestconfig)
    if ctx.inventory is None:
        pytest.skip("no inventory: run with --hosts=NAME")
    return ctx.inventory


@pytest.fixture(scope="session")
def audit_context(pytestconfig: pytest.Config) -> AuditContext:
    return ctx_of(pytestconfig)


@pytest.fixture
def expected(request: pytest.FixtureRequest):
    """expected(REQ-ID): the catalogue's value, or the inventory's override (shown in evidence)."""
    ctx = ctx_of(request.config)

    def lookup(req_id: str) -> Any:
        value = ctx.expected(req_id)
        guide = ctx.catalogue[req_id].expected
        if value != guide:
            allure.dynamic.parameter(f"expected {req_id}", f"{value!r} (inventory override; guide: {guide!r})")
            ctx.overrides_used[req_id] = value
        return value

    return lookup


@pytest.fixture
def secret(inventory: Inventory):
    """secret(NAME): the value behind the inventory's reference, registered for masking."""

    def lookup(name: str) -> str:
        value = resolve_secret(inventory, name)
        evidence.register_secret(value)
        return value

    return lookup


# ---------------------------------------------------------------- waivers and outcomes

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    ids = requirement_ids(item)
    ctx = ctx_of(item.config)
    if not ids or not ctx.waivers:
        return
    active, expired = find_waiver(ctx.waivers, ids, item_host(item))
    if expired:
        item.stash[EXPIRED_KEY] = "; ".join(
            f"waiver for {w.requirement} expired on {w.expires} ({w.justification})" for w in expired)
    elif active:
        pytest.skip("waived: " + "; ".join(
            f"{w.requirement} until {w.expires}: {w.justification}" for w in active))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield
    expired = item.stash.get(EXPIRED_KEY, None)
    if expired:
        pytest.fail(f"{expired} - renew the waiver or fix the deployment (the check itself passed)")
    return result


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    ids = requirement_ids(item)
    if ids:
        report.user_properties.append(("requirements", ",".join(ids)))
        host = item_host(item)
        if host:
            report.user_properties.append(("host", host))
    category = outcomes.classify(report, call.excinfo.value if call.excinfo else None)
    if category:
        report.user_properties.append(("category", category))
    if call.excinfo and isinstance(call.excinfo.value, HostUnreachable) and report.when == "setup":
        report.longrepr = f"could not audit: {call.excinfo.value}"
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        masked = evidence.mask(text)
        if masked != text:
            report.longrepr = masked
    return report


@pytest.hookimpl(hookwrapper=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    yield
    summary = config.stash.get(outcomes.SUMMARY_KEY, None)
    if summary:
        terminalreporter.write_sep("=", "audit outcome")
        terminalreporter.write_line(summary)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    ctx = ctx_of(config)
    if is_worker(config) or ctx.inventory is None:
        return
    code, text = outcomes.verdict(ctx.results, config.getoption("gate"), ctx.catalogue)
    config.stash[outcomes.SUMMARY_KEY] = text
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = code
    alluredir = getattr(config.option, "allure_report_dir", None)
    if alluredir:
        _write_allure_metadata(Path(alluredir), ctx, config)
        rows = matrix.build(ctx.catalogue, ctx.results.by_test)
        out = Path(alluredir).parent
        (out / "requirements.md").write_text(matrix.to_markdown(rows))
        (out / "requirements.html").write_text(matrix.to_html(
            rows, meta={"summary": text.splitlines()[0], **_audit_properties(ctx, config)}))
        (out / "requirements.json").write_text(json.dumps(rows, indent=1))
        (out / "outcomes.json").write_text(json.dumps(
            {"exit_code": code, "gate": config.getoption("gate") or "nightly", "summary": text,
             "matrix": matrix.summary(rows), "tests": ctx.results.by_test}, indent=1))
        todo = matrix.attention(rows)
        lines = [text, f"requirement matrix: {matrix.summary_line(rows)} -> {out / 'requirements.md'}"]
        lines += [f"  {r['status']:<7} {r['severity']:<8} {r['id']:<28} "
                  + " ".join(f"{h}={o}" for h, o in r["hosts"].items()) for r in todo[:MAX_LISTED]]
        if len(todo) > MAX_LISTED:
            lines.append(f"  ... {len(todo) - MAX_LISTED} more in {out / 'requirements.md'}")
        default = Path(alluredir).resolve() == (REPORTS / "allure-results").resolve()
        lines.append("HTML report: python -m reports" + ("" if default else f" --results {alluredir}"))
        config.stash[outcomes.SUMMARY_KEY] = "\n".join(lines)


def pytest_unconfigure(config: pytest.Config) -> None:
    ctx = config.stash.get(CONTEXT_KEY, None)
    if ctx is None or ctx.inventory is None:
        return
    alluredir = getattr(config.option, "allure_report_dir", None)
    if alluredir and ctx.transport:  # every process: what it asked of each host (benchmarks read it)
        stats_dir = Path(alluredir).parent / "transport-stats"
        stats_dir.mkdir(parents=True, exist_ok=True)
        (stats_dir / f"{os.getpid()}.json").write_text(json.dumps(ctx.transport.stats))
    if is_worker(config):
        return
    for target in (getattr(config.option, "allure_report_dir", None), getattr(config.option, "xmlpath", None)):
        if target and Path(target).exists():
            evidence.scrub_tree(target)
    if ctx.transport:
        ctx.transport.close()


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _audit_properties(ctx: AuditContext, config: pytest.Config) -> dict[str, str]:
    """What was audited, by which suite, under which gate: Allure's environment, the matrix header."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        suite_version = version("pynomaly-audit")
    except PackageNotFoundError:
        suite_version = "dev"
    inv = ctx.inventory
    props = {
        "inventory": f"{inv.name} ({inv.path})",
        "hosts": ", ".join(sorted(inv.hosts)),
        "suite.version": suite_version,
        "suite.git": _git_sha(),
        "gate": config.getoption("gate") or "nightly",
        "audited.at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    for req_id, value in sorted(((inv.setting("audit_expected") or {})).items()):
        props[f"override.{req_id}"] = repr(value)
    return {k: evidence.mask(str(v)) for k, v in props.items()}


def _write_allure_metadata(alluredir: Path, ctx: AuditContext, config: pytest.Config) -> None:
    """environment.properties (what was audited) and categories.json (why a check is not green).
    Allure 3 shows the properties as the report's metadata; it reads categories from its config
    (allurerc.mjs loads this categories.json)."""
    alluredir.mkdir(parents=True, exist_ok=True)
    props = {**_audit_properties(ctx, config),
             "requirement.matrix": "requirements.html (Global Attachments tab; requirements.md beside it)"}
    text = "\n".join(f"{k}={_escape_property(v)}" for k, v in props.items())
    (alluredir / "environment.properties").write_text(text + "\n")
    (alluredir / "categories.json").write_text(outcomes.ALLURE_CATEGORIES)


def _escape_property(value: str) -> str:
    """A Java .properties value (what Allure reads): backslashes, and line breaks kept on one line."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
logging.getLogger("paramiko").setLevel(logging.WARNING)
