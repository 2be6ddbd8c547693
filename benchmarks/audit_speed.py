"""Benchmark the default audit of the reference deployment (not a test: run it by hand or with tox -e benchmark).

Measures:
- wall time of `pytest --hosts=local` with -n 1, -n 2 and -n auto (default selection: read-only
  checks, no load/burst/writes), and the remote commands and SSH forwards per host;
- the TLS checks' wall time against testssl.sh (Debian package) on the same endpoint, with both
  tools' findings on protocols and TLS 1.2 ciphers side by side;
- the audit's wall time with the 6 reference hosts vs 12 (the inventory is doubled with a second
  name for each host, published on its own loopback address by `python -m provision scale-hosts`
  when available; otherwise reported as not measured).

Usage: .venv/bin/python benchmarks/audit_speed.py [--repeat N] [--skip-testssl]
Writes benchmarks/results.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed_audit(*args: str) -> tuple[float, dict, int]:
    """Wall seconds, per-host transport stats and the exit code of one audit run."""
    out = Path(tempfile.mkdtemp(prefix="bench-"))
    cmd = [sys.executable, "-m", "pytest", "--hosts=local", "-q", "-p", "no:cacheprovider",
           f"--alluredir={out / 'allure-results'}", f"--junitxml={out / 'junit.xml'}", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    stats: dict[str, dict[str, int]] = {}
    for path in (out / "transport-stats").glob("*.json"):
        for host, entry in json.loads(path.read_text()).items():
            agg = stats.setdefault(host, {"commands": 0, "forwards": 0})
            for key, value in entry.items():
                agg[key] += value
    shutil.rmtree(out, ignore_errors=True)
    return wall, stats, proc.returncode


def bench_workers(repeat: int) -> dict:
    rows = {}
    for workers in ("1", "2", "auto"):
        runs = [timed_audit("-n", workers) for _ in range(repeat)]
        walls = [r[0] for r in runs]
        rows[f"-n {workers}"] = {"wall_s": round(statistics.median(walls), 2), "runs": [round(w, 2) for w in walls],
                                 "exit_codes": [r[2] for r in runs], "per_host": runs[0][1]}
    return rows


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-testssl", action="store_true")
    args = parser.parse_args()
    from audit.http import address_for
    from audit.inventory import load_inventory

    inv = load_inventory(ROOT / "inventories" / "local.yml")
    name, address, _ = address_for(inv.setting("audit_public_url"), inv.setting("audit_resolve"))
    results: dict = {"workers": bench_workers(args.repeat)}
    results["tls"] = {"sslyze": dict(zip(("wall_s", "findings"), sslyze_findings(address, name), strict=True))}
    tls_check = [timed_audit("checks/test_tls.py")[0] for _ in range(args.repeat)]
    results["tls"]["tls_checks_wall_s"] = round(statistics.median(tls_check), 2)
    if not args.skip_testssl:
        results["tls"]["testssl"] = dict(zip(("wall_s", "findings"), testssl_findings(address, name), strict=True))
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=1))
    print("| run | wall s (median) | commands per host |\n|---|---|---|")
    for key, row in results["workers"].items():
        per_host = {h: v["commands"] for h, v in sorted(row["per_host"].items())}
        print(f"| {key} | {row['wall_s']} | {per_host} |")
    tls = results["tls"]
    print(f"\nTLS checks (pytest checks/test_tls.py): {tls['tls_checks_wall_s']} s; "
          f"sslyze scan alone: {tls['sslyze']['wall_s']:.2f} s")
    if "testssl" in tls:
        print(f"testssl.sh -p -E: {tls['testssl']['wall_s']:.1f} s")
        for key in ("protocols", "tls1_2_ciphers"):
            print(f"  {key}: sslyze={tls['sslyze']['findings'][key]} testssl={tls['testssl']['findings'].get(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
