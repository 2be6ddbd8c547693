"""Run ON web1 (python3 - MODE < this file) by the monitoring drifts app-errors / app-slow.

The checks CHK-ERROR-RATE / CHK-RESPONSE-TIME-P95 read the last 5 minutes of the app's own
metrics; these drifts change that window with real requests to the three instances:

- errors: while cache1's Redis denies PING to the app's user (ACL SETUSER default -ping, restored
  with +ping right after: ACL LIST is the same again), /health answers 503 at once; ~2% of the
  window, fast (only the error rate breaks).
- slow:   while Redis is paused 1.7 s, /health waits (< the 2 s timeout) -> 200 in 1.4-1.7 s;
  up to PER_PAUSE requests in flight per pause, ~6.5% of the window (only the p95 breaks).
- heal:   fast requests until the window would stay compliant even once every request older
  than the drift's has left it (counters cannot be rewound).

Each mode reads what Prometheus counted in the window, sends what is missing, and waits until
Prometheus sees the result (scrape interval 15 s), for a bounded number of rounds, so that it
works the same on a quiet window and on one that an earlier heal filled with requests.
Redis password: REDISCLI_AUTH in the environment.
"""

import contextlib
import json
import math
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

PROM = "http://127.0.0.1:9090/api/v1/query?query="
APP = "http://127.0.0.1:800[0-2]/health"
PER_PAUSE = 30  # slow requests per Redis pause (10 per instance, under its 50 Redis connections)
STAGGER = 0.01  # seconds between their starts: 0.3 s of the 1.7 s pause (app timeout 2 s)
WINDOW = "5m"
ALL = f"sum(increase(http_requests_total[{WINDOW}]))"
ERRORS = f'sum(increase(http_requests_total{{status=~"5.."}}[{WINDOW}]))'
BUCKET = "sum(increase(http_request_duration_seconds_bucket{{le=\"{le}\"}}[" + WINDOW + "]))"
P95 = f"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[{WINDOW}])))"
ROUNDS = 4
START = "/var/lib/pynomaly-drift/app-traffic.start"  # when the drift's requests began (heal removes it)


def value(query: str) -> float:
    with urllib.request.urlopen(PROM + urllib.parse.quote(query), timeout=10) as resp:
        result = json.load(resp)["data"]["result"]
    number = float(result[0]["value"][1]) if result else 0.0
    return 0.0 if math.isnan(number) else number


def window() -> dict[str, float]:
    """What Prometheus counted in the window: requests, 5xx, requests slower than 1 s ("slow":
    what breaks the p95) and than 0.5 s ("lagging": what the heal must outweigh, as a request
    of a pause that came back in 0.9 s still pulls the p95 up), and the p95."""
    total = value(ALL)
    slower = {key: max(0.0, total - value(BUCKET.format(le=le))) if total else 0.0
              for key, le in (("slow", "1.0"), ("lagging", "0.5"))}
    return {"total": total, "errors": value(ERRORS), **slower, "p95": value(P95)}


def requests(count: int) -> None:
    """`count` fast requests, one after the other over one connection per instance (one DB
    connection per worker: parallel requests would grow the app's database pools)."""
    per = max(1, math.ceil(count / 3))
    subprocess.run(["curl", "-s", f"{APP}?n=[1-{per}]"], stdout=subprocess.DEVNULL, timeout=300)


def get(url: str) -> None:
    with contextlib.suppress(OSError):  # a 503 or a timeout is still a request the app counted
        urllib.request.urlopen(url, timeout=5).read()


def paused_requests(count: int) -> None:
    """`count` requests in flight together during one Redis pause, started STAGGER apart: each
    /health pings the database (1-2 ms) before it waits on Redis, so the pings do not overlap.
    The threads are up before the pause, so that the last request still waits more than 1 s."""
    go = threading.Event()

    def one(i: int) -> None:
        go.wait(10)
        time.sleep(i * STAGGER)
        get(f"http://127.0.0.1:{8000 + i % 3}/health?slow={i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    redis("CLIENT", "PAUSE", "1700", "ALL")
    go.set()
    for t in threads:
        t.join(15)


def redis(*args: str) -> None:
    subprocess.run(["redis-cli", "--no-auth-warning", "-h", "cache1", "-p", "6379", *args],
                   check=True, stdout=subprocess.DEVNULL, timeout=10)


def denied_ping(count: int) -> None:
    redis("ACL", "SETUSER", "default", "-ping")
    try:
        requests(count)
    finally:
        redis("ACL", "SETUSER", "default", "+ping")


def paused(count: int) -> None:
    """`count` slow requests, PER_PAUSE at a time, each waiting 1.4-1.7 s for the end of a pause."""
    while count > 0:
        paused_requests(min(count, PER_PAUSE))
        count -= PER_PAUSE


def wait_until(condition, seconds: int = 45) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition(window()):
            return True
        time.sleep(3)
    return False


def missing(now: dict, key: str, share: float) -> int:
    """How many more requests of kind `key` make it `share` of the window (a few spare)."""
    return max(0, math.ceil((share * now["total"] - now[key]) / (1 - share))) + 3


def broken(mode: str, now: dict) -> bool:
    if mode == "errors":
        return now["errors"] >= 0.013 * now["total"] and now["p95"] < 1
    # the error rate must stay compliant: an earlier app-errors' heal may leave up to 0.8% of 5xx
    return now["p95"] > 1.1 and now["errors"] < 0.009 * now["total"]


def since_drift() -> float:
    """Requests counted since the drift began (the whole window when that is unknown or older):
    the ones before it leave the window first, so only these may outweigh what it added."""
    try:
        seconds = time.time() - float(Path(START).read_text())
    except (OSError, ValueError):
        return value(ALL)
    if seconds >= 300:
        return value(ALL)
    return value(f"sum(increase(http_requests_total[{max(30, math.ceil(seconds))}s]))")


def diluting(now: dict) -> float:
    """The fast requests since the drift began: the only ones that stay in the window as long as
    the drift's own (the ones before it leave first)."""
    return now["since_drift"] - now["errors"] - now["lagging"]


def healed(now: dict) -> bool:
    """Compliant now, and still once the requests before the drift have left the window."""
    fast = diluting(now)
    return now["errors"] < 0.008 * fast and now["lagging"] < 0.045 * fast and now["p95"] < 0.9


def main(mode: str) -> int:
    ok = False
    if mode != "heal":
        Path(START).parent.mkdir(parents=True, exist_ok=True)
        Path(START).write_text(str(time.time()))
    for _ in range(ROUNDS):
        now = window()
        now["since_drift"] = since_drift() if mode == "heal" else now["total"]
        if mode == "errors":
            if now["errors"] == 0:
                # increase() cannot count a series' first sample: the 5xx series of every
                # instance must be scraped once before the errors that count
                denied_ping(3)
                wait_until(lambda w: value('count(http_requests_total{status=~"5.."})') >= 3)
                now = window()
            denied_ping(missing(now, "errors", 0.02))
        elif mode == "slow":
            paused(missing(now, "slow", 0.065))
        else:
            if healed(now):
                ok = True
                break
            need = max(now["errors"] / 0.007, now["lagging"] / 0.04) - diluting(now)
            requests(max(30, math.ceil(need)))
        if mode != "heal" and wait_until(lambda w: broken(mode, w)):
            ok = True
            break
        if mode == "heal":
            time.sleep(17)  # a scrape of every instance, then a rule evaluation
    now = window()
    if mode == "heal":
        now["since_drift"] = since_drift()
        ok = healed(now)
        if ok:
            Path(START).unlink(missing_ok=True)
    print(f"{mode}: {now['total']:.0f} requests in the window, {now['errors']:.0f} 5xx,"
          f" {now['slow']:.0f} slower than 1 s, {now['lagging']:.0f} than 0.5 s, p95 {now['p95']:.3f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
