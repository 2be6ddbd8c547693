"""The live rate-limit measurement (audit/probes/nginx.py, `rate_limits`): the accepted burst and
the refill rate of a zone from timed answers, both directions. Captured answers of the reference
deployment (healthy, disturbed by another client of the runner's address, and under drifts), and
the measurement's schedule against NGINX's own arithmetic (ngx_http_limit_req_module) on a
virtual clock."""

from __future__ import annotations

import pytest

from audit.outcomes import CouldNotAudit
from audit.probes.nginx import (
    Timed,
    ZoneMeasurement,
    ZonePlan,
    fit,
    limit_req_status,
    measure,
    measured,
    nginx_rate,
    parse_dump,
)

API = ZonePlan("api", "/api/", "/api/v1/health", "10r/s", 20, 10, (503,))
LOGIN = ZonePlan("login", "/api/v1/auth/login", "/api/v1/auth/login", "5r/m", 3, 1, (503,))
URL = "https://pynomaly.test"


def answers(text: str) -> tuple[Timed, ...]:
    """'SENT/RECEIVED:STATUS ...' (as the checks' evidence shows them) -> answers."""
    out = []
    for item in text.split():
        times, status = item.split(":")
        sent, received = times.split("/")
        out.append(Timed(float(sent), float(received), int(status)))
    return tuple(out)


# ---------------------------------------------------------------- captured answers (reference deployment)

# healthy: 22 accepted back to back (one slot came back meanwhile), then a slot every 100 ms
API_HEALTHY = answers(
    "0.000/0.012:200 0.012/0.027:200 0.027/0.086:200 0.086/0.099:200 0.099/0.110:200 0.110/0.127:200 "
    "0.127/0.149:200 0.149/0.167:200 0.167/0.178:200 0.178/0.183:200 0.183/0.189:200 0.189/0.197:200 "
    "0.197/0.206:200 0.206/0.213:200 0.213/0.243:200 0.243/0.249:200 0.250/0.259:200 0.259/0.275:200 "
    "0.275/0.311:200 0.311/0.331:200 0.331/0.362:200 0.362/0.396:200 0.396/0.469:200 0.469/0.479:200 "
    "0.479/0.486:200 0.486/0.490:503 0.529/0.537:200 0.554/0.557:503 0.579/0.582:503 0.604/0.615:200 "
    "0.630/0.632:503 0.654/0.657:503 0.679/0.682:503 0.708/0.716:200 0.729/0.732:503 0.755/0.762:503 "
    "0.779/0.787:503 0.804/0.811:200 0.830/0.832:503 0.858/0.860:503 0.882/0.884:503 0.904/0.925:200 "
    "0.930/0.943:503 0.954/0.957:503 0.979/0.986:503 1.004/1.011:200 1.029/1.032:503 1.054/1.061:503 "
    "1.079/1.081:503 1.106/1.115:200 1.134/1.136:503 1.157/1.166:503 1.179/1.181:503 1.209/1.215:200 "
    "1.229/1.232:503 1.254/1.258:503 1.279/1.286:503 1.304/1.310:200 1.329/1.331:503 1.355/1.356:503 "
    "1.379/1.381:503 1.404/1.410:200")
# healthy: 4 accepted (405: the app's answer to a GET), the slot back 12.09 s after the first (the
# first answer took 23 ms: it opened the connection; the warm-up GET of /health does that now)
LOGIN_HEALTHY = answers(
    "0.000/0.023:405 0.023/0.027:405 0.027/0.038:405 0.038/0.046:405 0.046/0.048:503 0.131/0.155:503 "
    "0.223/0.226:503 0.406/0.411:503 0.816/0.857:503 1.511/1.514:503 2.982/2.987:503 5.926/5.929:503 "
    "6.072/6.075:503 6.665/6.667:503 7.268/7.271:503 7.929/7.931:503 8.472/8.475:503 9.075/9.078:503 "
    "9.679/9.684:503 10.280/10.285:503 10.891/10.901:503 11.484/11.489:503 12.087/12.095:405")
# another audit on this machine logged in twice ~12 s before the burst (NGINX's error log: the first
# rejection at "excess: 3.016"): only 2 accepted, and a slot back after 0.3 s
LOGIN_DISTURBED = answers("0.000/0.017:405 0.017/0.039:405 0.039/0.041:503 0.095/0.100:503 0.173/0.184:503 "
                          "0.329/0.333:405")


def test_healthy_api_zone_is_the_guides():
    zone = ZoneMeasurement(API, URL, API_HEALTHY)
    assert zone.accepted_first == 25
    assert zone.saturated
    assert zone.bursts() == [20]
    assert zone.burst_is(20)
    assert zone.rate_is(10.0)
    assert zone.as_guide()
    # the other direction: the same answers are not those of another burst or rate
    assert not zone.burst_is(50)
    assert not zone.burst_is(19)
    assert not zone.rate_is(5.0)
    assert not zone.rate_is(100.0)
    assert not zone.rate_is(12.0)


def test_healthy_login_zone_is_the_guides():
    zone = ZoneMeasurement(LOGIN, URL, LOGIN_HEALTHY)
    assert zone.accepted_first == 4
    assert zone.bursts() == [3]
    assert zone.rates() == "4.96 r/m to 5.24 r/m"  # NGINX keeps 5r/m as 4.98 r/m
    assert zone.burst_is(3)
    assert zone.rate_is(nginx_rate("5r/m"))
    assert zone.as_guide()
    assert not zone.burst_is(20)
    assert not zone.burst_is(2)
    assert not zone.rate_is(nginx_rate("5r/s"))
    assert not zone.rate_is(nginx_rate("6r/m"))
    assert not zone.rate_is(nginx_rate("4r/m"))


def test_a_zone_another_client_used_shows_less_headroom():
    """Not the guide's (so `measured` tries once more after a drain): answers cannot tell another
    client's requests from a smaller burst with a fast refill."""
    zone = ZoneMeasurement(LOGIN, URL, LOGIN_DISTURBED)
    assert zone.bursts() == [1]
    assert not zone.burst_is(3)
    assert not zone.rate_is(nginx_rate("5r/m"))
    assert not zone.as_guide()


def test_fit_on_a_hand_computed_example():
    """Burst 1: the 2nd request fits at once, the 3rd is rejected at 0.02 s, again at 1.0 s (less
    than one slot back), and accepted at 1.2 s: 1 / 1.2 <= rate < 1 / 1.0."""
    seen = answers("0/0:200 0.01/0.01:200 0.02/0.02:503 1.0/1.0:503 1.2/1.2:200")
    found = fit(seen, (503,), slack=0)
    assert list(found) == [1]
    assert found[1] == pytest.approx((1 / 1.2, 1.0))


def test_a_zone_that_was_not_empty_or_never_rejects():
    with pytest.raises(CouldNotAudit, match="no leaky bucket that was empty"):
        ZoneMeasurement(LOGIN, URL, answers("0/0.002:503 0.01/0.012:503")).bursts()
    unlimited = ZoneMeasurement(LOGIN, URL, tuple(Timed(i / 100, i / 100 + 0.005, 405) for i in range(LOGIN.cap)))
    assert unlimited.bursts() == f"{LOGIN.cap - 1} or more (no rejection)"
    assert not unlimited.burst_is(3)
    assert not unlimited.rate_is(nginx_rate("5r/m"))
    slow = ZoneMeasurement(LOGIN, URL, tuple(Timed(i * 2.0, i * 2.0 + 1.9, 405) for i in range(6)))
    with pytest.raises(CouldNotAudit, match="not tight"):
        slow.burst_is(3)


def test_rates_and_statuses():
    assert nginx_rate("10r/s") == 10.0
    assert nginx_rate("5r/m") == 0.083  # NGINX keeps thousandths: 5000 // 60
    with pytest.raises(ValueError):
        nginx_rate("5 per minute")
    dump = ("# configuration file /etc/nginx/nginx.conf:\nhttp {\n  limit_req_status 429;\n"
            "  server { listen 443 ssl; location /api/ { limit_req zone=api burst=20 nodelay; }\n"
            "    location /api/v1/auth/login { limit_req zone=login burst=3 nodelay; limit_req_status 444; } }\n}\n")
    config = parse_dump(dump)
    assert limit_req_status(config, "/api/") == 429  # inherited from http
    assert limit_req_status(config, "/api/v1/auth/login") == 444
    assert limit_req_status(parse_dump(dump.replace("  limit_req_status 429;\n", "")), "/api/") == 503


# ---------------------------------------------------------------- the schedule, against NGINX's arithmetic

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class Zone:
    """ngx_http_limit_req_lookup for one key: excess in thousandths, rate in thousandths per
    second, whole milliseconds; a rejection changes nothing. Answers take `took` seconds (a
    rejection 2 ms)."""

    def __init__(self, clock: Clock, rate: str, burst: int, took: float = 0.007) -> None:
        self.clock, self.rate, self.burst, self.took = clock, int(nginx_rate(rate) * 1000), burst * 1000, took
        self.excess, self.last = 0, None

    def use(self, n: int = 1) -> None:
        """Another client of the same address: n requests now."""
        for _ in range(n):
            self.get("/x")

    def get(self, path: str) -> int:
        if path == "/health":  # the warm-up: no limit_req there
            self.clock.now += self.took
            return 200
        now = int(self.clock.now * 1000)
        if self.last is None:
            self.excess, self.last = 0, now
        else:
            excess = max(0, self.excess - self.rate * (now - self.last) // 1000 + 1000)
            if excess > self.burst:
                self.clock.now += 0.002
                return 503
            self.excess, self.last = excess, (now if now != self.last else self.last)
        self.clock.now += self.took
        return 200


@pytest.mark.parametrize(("plan", "rate", "burst", "burst_ok", "rate_ok"), [
    (LOGIN, "5r/m", 3, True, True),
    (LOGIN, "5r/s", 3, True, False),     # rate-login-zone-5r-per-second-live
    (LOGIN, "50r/m", 3, True, False),    # rate-zone-login
    (LOGIN, "5r/m", 20, False, True),    # rate-login-burst-20-live
    (LOGIN, "3r/m", 3, True, False),     # slower than the guide
    (API, "10r/s", 20, True, True),
    (API, "10r/s", 50, False, True),     # rate-api-burst-50-live
    (API, "5r/s", 20, True, False),      # rate-api-zone-5r-per-second-live
    (API, "10r/s", 10, False, True),
])
def test_measurement_tells_burst_and_rate_apart(plan, rate, burst, burst_ok, rate_ok):
    clock = Clock()
    zone = ZoneMeasurement(plan, URL, measure(Zone(clock, rate, burst).get, plan, clock, clock.sleep))
    assert (zone.burst_is(plan.burst), zone.rate_is(plan.per_second)) == (burst_ok, rate_ok), zone.timeline()
    requests, seconds = plan.bound()
    assert len(zone.answers) <= requests
    assert zone.answers[-1].received <= seconds


def test_bounds_of_the_guides_zones():
    """README: what `--opt-in=burst` costs at most per attempt (requests, seconds)."""
    assert API.bound() == (143, 34.4)
    assert LOGIN.bound() == (49, 94.3)
    assert round(LOGIN.drain_s, 1) == 49.2
    assert round(API.drain_s, 1) == 3.1


def test_a_disturbed_attempt_is_measured_again():
    clock = Clock()
    zone = Zone(clock, "5r/m", 3)
    zone.use(2)  # another audit's two logins, 10 s before the (shortened) drain ends
    clock.sleep(10)
    found = measured(zone.get, LOGIN, URL, since=clock() - LOGIN.drain_s, clock=clock, sleep=clock.sleep)
    assert found.as_guide()
    assert len(found.discarded) == 1
    assert ZoneMeasurement(LOGIN, URL, found.discarded[0]).bursts() != [3]
    assert found.cost()["attempts"] == 2
    assert found.cost()["of which waiting for the zone to drain"] > 40


def test_a_drift_keeps_the_first_attempts_verdict():
    clock = Clock()
    found = measured(Zone(clock, "5r/s", 3).get, LOGIN, URL, since=clock() - LOGIN.drain_s, clock=clock,
                     sleep=clock.sleep)
    assert not found.as_guide()
    assert found.cost()["attempts"] == 2
    assert found.burst_is(3)
    assert not found.rate_is(LOGIN.per_second)
