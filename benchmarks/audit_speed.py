"""Benchmark the default audit of the reference deployment (not a test: run it by hand or with tox -e benchmark).

Measures:
- wall time of `pytest --hosts=local` with -n 1, -n 2 and -n auto (default selection: read-only
  checks, no load/burst/writes), and the remote commands and SSH forwards per host;
- the TLS checks' wall time against testssl.sh (Debian package) on the same endpoint, with both
  tools' findings on protocols and TLS 1.2 ciphers side by side;
- the audit's wall time with the 6 reference hosts vs 12: the 12-host inventory lists every
  container twice, under its name and as `<name>-twin` at its second published address
  (provision/topology.py Host.second_ip), so that each of the 12 has its own SSH connection and
  runs every check (6 containers answer twice: the hosts' side of the work doubles as well).

- side by side with another commit (`--only baseline`, default BASELINE: the last commit before the
  architecture of issue 16): that commit is checked out in a temporary git worktree (its `.state`
  is this checkout's, so it audits the same running deployment) and the two audit the deployment
  in turn, `-n auto`: wall time, the runner's CPU, the hosts' CPU, remote commands per host (with
  `-n 1` and `-n 2` too), and the runner's CPU per extra host (6 -> 12 hosts).

Usage: .venv/bin/python benchmarks/audit_speed.py [--repeat N] [--skip-testssl] [--only PART] [--baseline REF]
Writes benchmarks/results.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "inventories" / "local.yml"
sys.path.insert(0, str(ROOT))


def hosts_cpu_seconds() -> float | None:
    """CPU seconds used so far by every Docker container (the hosts' side of an audit: sshd, the
    commands the checks run, PostgreSQL, Redis, NGINX answering): the `docker` cgroup's cpuacct
    (cgroup v1) or the sum of the docker-*.scope cpu.stat (cgroup v2); None when neither is found."""
    v1 = Path("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    scopes = list(Path("/sys/fs/cgroup/system.slice").glob("docker-*.scope/cpu.stat"))
    if not scopes:
        return None
    usec = sum(int(line.split()[1]) for f in scopes for line in f.read_text().splitlines()
               if line.startswith("usage_usec "))
    return usec / 1e6


BASELINE = "e910c50"  # the last commit before the architecture of issue 16
LOGIN_REFILL_S = 60  # NGINX's login zone (5r/m): a run right after another waits 12 s for a slot
_last_end = [0.0]


def timed_audit(*args: str, hosts: str = "local", cwd: Path = ROOT) -> tuple[float, dict, int, float, float | None,
                                                                               list[str]]:
    """Wall seconds, per-host transport stats, the exit code, the runner's CPU seconds (pytest,
    its xdist workers and SSH clients) and the hosts' CPU seconds (every container, including
    what the deployment does meanwhile on its own) of one audit run, and its checks that were
    not green."""
    out = Path(tempfile.mkdtemp(prefix="bench-"))
    cmd = [sys.executable, "-m", "pytest", f"--hosts={hosts}", "-q", "-p", "no:cacheprovider",
           f"--alluredir={out / 'allure-results'}", f"--junitxml={out / 'junit.xml'}", *args]
    time.sleep(max(0.0, _last_end[0] + LOGIN_REFILL_S - time.monotonic()))
    before, hosts_before = resource.getrusage(resource.RUSAGE_CHILDREN), hosts_cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after, hosts_after = resource.getrusage(resource.RUSAGE_CHILDREN), hosts_cpu_seconds()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    hosts_cpu = None if hosts_before is None else hosts_after - hosts_before
    _last_end[0] = time.monotonic()
    stats: dict[str, dict[str, int]] = {}
    for path in (out / "transport-stats").glob("[0-9]*.json"):
        for host, entry in json.loads(path.read_text()).items():
            agg = stats.setdefault(host, {"commands": 0, "forwards": 0})
            for key, value in entry.items():
                agg[key] += value
    not_green = not_green_checks(out / "junit.xml")
    shutil.rmtree(out, ignore_errors=True)
    return wall, stats, proc.returncode, cpu, hosts_cpu, not_green


def not_green_checks(junit: Path) -> list[str]:
    """The checks of a run that failed or could not audit ("file::test[id]: message")."""
    if not junit.exists():
        return []
    out = []
    for case in ET.parse(junit).iter("testcase"):
        for bad in (*case.findall("failure"), *case.findall("error")):
            out.append(f"{case.get('classname')}::{case.get('name')}: {(bad.get('message') or '')[:160]}")
    return out


def bench_workers(repeat: int) -> dict:
    rows = {}
    for workers in ("1", "2", "auto"):
        runs = [timed_audit("-n", workers) for _ in range(repeat)]
        walls = [r[0] for r in runs]
        rows[f"-n {workers}"] = {"wall_s": round(statistics.median(walls), 2), "runs": [round(w, 2) for w in walls],
                                 "exit_codes": [r[2] for r in runs], "per_host": runs[0][1]}
    return rows


def twelve_host_inventory(tree: Path = ROOT) -> tuple[Path, Path]:
    """inventories/local.yml (of the checkout `tree`) with every SSH host listed twice (see the
    module docstring), and its waiver file: each waiver scoped to hosts covers their twins too."""
    from audit.inventory import load_inventory
    from provision.topology import HOSTS

    local = tree / "inventories" / "local.yml"
    twin_ip = {h.public_ip: h.second_ip for h in HOSTS}
    merged = load_inventory(local).hosts
    data = yaml.safe_load(local.read_text())
    twins: dict[str, str] = {}

    def double(group: dict) -> None:
        hosts = group.get("hosts") or {}
        for name, host_vars in list(hosts.items()):
            if (host_vars or {}).get("ansible_connection") == "local":
                continue
            twin = dict(host_vars or {})
            if "ansible_host" in twin:
                twin["ansible_host"] = twin_ip[twin["ansible_host"]]
            # a host's own audit_settings replaces its groups' (as in Ansible): the twin's carry
            # all the original's (db_primary's alembic_head), and, as seen from inside the
            # deployment, the twin is the same machine under the original's name
            own = merged[name].vars.get("audit_settings") or {}
            twin["audit_settings"] = {**own, "internal_address": name}
            hosts[f"{name}-twin"] = twin
            twins[name] = f"{name}-twin"
        for child in (group.get("children") or {}).values():
            double(child or {})

    double(data["all"])
    settings = data["all"]["vars"]
    waivers_in = (local.parent / settings["audit_waivers"]).resolve()
    waivers = yaml.safe_load(waivers_in.read_text())
    for waiver in waivers["waivers"]:
        if waiver.get("hosts"):
            waiver["hosts"] += [twins[h] for h in waiver["hosts"] if h in twins]
    waiver_path = waivers_in.with_name(".bench-12-hosts.yml")
    waiver_path.write_text(yaml.safe_dump(waivers, sort_keys=False))
    settings["audit_waivers"] = os.path.relpath(waiver_path, local.parent)
    path = local.with_name(".bench-12-hosts.yml")  # next to local.yml: its relative paths hold
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, waiver_path


def bench_hosts(repeat: int) -> dict:
    twelve, twin_waivers = twelve_host_inventory()
    try:
        rows = {}
        pairs = [(timed_audit("-n", "auto", hosts="local"), timed_audit("-n", "auto", hosts=str(twelve)))
                 for _ in range(repeat)]  # interleaved: a slow moment of the machine hits both
        for label, runs in (("6 hosts", [p[0] for p in pairs]), ("12 hosts", [p[1] for p in pairs])):
            rows[label] = {"wall_s": round(statistics.median(r[0] for r in runs), 2),
                           "runs": [round(r[0], 2) for r in runs], "exit_codes": [r[2] for r in runs],
                           "not_green": sorted({c for r in runs for c in r[5]}),
                           "hosts_audited": len(runs[0][1]),
                           "runner_cpu_s": round(statistics.median(r[3] for r in runs), 2)}
            if runs[0][4] is not None:
                # both sides share this machine's cores: the wall time cannot be below their sum / cores
                hosts_cpu = statistics.median(r[4] for r in runs)
                rows[label]["hosts_cpu_s"] = round(hosts_cpu, 2)
                rows[label]["cpu_floor_s"] = round((rows[label]["runner_cpu_s"] + hosts_cpu) / os.cpu_count(), 2)
        rows["ratio"] = round(rows["12 hosts"]["wall_s"] / rows["6 hosts"]["wall_s"], 2)
        rows["runner_cpu_ratio"] = round(rows["12 hosts"]["runner_cpu_s"] / rows["6 hosts"]["runner_cpu_s"], 2)
        return rows
    finally:
        twelve.unlink(missing_ok=True)
        twin_waivers.unlink(missing_ok=True)


def baseline_tree(ref: str) -> Path:
    """A worktree of `ref` that audits this checkout's running deployment (shared .state)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True,
                         check=True).stdout.strip()
    tree = Path(tempfile.gettempdir()) / f"audit-baseline-{sha}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), sha], check=True,
                       capture_output=True)
    state = tree / ".state"
    if not state.exists():
        state.symlink_to(ROOT / ".state")
    return tree


def bench_baseline(ref: str, repeat: int) -> dict:
    """This commit against `ref`, in turn, on the same deployment (see the module docstring)."""
    trees = {"baseline": baseline_tree(ref), "this": ROOT}
    rows: dict = {"baseline_ref": ref}
    twelve = {name: twelve_host_inventory(tree) for name, tree in trees.items()}
    try:
        for label in trees:
            rows[label] = {"auto": [], "twelve": []}
        for _ in range(repeat):
            for label, tree in trees.items():  # interleaved: a slow moment of the machine hits both
                rows[label]["auto"].append(timed_audit("-n", "auto", cwd=tree))
                rows[label]["twelve"].append(timed_audit("-n", "auto", hosts=str(twelve[label][0]), cwd=tree))
        for label, tree in trees.items():
            commands = {n: timed_audit("-n", n, cwd=tree)[1] for n in ("1", "2")}
            auto, twelve_runs = rows[label]["auto"], rows[label]["twelve"]
            six_cpu = statistics.median(r[3] for r in auto)
            twelve_cpu = statistics.median(r[3] for r in twelve_runs)
            rows[label] = {
                "wall_s": round(statistics.median(r[0] for r in auto), 2), "walls": [round(r[0], 2) for r in auto],
                "runner_cpu_s": round(six_cpu, 2),
                "hosts_cpu_s": round(statistics.median(r[4] for r in auto), 2) if auto[0][4] is not None else None,
                "exit_codes": [r[2] for r in auto], "not_green": sorted({c for r in auto for c in r[5]}),
                "commands_per_host": {n: {h: v["commands"] for h, v in sorted(c.items())} for n, c in commands.items()},
                "twelve_wall_s": round(statistics.median(r[0] for r in twelve_runs), 2),
                "twelve_runner_cpu_s": round(twelve_cpu, 2),
                "runner_cpu_per_extra_host_s": round((twelve_cpu - six_cpu) / 6, 3),
            }
        return rows
    finally:
        for path, waivers in twelve.values():
            path.unlink(missing_ok=True)
            waivers.unlink(missing_ok=True)


def testssl_findings(address: str, name: str) -> tuple[float, dict]:
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if not exe:
        return float("nan"), {"error": "testssl.sh not installed (apt-get install testssl.sh)"}
    out = Path(tempfile.mkdtemp()) / "testssl.json"
    start = time.perf_counter()
    subprocess.run([exe, "--quiet", "--warnings", "off", "--color", "0", "--ip", address, "-p", "-E",
                    "--jsonfile", str(out), f"https://{name}"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    findings = json.loads(out.read_text()) if out.exists() else []
    protocols = {f["id"]: f["finding"] for f in findings if f["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1",
                                                                          "TLS1_2", "TLS1_3")}
    ciphers = sorted(f["finding"].split()[-1] for f in findings if f["id"].startswith("cipher-tls1_2"))
    return wall, {"protocols": protocols, "tls1_2_ciphers": ciphers}


def sslyze_findings(address: str, name: str) -> tuple[float, dict]:
    from sslyze import ScanCommand, Scanner, ServerNetworkLocation, ServerScanRequest

    start = time.perf_counter()
    scanner = Scanner()
    location = ServerNetworkLocation(hostname=name, port=443, ip_address=address)
    commands = {ScanCommand.SSL_2_0_CIPHER_SUITES, ScanCommand.SSL_3_0_CIPHER_SUITES,
                ScanCommand.TLS_1_0_CIPHER_SUITES, ScanCommand.TLS_1_1_CIPHER_SUITES,
                ScanCommand.TLS_1_2_CIPHER_SUITES, ScanCommand.TLS_1_3_CIPHER_SUITES}
    scanner.queue_scans([ServerScanRequest(server_location=location, scan_commands=commands)])
    result = next(iter(scanner.get_results()))
    wall = time.perf_counter() - start
    attempts = result.scan_result
    protocols = {}
    for label, attr in (("SSLv2", "ssl_2_0_cipher_suites"), ("SSLv3", "ssl_3_0_cipher_suites"),
                        ("TLS1", "tls_1_0_cipher_suites"), ("TLS1_1", "tls_1_1_cipher_suites"),
                        ("TLS1_2", "tls_1_2_cipher_suites"), ("TLS1_3", "tls_1_3_cipher_suites")):
        res = getattr(attempts, attr).result
        protocols[label] = "offered" if res and res.accepted_cipher_suites else "not offered"
    tls12 = sorted(c.cipher_suite.openssl_name for c in attempts.tls_1_2_cipher_suites.result.accepted_cipher_suites)
    return wall, {"protocols": protocols, "tls1_2_ciphers": tls12}


def print_results(results: dict) -> None:
    if "workers" in results:
        print("| run | wall s (median) | commands per host |\n|---|---|---|")
        for key, row in results["workers"].items():
            per_host = {h: v["commands"] for h, v in sorted(row["per_host"].items())}
            print(f"| {key} | {row['wall_s']} | {per_host} |")
    if "tls" in results:
        tls = results["tls"]
        print(f"\nTLS checks (pytest checks/tls.py): {tls['tls_checks_wall_s']} s; "
              f"sslyze scan alone: {tls['sslyze']['wall_s']:.2f} s")
        if "testssl" in tls:
            print(f"testssl.sh -p -E: {tls['testssl']['wall_s']:.1f} s")
            for key in ("protocols", "tls1_2_ciphers"):
                print(f"  {key}: sslyze={tls['sslyze']['findings'][key]} testssl={tls['testssl']['findings'].get(key)}")
    if "baseline" in results:
        b = results["baseline"]
        print(f"\nthis commit against {b['baseline_ref']} (-n auto, medians):")
        print("| | wall s | runner CPU s | hosts' CPU s | runner CPU per extra host s "
              "| commands per host -n 1 / -n 2 |")
        print("|---|---|---|---|---|---|")
        for label in ("baseline", "this"):
            r = b[label]
            print(f"| {label} | {r['wall_s']} | {r['runner_cpu_s']} | {r['hosts_cpu_s']} | "
                  f"{r['runner_cpu_per_extra_host_s']} | {r['commands_per_host']['1']} / "
                  f"{r['commands_per_host']['2']} |")
    if "hosts" in results:
        h = results["hosts"]
        print(f"\n6 hosts: {h['6 hosts']['wall_s']} s, 12 hosts: {h['12 hosts']['wall_s']} s "
              f"(-n auto; ratio {h['ratio']}; exit codes {h['6 hosts']['exit_codes']} / {h['12 hosts']['exit_codes']});"
              f" the runner's CPU: {h['6 hosts']['runner_cpu_s']} s vs {h['12 hosts']['runner_cpu_s']} s"
              f" (ratio {h['runner_cpu_ratio']})")
        if "hosts_cpu_s" in h["6 hosts"]:
            six, twelve = h["6 hosts"], h["12 hosts"]
            print(f"the hosts' CPU (every container): {six['hosts_cpu_s']} s vs {twelve['hosts_cpu_s']} s;"
                  f" CPU floor on {os.cpu_count()} cores ((runner + hosts) / cores):"
                  f" {six['cpu_floor_s']} s vs {twelve['cpu_floor_s']} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-testssl", action="store_true")
    parser.add_argument("--only", choices=("workers", "tls", "hosts", "baseline"), help="one part of the benchmark")
    parser.add_argument("--baseline", default=BASELINE, help=f"the commit to compare with (default {BASELINE})")
    args = parser.parse_args()
    from urllib.parse import urlparse

    from audit.inventory import load_inventory

    inv = load_inventory(LOCAL)
    name = urlparse(inv.setting("audit_public_url")).hostname
    address = (inv.setting("audit_resolve") or {}).get(name, name)
    results_file = ROOT / "benchmarks" / "results.json"
    results: dict = json.loads(results_file.read_text()) if args.only and results_file.exists() else {}
    if args.only in (None, "workers"):
        results["workers"] = bench_workers(args.repeat)
    if args.only in (None, "tls"):
        results["tls"] = {"sslyze": dict(zip(("wall_s", "findings"), sslyze_findings(address, name), strict=True))}
        tls_check = [timed_audit("checks/tls.py")[0] for _ in range(args.repeat)]
        results["tls"]["tls_checks_wall_s"] = round(statistics.median(tls_check), 2)
        if not args.skip_testssl:
            results["tls"]["testssl"] = dict(zip(("wall_s", "findings"), testssl_findings(address, name),
                                                 strict=True))
    if args.only in (None, "hosts"):
        results["hosts"] = bench_hosts(args.repeat)
    if args.only in (None, "baseline"):
        results["baseline"] = bench_baseline(args.baseline, args.repeat)
    results_file.write_text(json.dumps(results, indent=1))
    print_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
