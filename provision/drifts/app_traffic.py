"""Run ON web1 (python3 - MODE < this file) by the monitoring drifts app-errors / app-slow.

The checks CHK-ERROR-RATE / CHK-RESPONSE-TIME-P95 read the last 5 minutes of the app's own
metrics; these drifts change that window with real requests to the three instances:

- errors: while cache1's Redis denies PING to the app's user (ACL SETUSER default -ping, restored
  with +ping right after: ACL LIST is the same again), /health answers 503 at once; ~3% of the
  window, fast (only the error rate breaks).
- slow:   while Redis is paused 1.5 s, /health waits (< the 2 s timeout) -> 200 in ~1.5 s;
  one request per instance per pause, ~12% of the window (only the p95 breaks).
- heal:   fast requests until the window is compliant again (counters cannot be rewound).

Each mode scales to the traffic Prometheus saw in the window, and waits until Prometheus sees
the result (scrape interval 15 s). Redis password: REDISCLI_AUTH in the environment.
"""

import json
import math
import subprocess
import sys
import time
import urllib.parse
import urllib.request

PROM = "http://127.0.0.1:9090/api/v1/query?query="
APP = "http://127.0.0.1:800[0-2]/health"
BATCH = 90  # concurrent requests per pause: under the app's 50 Redis connections per worker
WINDOW = "5m"
ERR = f'sum(increase(http_requests_total{{status=~"5.."}}[{WINDOW}]))'
ALL = f"sum(increase(http_requests_total[{WINDOW}]))"
P95 = f"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[{WINDOW}])))"


def value(query: str) -> float:
    with urllib.request.urlopen(PROM + urllib.parse.quote(query), timeout=10) as resp:
        result = json.load(resp)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def requests(count: int, parallel: bool = False) -> None:
    per = max(1, math.ceil(count / 3))
    par = ["--parallel", "--parallel-max", str(BATCH)] if parallel else []
    subprocess.run(["curl", "-s", *par, f"{APP}?n=[1-{per}]"], stdout=subprocess.DEVNULL, timeout=300)


def redis(*args: str) -> None:
    subprocess.run(["redis-cli", "--no-auth-warning", "-h", "cache1", "-p", "6379", *args],
                   check=True, stdout=subprocess.DEVNULL, timeout=10)


def denied_ping(count: int) -> None:
    redis("ACL", "SETUSER", "default", "-ping")
    try:
        requests(count)
    finally:
        redis("ACL", "SETUSER", "default", "+ping")


def paused(ms: int, count: int) -> None:
    """`count` slow requests: one per instance per Redis pause, each waiting for its end (with many
    parallel requests per pause, most came back fast)."""
    for _ in range(math.ceil(count / 3)):
        redis("CLIENT", "PAUSE", str(ms), "ALL")
        requests(3, parallel=True)


def wait_until(condition, seconds: int = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(3)
    return False


def share() -> tuple[float, float]:
    total = value(ALL)
    return (value(ERR) / total if total else 0.0), value(P95)


def main(mode: str) -> int:
    total = value(ALL)
    if mode == "errors":
        # increase() cannot count a series' first sample: the 5xx series of every instance must be
        # scraped once before the errors that count
        denied_ping(3)
        wait_until(lambda: value('count(http_requests_total{status=~"5.."})') >= 3)
        denied_ping(math.ceil(0.03 * total) + 6)
        ok = wait_until(lambda: share()[0] >= 0.015 and share()[1] < 1)
    elif mode == "slow":
        paused(1500, math.ceil(0.12 * total) + 6)
        ok = wait_until(lambda: share()[1] > 1.1 and share()[0] < 0.005)
    else:  # heal: dilute until both are well inside the thresholds
        ok = False
        for _ in range(8):
            errors, p95 = share()
            if errors < 0.005 and p95 < 0.8:
                ok = True
                break
            requests(max(900, int(value(ALL))))
            time.sleep(17)
    errors, p95 = share()
    print(f"{mode}: error share {errors:.4f}, p95 {p95:.3f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
