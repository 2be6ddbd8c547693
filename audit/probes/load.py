"""Load (opt-in `load`; guide: Monitoring Checklist > Application Health, "Error rate < 1%" and
"Response time < 1s (95th percentile)" under the declared production load, and the capacity).

`run_load` is an action, not a cached fact: one Locust run in distributed mode
(loadtests/runner.py: the master in a subprocess, Locust must not be imported here). Its workers
are the hosts of the inventory group `loadgen` (`SshFleet`: started and stopped over SSH by this
module, one worker per host, each its own client address, reaching the master through a reverse
tunnel of its own SSH connection), or, without such hosts, processes on this machine (one client
address). Afterwards NGINX's own `$request_time` for the same requests is read back from the
first web host (its timing log, by the run's tag) and compared step by step.

A run that lost a worker, got no worker, or could not start one cannot support a verdict
(could not audit, with the cause), and every run checks that no worker process is left on the
loadgen hosts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import shlex
import subprocess
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

from audit.evidence import attach, attach_file
from audit.inventory import Host, LoadProfile
from audit.outcomes import CouldNotAudit
from audit.settings import required
from loadtests import runner  # never imports Locust: it runs in a subprocess

TIMING_LOG = "/var/log/nginx/timing.log"  # reference deployment's extra log (provision/DEVIATIONS.md)
WORK_DIR = "/tmp/pynomaly-load-"           # + the run's tag, on each loadgen host
# what ssh itself says when it never got to run the command
SSH_FAILURES = ("ssh: connect to host", "Connection refused", "Connection timed out", "No route to host",
                "Permission denied", "Host key verification failed", "Could not resolve", "port forwarding failed",
                "Connection closed by", "kex_exchange_identification")
STOP_GRACE = 10                            # seconds for a worker to quit once its SSH session's stdin closes


class LoadRun:
    """What one run measured, shared by the load checks of one profile."""

    def __init__(self, result: runner.LoadResult, nginx: list[dict] | None, nginx_host: str | None):
        self.result, self.plan = result, result.plan
        self.applied = runner.applied_load(result)
        self.table = runner.step_table(result)
        self.failure = runner.run_failure(result)
        self.nginx = None if nginx is None else runner.nginx_per_step(result, nginx, self.table)
        self.nginx_host = nginx_host
        self._attached = False

    # ------------------------------------------------------------ evidence

    def attach(self) -> None:
        """The load applied, the steps, NGINX's view and the run's files (once per run and check)."""
        attach("load applied", self.applied, kind="json")
        attach("steps" if self.plan.kind == "step" else "the held load", self.table, kind="json")
        if self.plan.kind == "step":
            attach("capacity", runner.capacity(self.table), kind="json")
        if self.nginx is not None:
            attach(f"Locust p95 vs NGINX $request_time p95 ({self.nginx_host}:{TIMING_LOG})", self.nginx, kind="json")
        for path in self.result.files():
            if not (path.suffix == ".html" and self._attached):
                attach_file(path)
        self._attached = True

    def need_valid(self) -> None:
        """Could not audit when the run, or the step a verdict rests on, cannot support one."""
        if self.failure:
            raise CouldNotAudit(None, "the load run", self.failure)
        if self.plan.kind == "gate":
            if not self.table:
                raise CouldNotAudit(None, "the load run", f"the declared load was never held "
                                    f"({runner.stop_reason(self.result) or 'no hold phase'})")
            if self.table[0]["invalid"]:
                why = "; ".join(self.table[0]["invalid"])
                raise CouldNotAudit(None, "the load run", f"invalid (no verdict): {why}")

    def declared_rps(self) -> float:
        """The declared production load in requests/s (users waiting `wait`: at their mean pace)."""
        gate, profile = self.plan.profile.gate, self.plan.profile
        return gate.requests_per_s or gate.users * 2 / sum(profile.wait)

    def steps_up_to(self, rps: float, key: str, limit: float) -> list[dict]:
        """The measured steps up to the first at or above `rps`. Could not audit when one of them
        cannot support a verdict, or when the search stopped below `rps` with `key` still on target."""
        rows = []
        for row in self.table:
            rows.append(row)
            if row["target_rps"] >= rps - 1e-9:
                break
        invalid = [r for r in rows if r["invalid"]]
        if invalid:
            r = invalid[0]
            raise CouldNotAudit(None, "the load run", f"step {r['step']} ({r['users']} users, {r['rps']} requests/s) "
                                f"could not be measured honestly: {'; '.join(r['invalid'])}")
        missed = [r for r in rows if r[key] is None or r[key] >= limit]
        if not missed and (not rows or rows[-1]["target_rps"] < rps - 1e-9):
            top = f"{rows[-1]['rps']} requests/s (step {rows[-1]['step']})" if rows else "no step"
            raise CouldNotAudit(None, "the load run", f"the capacity search stopped at {top}, below the declared "
                                f"production load of {rps:g} requests/s: {runner.capacity(self.table)['limited_by']}; "
                                f"stopped because {self.applied['stopped_because']}")
        return rows

    def capacity_words(self) -> str:
        cap = runner.capacity(self.table)
        if cap["capacity_rps"] is None:
            return f"no step met both targets ({cap['limited_by']})"
        return (f"capacity {cap['capacity_rps']} requests/s (step {cap['capacity_step']}, {cap['capacity_users']} "
                f"users; generator CPU {cap['generator_cpu_at_capacity']}), then {cap['limited_by']}")

    def held(self) -> list[dict]:
        """The gate's measured samples: the declared load's hold phase."""
        return runner.hold_samples(self.result.samples, 0)

    def summary(self, quantile: float = 0.95) -> dict[str, dict]:
        self.attach()
        return runner.summarize(self.held(), quantile)

    def stated(self) -> str:
        a = self.applied
        if self.plan.kind == "gate":
            row = self.table[0] if self.table else {"rps": 0, "requests": 0, "hold_s": 0}
            load = (f"{a['declared']} declared ({a['users']} users), held {row['hold_s']} s: {row['requests']} "
                    f"requests = {row['rps']} requests/s")
        else:
            top = max((r["rps"] for r in self.table), default=0)
            load = f"{len(self.table)} steps up to {top} requests/s; {self.capacity_words()}"
        return (f"{self.plan.base_url} from {a['client_addresses']} client address(es) ({a['workers']}): {load}; "
                f"{a['rate_limited']} rejected by NGINX limit_req; stopped: {a['stopped_because']}")


# ---------------------------------------------------------------- remote workers

class SshFleet:
    """One Locust worker per `loadgen` host, over SSH: the files copied in, the worker started on a
    connection of its own whose reverse tunnel reaches the master, its secrets on stdin, and a
    leash (the worker quits when that stdin closes); stopped, then every host checked for leftovers."""

    def __init__(self, session, hosts: list[Host], plan: runner.LoadPlan):
        self.access, self.hosts, self.plan = session.access, hosts, plan
        self.names = [h.name for h in hosts]
        self.dir = WORK_DIR + plan.tag
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.dead: dict[str, str] = {}
        self.unreached: set[str] = set()  # nothing was started there
        self.stopping = False
        self.credentials = ("", "")
        self.started_at = time.monotonic()

    # -- before the run

    def prepare(self) -> None:
        """Every host answers, runs the master's Locust version and has the run's files; in parallel."""
        want = metadata.version("locust")
        files = {name: (runner.HERE / name).read_bytes() for name in runner.WORKER_FILES}
        if self.plan.ca_bundle:
            files["ca.pem"] = Path(self.plan.ca_bundle).read_bytes()
        writes = "; ".join(f"echo {base64.b64encode(data).decode()} | base64 -d > {name}"
                           for name, data in files.items())
        script = (f"set -e; rm -rf {self.dir}; mkdir -m 700 {self.dir}; cd {self.dir}; {writes}; "
                  "python3 -m locust --version 2>&1 | head -1")
        errors: dict[str, BaseException] = {}

        def one(host: Host) -> None:
            try:
                out = self.access.run(host, script, timeout=30)
                found = out.stdout.split()[1] if out.stdout.startswith("locust ") else None
                if out.rc != 0 or found is None:
                    said = (out.stdout + out.stderr).strip()[:200]
                    raise CouldNotAudit(host.name, "Locust (load generator)", f"`python3 -m locust --version` "
                                        f"failed: {said} (install the master's Locust on the loadgen hosts)")
                if found.split(".")[:2] != want.split(".")[:2]:
                    raise CouldNotAudit(host.name, "Locust (load generator)",
                                        f"the worker runs Locust {found}, the master {want}: install the same version")
            except CouldNotAudit as exc:
                errors[host.name] = CouldNotAudit(host.name, f"the load generator ({exc.service})", exc.why)
                self.unreached.add(host.name)

        threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in self.hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if errors:
            first = next(iter(errors.values()))
            more = f" (and {len(errors) - 1} more loadgen host(s))" if len(errors) > 1 else ""
            raise CouldNotAudit(first.host, first.service, first.why + more)

    # -- the run (runner.Fleet)

    def command(self, host: Host, port: int, config: dict) -> str:
        config = {**config, "ca_bundle": f"{self.dir}/ca.pem" if self.plan.ca_bundle else None}
        bound = int(self.plan.max_time + self.plan.profile.worker_wait + 30)
        return ("IFS= read -r LOAD_APP_USERNAME && IFS= read -r LOAD_APP_PASSWORD && export LOAD_APP_USERNAME "
                f"LOAD_APP_PASSWORD LOAD_LEASH=1 LOAD_CONFIG={shlex.quote(json.dumps(config))} && cd {self.dir} && "
                f"exec timeout -k 5 {bound} python3 -m locust -f {self.dir}/locustfile.py --worker "
                f"--master-host 127.0.0.1 --master-port {port} --loglevel WARNING")

    def start(self, master_port: int, config: dict[str, dict]) -> None:
        self.started_at = time.monotonic()
        for host in self.hosts:
            remote = random.randint(20000, 60999)  # the host's end of the tunnel (ExitOnForwardFailure if taken)
            log = Path(tempfile.mkstemp(prefix=f"worker-{host.name}-", suffix=".log", dir=self.plan.out_dir)[1])
            self.logs[host.name] = log
            with log.open("w") as fh:
                proc = self.access.spawn(host, self.command(host, remote, config[host.name]),
                                         reverse=(remote, master_port), log=fh)
            self.procs[host.name] = proc
            with contextlib.suppress(OSError):
                proc.stdin.write(f"{self.credentials[0]}\n{self.credentials[1]}\n")
                proc.stdin.flush()

    def _said(self, name: str) -> str:
        text = self.logs[name].read_text(errors="replace").strip().splitlines() if name in self.logs else []
        useful = [ln for ln in text if ln.strip() and "Warning: Permanently added" not in ln]
        return " ".join(useful[-2:])[-300:]

    def _poll(self) -> None:
        for name, proc in self.procs.items():
            rc = proc.poll()
            if rc is None or name in self.dead:
                continue
            said = self._said(name)
            if rc == 255 and any(m in said for m in SSH_FAILURES):
                self.dead[name] = f"{name} could not be reached over SSH: {said}"
                self.unreached.add(name)
            elif rc != 0:  # 0: it quit when the master told it to (the end of the run)
                how = {137: "killed (SIGKILL)", 143: "terminated (SIGTERM)", 124: "stopped by its time bound",
                       255: "killed by a signal, or its SSH connection was lost"}.get(rc, f"exit {rc}")
                after = time.monotonic() - self.started_at
                self.dead[name] = (f"the worker on {name} ended during the run, {after:.0f} s after it started "
                                   f"({how}){': ' + said if said else ''}")

    def failure(self) -> str | None:
        if not self.stopping:
            self._poll()
        return "; ".join(self.dead.values()) or None

    def stop(self) -> list[str]:
        """End every worker (stdin closed: the leash; then the SSH client), then check each host:
        any process of this run still there is killed and named."""
        self._poll()  # a worker that died before the master ended is a failure, not a stop
        self.stopping = True
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                proc.stdin.close()
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
        return self.left_behind()

    def left_behind(self) -> list[str]:
        """Processes of this run still on the hosts (killed now), or hosts that could not be checked."""
        notes = []
        pattern = f"[l]ocust -f {self.dir}/"  # the worker and its `timeout`, not this shell
        check = (f"pids=$(pgrep -f {shlex.quote(pattern)} || true); "
                 f"if [ -n \"$pids\" ]; then echo LEFT $pids; kill -9 $pids 2>/dev/null; fi; rm -rf {self.dir}")
        for host in self.hosts:
            if host.name in self.unreached:
                continue
            try:
                out = self.access.run(host, check, timeout=20).stdout
            except CouldNotAudit as exc:
                notes.append(f"{host.name}: could not check for leftover workers ({exc.why})")
                continue
            left = [ln for ln in out.splitlines() if ln.startswith("LEFT")]
            if left:
                notes.append(f"{host.name}: worker process(es) {left[0][5:]} still ran after the stop: killed")
        return notes


# ---------------------------------------------------------------- the run

def nginx_lines(session, tag: str) -> tuple[list[dict] | None, str | None]:
    """NGINX's $request_time for this run's requests (by the run's tag in the User-Agent)."""
    webs = session.inventory.hosts_with_role("web")
    if not webs:
        return None, None
    # the log read as root (a fixed command), the run's lines chosen as the audit account
    out = session.access.run(webs[0], f"[ -e {TIMING_LOG} ] || exit 2; $SUDO cat {TIMING_LOG} "
                                      f"| grep -F {shlex.quote(tag)}", timeout=60)
    if out.rc not in (0, 1):  # 2: no such log
        return None, webs[0].name
    return runner.nginx_request_times(out.stdout, tag), webs[0].name


def targets(session) -> dict[str, float]:
    """The catalogue's thresholds (or the inventory's overrides)."""
    p95, errors = session.expected("CHK-RESPONSE-TIME-P95"), session.expected("CHK-ERROR-RATE")
    return {"p95_s": float(p95["max_seconds"]), "error_percent": float(errors["max_percent"]),
            "quantile": float(p95.get("quantile", 0.95))}


def plan_for(session, kind: str, out_dir: Path) -> tuple[runner.LoadPlan, list[Host]]:
    inventory = session.inventory
    hosts = inventory.hosts_with_role("loadgen")
    workers = [runner.WorkerHost(h.name, h.vars.get("audit_resolve") or inventory.setting("audit_resolve") or {})
               for h in hosts]
    plan = runner.LoadPlan(LoadProfile(**(inventory.setting("audit_load") or {})), kind,
                           required(inventory.setting("audit_public_url"), "all.vars.audit_public_url"),
                           inventory.setting("audit_resolve") or {}, inventory.setting("audit_ca_bundle"), out_dir,
                           workers=workers, targets=targets(session))
    return plan, hosts


def run_load(session, kind: str, out_dir: Path) -> LoadRun:
    """One Locust run of the inventory's `audit_load` profile `kind` ("gate" or "step")."""
    plan, hosts = plan_for(session, kind, out_dir)
    try:
        plan.check()
    except ValueError as exc:
        raise CouldNotAudit(None, "the load run", str(exc)) from None
    username, password = session.access.secret("app_username"), session.access.secret("app_password")
    fleet = None
    if hosts:
        fleet = SshFleet(session, hosts, plan)
        fleet.credentials = (username, password)
        try:
            fleet.prepare()
        except CouldNotAudit:
            fleet.stopping = True
            fleet.left_behind()
            raise
    try:
        result = runner.run(plan, username, password, fleet)
    except (runner.InvalidRun, ValueError) as exc:
        raise CouldNotAudit(None, "the load run", str(exc)) from None
    nginx, web = nginx_lines(session, plan.tag)
    return LoadRun(result, nginx, web)
