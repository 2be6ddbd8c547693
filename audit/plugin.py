"""The pytest plugin, loaded from the root conftest.py: options, markers and the hooks that start
an audit. The behaviour lives in classes registered when `--hosts` names an inventory (the way
pytest-xdist splits its own plugin): `AuditSession` (audit/session.py) in every process that runs
checks, `AuditReporter` (audit/reporting.py) in the process that reports.
"""

from __future__ import annotations

import logging
import os

import pytest

from audit import evidence
from audit.catalogue import load_catalogue
from audit.inventory import (
    InventoryError,
    available_inventories,
    inventory_from_specs,
    load_inventory,
    resolve_inventory_arg,
)
from audit.session import OPT_IN, requirement_ids
from audit.transport import new_run
from audit.waivers import WaiverError, load_waivers

MARKERS = [
    "requirement(*ids): the catalogued requirement ids this check verifies",
    "roles(*roles): inventory roles whose hosts the check runs on (parametrizes `server`)",
    "requirement_roles(table): requirement -> roles, one body for each (audit.marks.per_requirement_on)",
    "load: sends load (opt-in: --opt-in=load)",
    "burst: sends a short burst of requests, e.g. rate limits (opt-in: --opt-in=burst)",
    "writes: writes to the deployment and cleans up (opt-in: --opt-in=writes)",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pynomaly-audit")
    group.addoption("--gate", choices=["pre-release", "nightly", "hardened"], default=None,
                    help="pre-release: blocker+critical must pass, nothing may be broken and every blocker "
                         "and critical requirement must have been audited; nightly: every requirement counts "
                         "(default); hardened: like nightly, and the advisories beyond the guide count too")
    group.addoption("--opt-in", dest="opt_in", default="", metavar="load,burst,writes|all",
                    help="also run these opt-in checks (bounded load, request bursts, writes that clean up) "
                         "without narrowing the run (-m narrows it to them)")


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    unknown = {m.strip() for m in (config.getoption("opt_in", default="") or "").split(",") if m.strip()} \
        - {*OPT_IN, "all"}
    if unknown:
        raise pytest.UsageError(f"--opt-in: unknown {', '.join(sorted(unknown))} "
                                f"(choose from {', '.join(OPT_IN)}, all)")
    hosts = config.getoption("hosts", default=None)
    if not hosts:
        return
    try:
        catalogue = load_catalogue()
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"requirement catalogue: {exc}") from None
    try:
        path = resolve_inventory_arg(hosts)
        if path is None:
            inventory = inventory_from_specs(hosts, config.getoption("ssh_config", default=None),
                                             config.getoption("ssh_identity_file", default=None))
        else:
            inventory = load_inventory(path)
            config.option.hosts = None  # testinfra's own `host` fixture must not parse NAME
        waiver_file = inventory.setting("audit_waivers")
        waivers = load_waivers(waiver_file, set(catalogue.by_id)) if waiver_file else []
    except (InventoryError, WaiverError) as exc:
        raise pytest.UsageError(str(exc)) from None
    _default_report_paths(config)
    if not is_worker(config):
        new_run()
    from audit.session import AuditSession

    session = AuditSession(config, catalogue, inventory, waivers)
    config.pluginmanager.register(session, "audit-session")
    if not is_worker(config):
        from audit.reporting import AuditReporter

        transport = session.access.transport
        config.pluginmanager.register(AuditReporter(config, catalogue, inventory,
                                                    transport.close if transport else lambda: None),
                                      "audit-reporter")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` for an audit: one process. Its checks only judge facts that every host gathers
    at once in threads (audit/facts.py), so more processes only add their start-up and the
    collection of every check again (benchmarks/audit_speed.py: -n auto against -n 2);
    `-n N` still spreads the checks over N workers, which share the facts."""
    return 0 if config.getoption("hosts", default=None) else None


def _default_report_paths(config: pytest.Config) -> None:
    """reports/allure-results and reports/junit.xml unless the command line says otherwise. xdist
    workers write the Allure results of their checks too: only the controller empties the folder."""
    from audit.reporting import REPORTS

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Checks need an inventory: without `--hosts` they are a usage error, not skipped."""
    if not config.pluginmanager.has_plugin("audit-session") and any(requirement_ids(i) for i in items):
        raise pytest.UsageError("the checks need an inventory: run `pytest --hosts=NAME` "
                                f"(available: {', '.join(available_inventories())})")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.pluginmanager.get_plugin("audit-session")
    if session is not None and session.access.transport is not None:
        from audit.reporting import write_transport_stats

        write_transport_stats(getattr(config.option, "allure_report_dir", None), session.access.transport.stats,
                              session.facts.gathered)


os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
logging.getLogger("paramiko").setLevel(logging.WARNING)
