"""The framework's parts on their own: the per-run fact store (once per probe and host, shared by
processes, failures cached), the judge (positive evidence only, running vs on disk), the verdict's
completeness rule, typed settings merged key by key, and declared applicability."""

from __future__ import annotations

import multiprocessing
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import audit.probes.host  # noqa: E402,F401 - the `reach` probe every per-host probe waits for
from audit import facts as facts_module
from audit.catalogue import load_catalogue
from audit.facts import DEPLOYMENT, FactStore, probe
from audit.inventory import InventoryError, load_inventory
from audit.judge import ON_DISK, RUNNING, Judge, Reading
from audit.outcomes import COMPLIANT, COULD_NOT_AUDIT, CouldNotAudit, HostUnreachable, NonCompliant, Tally, verdict


@probe("t_counted")
def _counted(session, host):
    with open(session.calls, "a") as fh:
        fh.write(f"{host.name}\n")
    time.sleep(0.3)
    return {"host": host.name}


@probe("t_failing")
def _failing(session, host):
    raise CouldNotAudit(host.name, "PostgreSQL", "refuses connections")


@probe("t_deployment", per_host=False)
def _deployment(session):
    return ("whole",)


_RACES = {"t_env_race": 1, "t_env_always": 9}


@probe("t_env_race", per_host=False)
def _env_race(session):
    """Meets pytest's PYTEST_CURRENT_TEST half deleted (os.environ walked by another thread) once."""
    if _RACES["t_env_race"]:
        _RACES["t_env_race"] -= 1
        raise KeyError("PYTEST_CURRENT_TEST")
    return "read"


@probe("t_env_always", per_host=False)
def _env_always(session):
    raise KeyError("PYTEST_CURRENT_TEST")


@probe("t_key_defect", per_host=False)
def _key_defect(session):
    return {}["missing"]


ACCESS = SimpleNamespace(reach=lambda host: "root")


def _session(tmp_path: Path):
    hosts = {n: SimpleNamespace(name=n) for n in ("web1", "db1")}
    return SimpleNamespace(inventory=SimpleNamespace(hosts=hosts), calls=str(tmp_path / "calls"), access=ACCESS)


def _reader(folder: str, calls: str, out) -> None:
    session = SimpleNamespace(inventory=SimpleNamespace(hosts={"web1": SimpleNamespace(name="web1")}), calls=calls,
                              access=ACCESS)
    out.put(FactStore(Path(folder), session).get("t_counted", "web1"))


def test_a_fact_is_gathered_once_per_run_whatever_the_number_of_processes(tmp_path):
    folder, session = tmp_path / "facts", _session(tmp_path)
    queue = multiprocessing.get_context("fork").Queue()
    workers = [multiprocessing.get_context("fork").Process(target=_reader, args=(str(folder), session.calls, queue))
               for _ in range(3)]
    for w in workers:
        w.start()
    mine = FactStore(folder, session).get("t_counted", "web1")
    results = [queue.get(timeout=20) for _ in workers]
    for w in workers:
        w.join(timeout=20)
    assert results == [mine] * 3 == [{"host": "web1"}] * 3
    assert Path(session.calls).read_text() == "web1\n"  # four processes, one gathering


def test_failures_are_cached_and_raised_to_every_reader(tmp_path):
    store = FactStore(tmp_path / "facts", _session(tmp_path))
    for _ in range(2):
        with pytest.raises(CouldNotAudit, match="could not audit db1: PostgreSQL: refuses connections"):
            store.get("t_failing", "db1")
    again = FactStore(tmp_path / "facts", _session(tmp_path))  # another process of the run
    with pytest.raises(CouldNotAudit):
        again.get("t_failing", "db1")
    assert store.get("t_deployment") == ("whole",)
    assert (tmp_path / "facts" / f"t_deployment@{DEPLOYMENT}").exists()


def test_prefetch_gathers_in_the_background_and_skips_what_others_hold(tmp_path):
    store = FactStore(tmp_path / "facts", _session(tmp_path))
    started = time.monotonic()
    store.prefetch({("t_counted", "web1"), ("t_counted", "db1")})
    assert store.get("t_counted", "db1") == {"host": "db1"}
    assert store.get("t_counted", "web1") == {"host": "web1"}
    store.close()
    assert time.monotonic() - started < 0.55  # the two hosts at once, not one after the other
    assert sorted(Path(store.session.calls).read_text().split()) == ["db1", "web1"]


def test_a_probe_defect_is_reported_as_the_suite_s_own(tmp_path):
    @probe("t_defect")
    def _defect(session, host):
        return None.rstrip()

    with pytest.raises(CouldNotAudit, match="probe t_defect: the probe failed .*a defect of the suite"):
        FactStore(tmp_path / "facts", _session(tmp_path)).get("t_defect", "web1")
    del facts_module.REGISTRY["t_defect"]


def test_outcomes_cross_processes():
    for exc in (CouldNotAudit("db2", "PostgreSQL", "down"), HostUnreachable("db2", "Connection refused")):
        again = pickle.loads(pickle.dumps(exc))
        assert type(again) is type(exc)
        assert str(again) == str(exc)


# ---------------------------------------------------------------- judge

def judge(expected=None, host="web1") -> Judge:
    return Judge(host, ["REQ-X"], lambda _req: expected)


@pytest.mark.parametrize("found", [None, "", [], {}, ()])
def test_nothing_found_is_never_a_pass(found):
    with pytest.raises(NonCompliant, match="web1: rows: nothing found"):
        judge("x").that(True, what="rows", found=found)
    with pytest.raises(NonCompliant):
        judge(found).equal(found, what="value")


def test_judge_equal_and_each_in_both_directions():
    judge("off").equal("off", what="server_tokens", normalise=str.lower)
    with pytest.raises(NonCompliant, match=r"web1: server_tokens is on \(nginx -T\); guide: off"):
        judge("off").equal("on", what="server_tokens", where="nginx -T")
    judge(1).each({"7000": 1, "7001": 1}, lambda v: v == 1, what="nodes")
    with pytest.raises(NonCompliant, match="7001"):
        judge(1).each({"7000": 1, "7001": 0}, lambda v: v == 1, what="nodes")
    with pytest.raises(NonCompliant, match="none found"):
        judge(1).each({}, lambda v: True, what="nodes")
    with pytest.raises(NonCompliant, match="web1: n is x; guide: 1"):
        judge(1).equal("x", what="n", normalise=int)  # cannot be compared: not a pass


def test_sides_say_which_side_differs():
    recorded = []
    j = Judge("cache1", ["REDIS-MAXMEMORY-POLICY"], lambda _r: "allkeys-lru", lambda k, v: recorded.append(v))
    good = Reading("allkeys-lru", "allkeys-lru", "CONFIG GET")
    j.sides({RUNNING: good, ON_DISK: good}, lambda v: v == "allkeys-lru", what="maxmemory-policy")
    assert recorded == ["agree"]
    live = Reading("noeviction", "noeviction", "CONFIG GET maxmemory-policy")
    with pytest.raises(NonCompliant, match="changed live and not persisted"):
        j.sides({RUNNING: live, ON_DISK: good}, lambda v: v == "allkeys-lru", what="maxmemory-policy")
    with pytest.raises(NonCompliant, match="not reloaded yet"):
        j.sides({RUNNING: good, ON_DISK: live}, lambda v: v == "allkeys-lru", what="maxmemory-policy")
    with pytest.raises(NonCompliant, match="nothing found"):
        j.sides({}, lambda v: True, what="maxmemory-policy")
    with pytest.raises(NonCompliant, match="on disk None"):
        j.sides({RUNNING: good, ON_DISK: Reading(None, None, "/etc/redis/redis.conf")}, lambda v: v == "allkeys-lru",
                what="maxmemory-policy")
    assert recorded[-1] == "differ"


# ---------------------------------------------------------------- verdict

def _tally(outcomes: dict[str, str]) -> Tally:
    t = Tally()
    for i, (req, outcome) in enumerate(outcomes.items()):
        t.by_test[f"checks/x.py::check_{i}[h]"] = {"outcome": outcome, "requirements": req, "host": "h",
                                                   "category": None}
    return t


def test_pre_release_needs_every_blocker_and_critical_requirement_audited():
    cat = load_catalogue()
    auto = [r for r in cat.requirements if r.automatable]
    crit = next(r.id for r in auto if r.severity == "critical")
    coverage = {r.id: "audited" for r in auto}
    tally = _tally({crit: "passed"})
    assert verdict(tally, "pre-release", cat, coverage).code == COMPLIANT
    coverage[crit] = "not run"
    result = verdict(tally, "pre-release", cat, coverage)
    assert result.code == COULD_NOT_AUDIT
    assert f"  {crit} (critical): not run" in result.text
    assert f"audited {len(auto) - 1} of {len(auto)}" in result.text
    assert verdict(tally, "nightly", cat, coverage).code == COMPLIANT  # nightly judges what ran
    partial = verdict(tally, "pre-release", cat, coverage, partial="-k x")
    assert partial.code == COMPLIANT
    assert partial.text.startswith("PARTIAL (-k x) COMPLIANT")
    minor = next(r.id for r in auto if r.severity == "minor")
    coverage[crit], coverage[minor] = "audited", "not run"
    assert verdict(tally, "pre-release", cat, coverage).code == COMPLIANT


# ---------------------------------------------------------------- settings and applicability

def test_settings_merge_key_by_key_and_are_typed(tmp_path):
    (tmp_path / "inv.yml").write_text("""
all:
  vars:
    audit_settings: {deployment_network: 10.0.0.0/16}
    audit_not_applicable: {SECURITY-GROUPS-AWS: "no AWS"}
  children:
    redis_cluster:
      vars: {audit_settings: {redis_cluster_ports: [7000, 7001]}}
      hosts:
        cache1: {audit_settings: {internal_address: 10.0.1.100}, audit_not_applicable: {NET-UFW-*: "iptables"}}
""")
    host = load_inventory(tmp_path / "inv.yml").hosts["cache1"]
    assert host.settings.deployment_network == "10.0.0.0/16"
    assert host.settings.redis_cluster_ports == (7000, 7001)
    assert host.settings.internal_address == "10.0.1.100"
    assert host.settings.app_runtime == "docker"  # the one default
    assert host.not_applicable == {"SECURITY-GROUPS-AWS": "no AWS", "NET-UFW-*": "iptables"}
    (tmp_path / "bad.yml").write_text("all: {vars: {audit_settings: {redis_cluster_ports: [seven]}}}")
    with pytest.raises(InventoryError, match=r"bad.yml: all.vars.audit_settings.redis_cluster_ports.0"):
        load_inventory(tmp_path / "bad.yml")
    (tmp_path / "unknown.yml").write_text("all: {vars: {audit_settings: {colour: blue}}}")
    with pytest.raises(InventoryError, match="audit_settings.colour"):
        load_inventory(tmp_path / "unknown.yml")


def test_a_probe_that_meets_pytests_environment_race_runs_again_and_a_real_key_error_is_a_defect(tmp_path):
    store = FactStore(tmp_path / "facts", _session(tmp_path))
    assert store.get("t_env_race") == "read"
    with pytest.raises(CouldNotAudit, match="KeyError: 'PYTEST_CURRENT_TEST'"):
        store.get("t_env_always")  # three times: not a race any more
    with pytest.raises(CouldNotAudit, match="KeyError: 'missing'.*a defect of the suite"):
        store.get("t_key_defect")
