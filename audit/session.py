"""`AuditSession`: what one pytest process of an audit does (a plugin object, registered by
audit/plugin.py when `--hosts` names an inventory).

- parametrizes every check over the inventory hosts of its roles (`server`, ids = host names); a
  role with no host is could-not-audit naming the role, unless the inventory declares the
  requirement not applicable;
- deselects the opt-in checks (load, burst, writes) unless `--opt-in` or `-m` names them, labels
  every check from the catalogue, and starts gathering the facts the selected checks need;
- applies waivers and `audit_not_applicable` before a check runs;
- turns a finding raised while a fixture gathered facts into the check's own failure, and names
  every outcome by its type (audit/outcomes.py);
- registers the fixtures (audit/fixtures.py): `server`, `judge`, `inventory`, `audit_session`,
  and one per probe.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any

import allure
import pytest

from audit import evidence, outcomes
from audit.access import Access
from audit.catalogue import Catalogue
from audit.facts import DEPLOYMENT, REGISTRY, FactStore, load_probes
from audit.inventory import Host, Inventory, declared_not_applicable
from audit.outcomes import CouldNotAudit, NonCompliant
from audit.transport import Transport, control_dir
from audit.waivers import Waiver, find_waiver

SEVERITY = {"blocker": allure.severity_level.BLOCKER, "critical": allure.severity_level.CRITICAL,
            "normal": allure.severity_level.NORMAL, "minor": allure.severity_level.MINOR}
SEVERITY_RANK = ["minor", "normal", "critical", "blocker"]
OPT_IN = ("load", "burst", "writes")
FINDING = pytest.StashKey[AssertionError]()
EXPIRED = pytest.StashKey[str]()


def requirement_ids(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers("requirement"):
        ids.extend(mark.args)
    return list(dict.fromkeys(ids))


def item_host(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("server") if callspec else None
    return host if isinstance(host, str) else None


def opt_ins(config: pytest.Config) -> set[str]:
    """The opt-in markers this run includes: `--opt-in=load,burst|all`, or named by `-m`."""
    chosen = {m.strip() for m in (config.getoption("opt_in", default="") or "").split(",") if m.strip()}
    if "all" in chosen:
        chosen = set(OPT_IN)
    markexpr = config.getoption("markexpr", default="") or ""
    return chosen | {m for m in OPT_IN if m in markexpr}


class AuditSession:
    """One process's audit: see the module docstring."""

    def __init__(self, config: pytest.Config, catalogue: Catalogue, inventory: Inventory, waivers: list[Waiver]):
        self.config = config
        self.catalogue = catalogue
        self.inventory = inventory
        self.waivers = waivers
        self.overrides_used: dict[str, Any] = {}
        transport = Transport(inventory) if any(h.connection in ("ssh", "paramiko")
                                                 for h in inventory.hosts.values()) else None
        self.access = Access(inventory, transport)
        for name in inventory.setting("audit_secrets") or {}:  # masked everywhere, in every process
            with contextlib.suppress(CouldNotAudit):  # a missing secret is reported by the check needing it
                self.access.secret(name)
        self.facts = FactStore(control_dir() / "facts", self)
        load_probes()
        from audit import fixtures

        config.pluginmanager.register(fixtures, "audit-fixtures")
        config.pluginmanager.register(fixtures.probe_fixtures(), "audit-probe-fixtures")

    # ------------------------------------------------------------ values

    def expected(self, req_id: str) -> Any:
        """The catalogue's expected value, or the inventory's override (audit_expected)."""
        if req_id not in self.catalogue.by_id:
            raise KeyError(f"unknown requirement id {req_id}")
        overrides = self.inventory.setting("audit_expected") or {}
        return overrides[req_id] if req_id in overrides else self.catalogue[req_id].expected

    def host(self, name: str) -> Host:
        return self.inventory.hosts[name]

    def not_applicable(self, req_ids: list[str], host: str | None) -> str | None:
        """Why these requirements do not apply (all of them), as the inventory declares, or None."""
        declared = (self.inventory.hosts[host].not_applicable if host in self.inventory.hosts
                    else dict(self.inventory.setting("audit_not_applicable") or {}))
        reasons = []
        for req_id in req_ids:
            section = self.catalogue.by_id[req_id].section if req_id in self.catalogue.by_id else ""
            reason = declared_not_applicable(declared, req_id, section)
            if reason is None:
                return None
            reasons.append(f"{req_id}: {reason}")
        return "; ".join(dict.fromkeys(reasons)) if reasons else None

    # ------------------------------------------------------------ collection

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize `server` over the inventory hosts of the check's roles, ids = host names;
        a check of catalogue value rows (`row`) over (row, host of the row's roles)."""
        if "row" in metafunc.fixturenames:
            self._value_rows(metafunc)
            return
        marker = metafunc.definition.get_closest_marker("requirement_roles")
        if marker is not None:
            self._per_requirement_roles(metafunc, marker.args[0])
            return
        if "server" not in metafunc.fixturenames:
            return
        roles = [r for m in metafunc.definition.iter_markers("roles") for r in m.args]
        hosts = self.inventory.hosts_with_role(*roles)
        if not hosts:
            groups = " or ".join(roles) or "any"
            metafunc.parametrize("server", [pytest.param(f"no host in group {groups}", id="no-host")],
                                 indirect=True, scope="module")
            return
        # module scope: a host's facts are set up once per check module, not once per check
        metafunc.parametrize("server", [h.name for h in hosts], ids=[h.name for h in hosts], indirect=True,
                             scope="module")

    def _value_rows(self, metafunc: pytest.Metafunc) -> None:
        rows = [r for r in self.catalogue.requirements + self.catalogue.advisories if r.fact is not None]
        metafunc.parametrize(("row", "server"), self._pairs({r.id: (r, r.roles) for r in rows}), indirect=["server"],
                             scope="module")

    def _per_requirement_roles(self, metafunc: pytest.Metafunc, roles: dict[str, tuple[str, ...]]) -> None:
        metafunc.parametrize(("req_id", "server"), self._pairs({r: (r, rs) for r, rs in roles.items()}),
                             indirect=["server"], scope="module")

    def _pairs(self, table: dict[str, tuple]) -> list:
        """(value, host) params for requirement -> (value, roles): each on the hosts of its roles."""
        params = []
        for req_id, (value, roles) in table.items():
            hosts = ([h.name for h in self.inventory.hosts_with_role(*roles)]
                     or [f"no host in group {' or '.join(roles)}"])
            params += [pytest.param(value, h, id=f"{h if h in self.inventory.hosts else 'no-host'}-{req_id}",
                                    marks=pytest.mark.requirement(req_id)) for h in hosts]
        return params

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        included = opt_ins(config)
        dropped = [i for i in items if any(i.get_closest_marker(m) and m not in included for m in OPT_IN)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            gone = {id(i) for i in dropped}
            items[:] = [i for i in items if id(i) not in gone]
        unknown = sorted({(i.nodeid, r) for i in items for r in requirement_ids(i) if r not in self.catalogue.by_id})
        if unknown:
            lines = "\n".join(f"  {nodeid}: {req}" for nodeid, req in unknown)
            raise pytest.UsageError(f"checks name requirement ids that are not in the catalogue:\n{lines}")
        for item in items:
            if requirement_ids(item):
                self._labels(item)
        if not config.option.collectonly:  # listing the checks reads nothing from the hosts
            self.facts.prefetch(self._wanted(items))
        # the modules, the catalogue and the collected checks live to the end of the run: garbage
        # collections (pytest's own at its end took 0.2 s each) no longer walk them
        gc.freeze()

    def _wanted(self, items: list[pytest.Item]) -> set[tuple[str, str]]:
        """(probe, host) of every fact the selected, not waived, applicable checks will read."""
        wanted = set()
        for item in items:
            host = item_host(item)
            ids = requirement_ids(item)
            if host is not None and host not in self.inventory.hosts:  # a role with no host
                continue
            if ids and (self.not_applicable(ids, host) or find_waiver(self.waivers, ids, host)[0]):
                continue
            names = list(getattr(item, "fixturenames", ()))
            row = getattr(item, "callspec", None) and item.callspec.params.get("row")
            if row is not None and row.fact is not None:
                names.append(row.fact.probe)
            for name in names:
                p = REGISTRY.get(name)
                if p is not None and (host or not p.per_host):
                    wanted.add((name, host if p.per_host else DEPLOYMENT))
        return wanted

    def _labels(self, item: pytest.Item) -> None:
        """Feature (guide section), story (requirement), severity, guide link and host tag from the
        catalogue, as allure-pytest marks: they label every check, also those skipped before any
        fixture runs (waived, not applicable)."""
        cat = self.catalogue
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

    # ------------------------------------------------------------ running a check

    @pytest.hookimpl(wrapper=True, trylast=True)  # inside the other plugins' wrappers (logging's stash)
    def pytest_runtest_setup(self, item: pytest.Item):
        """Waivers and declared non-applicability first; then the fixtures. A finding raised while
        a fixture gathers facts is the check's finding, not an error: it is held back until the
        check's call."""
        ids = requirement_ids(item)
        if ids:
            host = item_host(item)
            why = self.not_applicable(ids, host)
            if why:
                pytest.skip(f"not applicable (declared in the inventory): {why}")
            active, expired = find_waiver(self.waivers, ids, host)
            if expired:
                item.stash[EXPIRED] = "; ".join(
                    f"waiver for {w.requirement} expired on {w.expires} ({w.justification})" for w in expired)
            elif active:
                pytest.skip("waived: " + "; ".join(f"{w.requirement} until {w.expires}: {w.justification}"
                                                   for w in active))
        try:
            return (yield)
        except AssertionError as exc:
            item.stash[FINDING] = exc
            return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function):
        finding = pyfuncitem.stash.get(FINDING, None)
        if finding is not None:
            raise finding
        if "judge" in pyfuncitem.funcargs:  # bound here: see audit.fixtures.judge
            from audit.fixtures import judge_for

            pyfuncitem.funcargs["judge"] = judge_for(pyfuncitem, self)
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        expired = item.stash.get(EXPIRED, None)
        try:
            result = yield
        except AssertionError as exc:
            if expired:
                raise NonCompliant(f"{exc} (and its {expired})") from None
            raise
        if expired:
            pytest.fail(f"{expired}: renew the waiver or fix the deployment (the check itself passed)")
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """A finding or a could-not-audit is reported by its own words: no traceback (pytest would
        read the source of every frame to show one: ~0.2 s per failure). A defect of the suite
        keeps pytest's full report."""
        exc = call.excinfo.value if call.excinfo else None
        if call.when == "collect" or not isinstance(exc, AssertionError | CouldNotAudit):
            return None
        sections = [(f"Captured {key} {when}", content) for when, key, content in item._report_sections]
        return pytest.TestReport(item.nodeid, item.location, dict.fromkeys(item.keywords, 1), "failed",
                                 evidence.mask(str(exc) or type(exc).__name__), call.when, sections,
                                 call.duration, call.start, call.stop, user_properties=item.user_properties)

    @pytest.hookimpl(wrapper=True, trylast=True, specname="pytest_runtest_makereport")
    def pytest_label_report(self, item: pytest.Item, call: pytest.CallInfo):  # (a second makereport)
        """Every report: requirements, host, category by the outcome's type, the message masked."""
        report = yield
        ids = requirement_ids(item)
        if ids:
            report.user_properties.append(("requirements", ",".join(ids)))
            host = item_host(item)
            if host:
                report.user_properties.append(("host", host))
        exc = call.excinfo.value if call.excinfo else None
        category = outcomes.classify(report, exc)
        if category:
            report.user_properties.append(("category", category))
        if report.failed and exc is not None:
            report.user_properties.append(("message", evidence.mask(str(exc) or type(exc).__name__)))
        if report.failed and report.when == "call" and category in (outcomes.NOT_AUDITED, outcomes.SUITE_ERROR):
            report.when = "setup"  # an error, not a failure: terminal, JUnit and Allure say "could not audit"
        if report.failed and isinstance(exc, CouldNotAudit):
            report.longrepr = str(exc)  # the suite's words are the whole story: no traceback
        elif report.longrepr is not None and not isinstance(report.longrepr, tuple | str):
            outcomes.mask_longrepr(report.longrepr, evidence.mask)
        elif isinstance(report.longrepr, str):
            report.longrepr = evidence.mask(report.longrepr)
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.facts.close()
        self.access.close()
