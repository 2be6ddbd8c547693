"""The drift matrix: the healthy reference deployment is green (apart from documented waivers),
every drift turns exactly its requirements red and nothing else, and heal restores it all.

A drift is audited with the check modules that declare its requirements: the rest of the
deployment is unchanged, so auditing it again proves nothing and costs minutes. Drifts are
applied together and audited in one run ("a batch") when no check function judges a requirement
of two of them and nothing they change is shared (provision/drifts SHARED; ALONE drifts never
share a batch). Every red check is attributed to the drift of the batch that owns it (check
function and requirement, or a check it disturbs: provision/drifts DISTURBS), and a red check
that no drift owns counts against every drift of its module: a drift whose verdict is off in its
batch, or a batch that cannot be applied or healed together, is run again one drift at a time,
and that run decides. The blind spot of batching: a drift that also turns red a check that
another drift of its batch owns is not seen, since that check is expected red; SHARED and ALONE
keep the drifts that could do so apart. Drifts that only opt-in checks see (the live rate limits,
the restore test, the alert round trip: `Drift.opt_in`) are audited with `--opt-in=<marker>`,
each alone; and those checks pass on the healthy deployment of each flavour.

Which drifts: `PYNOMALY_DRIFTS=all` (`tox -e selftest`, nightly) every drift; unset or `ci`
(what `.ci/run` does, to fit its budget) every drift but the ALONE ones (a daemon stopped, a
login or a configuration broken, a certificate the runner cannot verify: 29 on the reference, 2
on the fleet, each an audit of its own and most of them minutes of waiting), the opt-in ones
included. `all`: every drift (230 in 45 audits, 36 of them a drift alone), the FLEET_PATHS drifts on
`fleet` (65 in 11 audits); `quick` one per check module; `a,b` those, one by
one. The healthy full audit runs first and last, which also proves that `heal` restores everything.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pytest

from audit.catalogue import load_catalogue
from audit.matrix import declared_requirements
from provision import drifts
from provision.ui import ProvisionError
from tests.integration.audit_runner import ROOT, run_audit
from tests.integration.flavours import FLAVOURS, FLEET, REFERENCE

CHECKS = declared_requirements()
MAX_BATCH = 24  # drifts applied together: fewer audits (each ~20 s); claims keep them apart
# PYNOMALY_DRIFTS=quick: one drift per check module, a few minutes (for a quick look while developing).
QUICK_DRIFTS = (
    "pg-work-mem", "redis-eviction-policy", "hdr-no-nosniff", "tls-1.1", "env-debug-true",
    "grafana-dashboard-title", "pg-hba-mode", "backup-cron-removed", "ufw-postgres-public",
    "cicd-triggers-develop", "perf-cache-db0-60s", "maint-scripts-not-executable",
    "arch-nginx-bypasses-upstream", "compose-replicas-2",
)


def owners_of(req_ids) -> frozenset[tuple[str, str]]:
    """(check function, requirement) pairs that judge these requirements, the function as
    "checks/x.py::check_y": two drifts may share a function that checks several requirements."""
    return frozenset((f"checks/{owner}".replace("::", ".py::", 1), r)
                     for r in req_ids for owner in CHECKS.get(r, ()))


def modules_for(req_ids) -> frozenset[str]:
    return frozenset(f.split("::")[0] for f, _ in owners_of(req_ids))


def owners_of_test(nodeid: str, test: dict) -> set[tuple[str, str]]:
    return {(function_of(nodeid), r) for r in test["requirements"].split(",") if r}


def function_of(nodeid: str) -> str:
    """checks/x.py::check_y[web1-...] -> checks/x.py::check_y"""
    return nodeid.split("[", 1)[0]


def claims_of(drift) -> frozenset[tuple[str, str]]:
    """The check functions a drift judges in a batch: its requirements', and those of the
    checks that read what it breaks (Drift.disturbs)."""
    return owners_of((*drift.requirements, *drift.disturbs))


# On the fleet flavour the matrix runs the drifts whose checks take a path of their own there
# (issue 18: "at least every drift whose check has a flavour-specific path"): the fleet's own
# (web1's iptables), every drift of the app moved to app1 (Compose, the env file, the app's
# backups and maintenance scripts there), and these, one or a few per path. The sudo path is the
# access layer's, the same for every probe: one drift per probe area that reads what only root
# reads proves it. Every other drift of the fleet is judged over the same protocol on both
# flavours (PostgreSQL's catalog, Redis' runtime, the served certificate, the public HTTP of the
# live rate limits, the runner's copy of the deploy repository), so the reference run proves it.
FLEET_PATHS = frozenset({
    # service manager: units stopped (systemctl; the cluster's redis-server@PORT; Compose's replica)
    "fail2ban-stopped", "redis-cluster-node-stopped", "app-replica-stopped",
    # reloads through the units (a pending reload read from systemd's view of the master)
    "nginx-not-reloaded", "pg-not-reloaded", "fail2ban-not-reloaded", "redis-cluster-not-reloaded",
    "pg-shared-buffers", "prometheus-rule-for",
    # the firewall of the ufw hosts, through sudo
    "ufw-postgres-public", "ufw-redis-cluster-public",
    # root-only reads through sudo, one or two per area
    "nginx-gzip-off", "rate-zone-api", "hdr-no-hsts", "tls-1.1", "pg-replica-trust", "pg-log-connections",
    "redis-port-file", "pg-hba-mode", "fail2ban-default-bantime", "aide-db-missing", "rkhunter-removed",
    "unattended-upgrades-removed", "security-update-pending", "certbot-renew-cron-removed", "backup-cron-removed",
    "backup-db-stale", "backup-db-script-not-executable",
    # the syslog format of the auth log; the Docker engine on app1 through sudo
    "failed-ssh-logins", "app-restart-policy-always",
    # opt-in: the alert round trip stops an exporter's unit; the restore test runs as postgres via sudo
    "alert-relabel-drops-db-alert", "backup-db-newest-not-restorable",
})


@dataclass
class Batch:
    flavour: str = "reference"
    drifts: list = field(default_factory=list)
    owners: set = field(default_factory=set)  # of the drifts' requirements: the modules to audit
    claims: set = field(default_factory=set)

    @property
    def id(self) -> str:
        return ("fleet:" if self.flavour == "fleet" else "") + "+".join(d.name for d in self.drifts)

    @property
    def modules(self) -> set[str]:
        return {f.split("::")[0] for f, _ in self.owners}


# Opt-in drifts are proven with their checks opted in (`--opt-in=<marker>`), each in a batch of
# its own: the live rate limits spend the runner's rate-limit budget, the round trip stops an
# exporter, the restore test writes a scratch database. The load drifts keep their own proof.
OWN_PROOF = {"load": "tests/integration/test_load_gate.py (a short load profile without logins)"}


def provable(drift) -> str | None:
    """Why a drift cannot be proven by this matrix, or None."""
    if drift.opt_in in OWN_PROOF:
        return f"only `--opt-in={drift.opt_in}` checks see it; proved by {OWN_PROOF[drift.opt_in]}"
    unchecked = [r for r in drift.requirements if r not in CHECKS]
    if unchecked:
        return f"no check declares {', '.join(unchecked)}"
    return None


def fits(batch: Batch, drift) -> bool:
    """A drift joins a batch when no check function it judges (claims_of) is another's, nothing
    it changes is shared with one of them, and neither it nor a drift already there has to be
    alone (it disturbs what others check)."""
    return (len(batch.drifts) < MAX_BATCH and not (batch.claims & claims_of(drift))
            and not alone(drift) and not any(alone(d) for d in batch.drifts)
            and not set(drift.touches) & {t for d in batch.drifts for t in d.touches})


def alone(drift) -> bool:
    """ALONE, or seen only by opt-in checks (bursts, writes): never in a batch with another."""
    return drift.alone or bool(drift.opt_in)


def opt_in_args(drift_list) -> list[str]:
    """`--opt-in=a,b` for the drifts' opt-in markers (none: the default checks only)."""
    markers = sorted({d.opt_in for d in drift_list if d.opt_in})
    return [f"--opt-in={','.join(markers)}"] if markers else []


def on_fleet(drift) -> bool:
    """Whether the fleet's matrix proves this drift (FLEET_PATHS)."""
    return drift.name in FLEET_PATHS or drift.flavours == ("fleet",) or bool(drift.fleet_hosts)


def plan(flavour: str = "reference", hardened: bool = False) -> tuple[list[Batch], dict[str, str]]:
    """The batches of one flavour (`hardened`: the advisories' drifts, proven on the reference
    deployment hardened beyond the guide). PYNOMALY_DRIFTS: unset/ci (every drift but the ALONE
    ones), all, quick, or names; PYNOMALY_FLAVOURS: reference,fleet (the default: both) or one."""
    if flavour not in (os.environ.get("PYNOMALY_FLAVOURS") or "reference,fleet").split(","):
        return [], {}
    chosen = os.environ.get("PYNOMALY_DRIFTS", "") or "ci"
    names = None if chosen in ("all", "ci") else set(QUICK_DRIFTS if chosen == "quick" else chosen.split(","))
    one_by_one = chosen not in ("all", "ci", "quick")
    with FLAVOURS[flavour].selected():
        registry = [d for d in drifts.REGISTRY if (names is None or d.name in names)
                    and (flavour == "reference" or on_fleet(d)) and d.hardened == hardened
                    and not (chosen == "ci" and d.alone)]
    skipped = {d.name: why for d in registry if (why := provable(d))}
    batches: list[Batch] = []
    for drift in sorted((d for d in registry if d.name not in skipped),
                        key=lambda d: (-len(owners_of(d.requirements)), d.name)):
        home = None if one_by_one else next((b for b in batches if fits(b, drift)), None)
        if home is None:
            home = Batch(flavour)
            batches.append(home)
        home.drifts.append(drift)
        home.owners |= owners_of(drift.requirements)
        home.claims |= claims_of(drift)
    return batches, skipped


BATCHES, UNPROVABLE = plan("reference")
FLEET_BATCHES, _ = plan("fleet")
HARDENED_BATCHES, _ = plan("reference", hardened=True)


@pytest.fixture
def flavour_up(request):
    """The flavour a test runs on (its `flavour` parameter), stood up."""
    chosen = FLAVOURS[request.param]
    request.getfixturevalue("fleet_deployment" if chosen is FLEET else "deployment")
    return chosen


@pytest.mark.parametrize("flavour_up", ["reference", "fleet"], indirect=True)
def test_healthy_deployment_is_green(flavour_up, tmp_path):
    run = run_audit(flavour_up.inventory, tmp_path)
    assert run.exit_code == 0, run.explain()
    skipped = run.by_outcome("skipped")  # only with a reason a reviewer can read: a waiver or a declaration
    assert all("waived:" in t.get("reason", "") or "not applicable (declared in the inventory)" in t.get("reason", "")
               for t in skipped.values()), skipped


def test_every_drift_names_catalogued_requirements():
    known = set(load_catalogue().by_id)
    assert {d.name: r for d in drifts.REGISTRY for r in d.requirements if r not in known} == {}


def verdict(run, drift, batch: Batch | None = None) -> list[str]:
    """What is wrong with one drift's result: the red set within its modules must be exactly
    its requirements, as non-compliance (failed), not as could-not-audit (error). In a batch,
    the check functions that another drift of the batch owns are that drift's to judge."""
    mods = modules_for(drift.requirements)
    theirs = set().union(*(claims_of(d) for d in batch.drifts if d is not drift)) if batch else set()
    mine = {n: t for n, t in run.tests.items()
            if n.split("::")[0] in mods and not owners_of_test(n, t) & theirs}
    red = {r for t in mine.values() if t["outcome"] in ("failed", "error") for r in t["requirements"].split(",") if r}
    if not drift.hardened:  # on the deployment as the guide builds it, advisories may be red by design
        red = {r for r in red if not r.startswith("ADV-")}
    # a requirement the flavour waives wherever the drift's checks judge it cannot turn red there
    # (the fleet waives the weekly certificate step on app1: waivers/fleet.yml); it is still
    # proven on the other flavour
    judged = {r: [t for t in mine.values() if r in t["requirements"].split(",")] for r in drift.requirements}
    expected = {r for r, tests in judged.items() if not tests or any(t.get("category") != "waived" for t in tests)}
    problems = []
    if red != expected:
        problems.append(f"{drift.name}: expected red {sorted(expected)}, got {sorted(red)}")
    errors = sorted(n for n, t in mine.items() if t["outcome"] == "error")
    if errors:
        problems.append(f"{drift.name}: could-not-audit instead of non-compliance: {errors}")
    return problems


def audit_with(drift_list, modules, out_dir, times: dict | None = None, flavour=REFERENCE):
    """Apply the drifts, audit the modules, heal (on `flavour`). A heal that fails is a defect
    (raised), and the deployment is stood up afresh first, so that the next batches start from a
    healthy one. `times` gets the seconds of each step added ("apply", "audit", "heal")."""
    times = {} if times is None else times
    mark = [time.monotonic()]

    def step(name: str) -> None:
        now = time.monotonic()
        times[name] = times.get(name, 0.0) + now - mark[0]
        mark[0] = now

    with flavour.selected(), drifts.lock():
        try:
            drifts.apply_all([d.name for d in drift_list])
            step("apply")
            with flavour.opt_in_sudo({d.opt_in for d in drift_list if d.opt_in}):
                run = run_audit(flavour.inventory, out_dir, *opt_in_args(drift_list), *sorted(modules))
            step("audit")
            return run
        finally:
            mark[0] = time.monotonic()
            try:
                drifts.heal()
            except ProvisionError:
                flavour.recreate()
                raise
            finally:
                step("heal")


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("batch", BATCHES + FLEET_BATCHES, ids=[b.id for b in BATCHES + FLEET_BATCHES])
def test_drifts_turn_exactly_their_requirements_red(request, tmp_path, batch, capsys):
    flavour = FLAVOURS[batch.flavour]
    request.getfixturevalue("fleet_deployment" if flavour is FLEET else "deployment")
    prove(batch, flavour, tmp_path, capsys)


def prove(batch: Batch, flavour, tmp_path, capsys) -> None:
    """Apply a batch, audit, attribute every red check to its drift; a suspect drift (or a batch
    that cannot be applied or healed together) is run again alone, and that run decides."""
    started, problems, times = time.monotonic(), [], {}
    try:
        run = audit_with(batch.drifts, batch.modules, tmp_path / "batch", times, flavour)
        in_batch = {d: verdict(run, d, batch) for d in batch.drifts} if len(batch.drifts) > 1 else {}
        suspects = [d for d, found in in_batch.items() if found]
        if len(batch.drifts) == 1:  # its own run already: that verdict is final
            problems = [p + "\n" + run.explain() for p in verdict(run, batch.drifts[0])]
    except ProvisionError as exc:  # together they could not be applied or healed: each alone decides
        if len(batch.drifts) == 1:
            raise
        with capsys.disabled():
            print(f"\n  the batch failed ({' | '.join(str(exc).splitlines()[:3])[:300]}): every drift alone",
                  end="")
        suspects, run, in_batch = list(batch.drifts), None, {}
    batch_seconds = time.monotonic() - started
    for drift in suspects:  # the verdict that counts is the drift's own run
        alone = audit_with([drift], modules_for(drift.requirements), tmp_path / drift.name, flavour=flavour)
        mine = verdict(alone, drift)
        problems += [p + "\n" + alone.explain() for p in mine]
        if not mine and run is not None:
            with capsys.disabled():
                print(f"\n  {drift.name}: red only next to {', '.join(d.name for d in batch.drifts if d is not drift)}"
                      f" (an interaction of the batch: {'; '.join(in_batch[drift])}); alone it is exact")
    with capsys.disabled():
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
        print(f"\n  batch of {len(batch.drifts)} drifts over {len(batch.modules)} modules: {batch_seconds:.0f} s"
              f" ({steps}; +{time.monotonic() - started - batch_seconds:.0f} s for {len(suspects)} alone)")
    assert not problems, "\n".join(problems)


def accounted_without_drift(flavour: str) -> dict[str, str]:
    """Automatable requirements the flavour's matrix need not break, with the reason: waived or
    declared not applicable by its inventory (no drift could turn them red there), or proven able
    to fail by raising the inventory's expectation (test_expectations_raised.py)."""
    from audit.inventory import declared_not_applicable, load_inventory
    from audit.waivers import load_waivers
    from tests.integration.test_expectations_raised import RAISED

    inventory = load_inventory(ROOT / "inventories" / f"{FLAVOURS[flavour].inventory}.yml")
    why = {r: "proven by raising its expectation (test_expectations_raised.py)" for r in RAISED}
    declared = dict(inventory.setting("audit_not_applicable") or {})
    catalogue = load_catalogue()
    for req in catalogue.requirements:
        if reason := declared_not_applicable(declared, req.id, req.section):
            why[req.id] = f"declared not applicable: {reason}"
    waivers = inventory.setting("audit_waivers")
    for waiver in load_waivers(waivers) if waivers else []:
        why.setdefault(waiver.requirement, f"waived: {waiver.justification}")
    return why


def test_mutation_score(capsys):
    """Per flavour: automatable requirements with a drift that the matrix can prove. On the
    reference every other automatable requirement is accounted for (waived or not applicable there,
    or proven by a raised expectation): a check no drift can break is a check that cannot fail."""
    catalogue = load_catalogue()
    automatable = {r.id for r in catalogue.requirements if r.automatable}
    unaccounted = set()
    with capsys.disabled():
        for name, batches in (("reference", BATCHES), ("fleet", FLEET_BATCHES)):
            with FLAVOURS[name].selected():
                registry = [d for d in drifts.REGISTRY if name == "reference" or on_fleet(d)]
            covered = {r for d in registry if provable(d) is None for r in d.requirements} & automatable
            missing = sorted(automatable - covered)
            in_run = sum(len(b.drifts) for b in batches)
            print(f"\nmutation score ({name}): {len(covered)}/{len(automatable)} automatable requirements have a "
                  f"drift for the matrix; this run proves {in_run} drifts in {len(batches)} audits; without a drift "
                  f"({len(missing)}): {' '.join(missing)}")
            for d in registry:
                if (why := provable(d)) is not None:
                    print(f"  not in the matrix ({name}): {d.name}: {why}")
            if name == "reference":
                accounted = accounted_without_drift(name)
                for req in missing:
                    print(f"  {req}: {accounted.get(req, 'NOT ACCOUNTED FOR')}"[:200])
                unaccounted = set(missing) - set(accounted)
    assert not unaccounted, f"automatable requirements no drift can break on the reference: {sorted(unaccounted)}"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("flavour_up", ["reference", "fleet"], indirect=True)
def test_opt_in_proofs_pass_on_the_healthy_deployment(flavour_up, tmp_path, capsys):
    """The live rate limits, the restore test and the alert round trip (`--opt-in=burst,writes`)
    pass on the healthy deployment, under its lock (they spend the runner's rate-limit budget and
    stop an exporter: no drift experiment meanwhile)."""
    started = time.monotonic()
    with flavour_up.selected(), drifts.lock(), flavour_up.opt_in_sudo({"burst", "writes"}):
        run = run_audit(flavour_up.inventory, tmp_path, "--opt-in=burst,writes", "-m", "burst or writes")
    assert run.exit_code == 0, run.explain()
    checked = {r for t in run.by_outcome("passed").values() for r in t["requirements"].split(",")}
    assert {"RATE-ZONE-API", "RATE-ZONE-LOGIN", "RATE-API-LIMIT", "RATE-LOGIN-LIMIT", "CHK-BACKUP-INTEGRITY-VERIFIED",
            "CHK-MONITORING-ALERTS-FUNCTIONAL"} <= checked, run.explain()
    with capsys.disabled():
        print(f"\n  opt-in proofs on the healthy {flavour_up.name} deployment: {time.monotonic() - started:.0f} s")


@pytest.mark.parametrize("flavour_up", ["reference", "fleet"], indirect=True)
def test_deployment_is_green_again_after_all_drifts(flavour_up, tmp_path):
    """Every drift was healed: the full audit is as green as at the start."""
    run = run_audit(flavour_up.inventory, tmp_path)
    assert run.exit_code == 0, run.explain()


@pytest.fixture(scope="module")
def hardened_deployment(deployment):
    """The reference deployment hardened beyond the guide (every advisory green), and back."""
    from provision import hardened

    with REFERENCE.selected(), drifts.lock():
        hardened.apply(True)
    yield REFERENCE
    with REFERENCE.selected(), drifts.lock():
        hardened.apply(False)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("batch", HARDENED_BATCHES, ids=[f"hardened:{b.id}" for b in HARDENED_BATCHES])
def test_advisory_drifts_on_a_hardened_deployment(hardened_deployment, tmp_path, batch, capsys):
    """The advisories (ADV-*) are proven like requirements, on a deployment where all of them pass:
    each drift turns exactly its advisories red."""
    prove(batch, hardened_deployment, tmp_path, capsys)
