"""The load schedule of a run and its live verdicts: pure Python (stdlib only), shared by the
locustfile's load shape on the Locust master and by the runner's offline analysis.

A run is a list of steps. Each step holds a number of users (every user paces itself at
`user_rps` requests/s, or waits between its tasks) for `settle` seconds (spawning, not measured)
then `hold` seconds (measured); after the last step, a short `drain` lets the last
samples reach the master (`DRAIN`). The `gate` profile is one step at the declared production load; the
`step` profile raises the load step by step and stops at the first step that missed a target
(p95, error rate), that could not be measured honestly (generator CPU, NGINX rejections), or at
its bounds (requests, seconds, the per-address limits of the generator's addresses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CPU_LIMIT = 90.0             # % of one core per generator process: above it the generator is the bottleneck
MAX_REJECTED_PERCENT = 5.0   # NGINX limit_req rejections above this share of a step: the step is polluted
ADDRESS_MARGIN = 0.8         # plan each address at 80% of NGINX's per-client API rate (burst absorbs jitter)
DRAIN = 3.0                  # seconds after the last step: its last samples reach the master
API_SHARE = {"anonymous": 0.0, "api": 1.0, "static": 0.0}  # the share of a scenario's requests under /api/


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Step:
    index: int
    users: int
    target_rps: float | None   # None: users that wait between tasks (no pace)
    settle: float
    hold: float

    @property
    def duration(self) -> float:
        return self.settle + self.hold


def api_fraction(weights: dict[str, int]) -> float:
    total = sum(weights.values())
    return sum(w * API_SHARE[k] for k, w in weights.items()) / total if total else 0.0


def users_per_address(users: int, addresses: int) -> int:
    """Locust hands users to its workers in turn: at most this many per worker (address)."""
    return math.ceil(users / max(addresses, 1))


def address_api_rate(users: int, addresses: int, user_rps: float, weights: dict[str, int]) -> float:
    """Worst steady /api/ requests/s of one address (its users all pacing at user_rps)."""
    return users_per_address(users, addresses) * user_rps * api_fraction(weights)


def max_users_for_addresses(addresses: int, user_rps: float, weights: dict[str, int], api_limit: float) -> int:
    """The most users `addresses` client addresses carry under NGINX's per-client API limit."""
    share = api_fraction(weights)
    if share == 0:
        return 10 ** 6
    per_address = math.floor(ADDRESS_MARGIN * api_limit / (user_rps * share))
    return max(per_address, 0) * max(addresses, 1)


def step_plan(start_rps: float, step_rps: float, max_rps: float, max_time: float, settle: float, hold: float,
              user_rps: float, address_users: int) -> tuple[list[Step], str]:
    """Steps of rising load (start, start+step, ...) within the bounds; and which bound ends them."""
    steps: list[Step] = []
    rps, elapsed = start_rps, 0.0
    while True:
        users = math.ceil(rps / user_rps - 1e-9)
        if rps > max_rps + 1e-9:
            why = f"the step bound of {max_rps:g} requests/s"
            break
        if users > address_users:
            why = (f"the per-address limit: {address_users} users ({address_users * user_rps:g} requests/s) is "
                   "the most these client addresses send under NGINX's per-client API limit (add loadgen hosts)")
            break
        if elapsed + settle + hold + settle > max_time + 1e-9:
            why = f"the time bound of {max_time:g} s"
            break
        steps.append(Step(len(steps), users, round(users * user_rps, 3), settle, hold))
        elapsed += settle + hold
        rps += step_rps
    return steps, why


@dataclass
class StepStats:
    """What one step's hold phase measured (live on the master, or offline from the samples)."""

    latencies: list[float] = field(default_factory=list)   # seconds, served requests
    errors: int = 0
    rate_limited: int = 0
    gave_up: int = 0
    cpu: dict[str, float] = field(default_factory=dict)    # worker -> highest CPU %

    def add(self, seconds: float, outcome: str) -> None:
        if outcome == "rate_limited":
            self.rate_limited += 1
        elif outcome == "gave_up":
            self.gave_up += 1
        else:
            self.latencies.append(seconds)
            self.errors += outcome == "error"

    def add_cpu(self, worker: str, percent: float) -> None:
        self.cpu[worker] = max(self.cpu.get(worker, 0.0), percent)

    @property
    def served(self) -> int:
        return len(self.latencies)

    @property
    def requests(self) -> int:
        return self.served + self.rate_limited

    def p95(self) -> float | None:
        return percentile(self.latencies, 0.95)

    def error_percent(self) -> float | None:
        return 100 * self.errors / self.served if self.served else None

    def invalid(self) -> list[str]:
        """Why this step cannot support a verdict (empty: valid)."""
        why = []
        hot = {k: round(v, 1) for k, v in self.cpu.items() if v > CPU_LIMIT}
        if hot:
            shown = ", ".join(f"{k} {v}%" for k, v in hot.items())
            why.append(f"generator CPU above {CPU_LIMIT:.0f}% of a core ({shown}): the generator, not the "
                       "deployment, limited this step")
        if not self.served:
            why.append("no request was served")
        if self.requests and 100 * self.rate_limited / self.requests > MAX_REJECTED_PERCENT:
            why.append(f"{self.rate_limited} of {self.requests} requests rejected by NGINX limit_req "
                       f"(> {MAX_REJECTED_PERCENT:g}%): an address went over its per-client limit")
        if self.gave_up:
            why.append(f"{self.gave_up} API request(s) not sent: no token (login rejected by NGINX's login limit)")
        return why

    def missed(self, max_p95: float, max_error_percent: float) -> list[str]:
        """The targets this step missed (empty: it met both)."""
        why = []
        p95, err = self.p95(), self.error_percent()
        if p95 is not None and p95 >= max_p95:
            why.append(f"p95 {p95:.3f} s >= {max_p95:g} s")
        if err is not None and err >= max_error_percent:
            why.append(f"errors {err:.2f}% >= {max_error_percent:g}%")
        return why


@dataclass
class Decision:
    users: int = 0
    spawn_rate: float = 1.0
    step: int = -1
    phase: str = ""             # settle | hold | drain
    stop: str | None = None     # why the run ends now


class Schedule:
    """Where a run is at time t (seconds since the shape started) and whether it goes on.

    `targets` ({"p95_s", "error_percent"}): stop after the first step that missed one (the step
    profile); None: hold every step whatever it measures (the gate). A step is judged when the
    next phase after its hold is over (its last samples have reached the master by then)."""

    def __init__(self, steps: list[Step], targets: dict[str, float] | None, max_requests: int,
                 max_time: float, spawn_rate: float | None = None):
        self.steps, self.targets = steps, targets
        self.max_requests, self.max_time = max_requests, max_time
        self.spawn_rate = spawn_rate
        self.stats: dict[int, StepStats] = {s.index: StepStats() for s in steps}
        self.requests = 0
        self.stopped: str | None = None
        self.judged: set[int] = set()

    def record(self, step: int, phase: str, seconds: float, outcome: str) -> None:
        self.requests += outcome != "gave_up"
        if phase == "hold" and step in self.stats:
            self.stats[step].add(seconds, outcome)

    def record_cpu(self, worker: str, step: int, phase: str, percent: float) -> None:
        if phase == "hold" and step in self.stats:
            self.stats[step].add_cpu(worker, percent)

    def stop_now(self, why: str) -> None:
        self.stopped = self.stopped or why

    def position(self, t: float) -> tuple[int, str]:
        """(step, phase) at t; (len(steps), "end") after the drain."""
        start = 0.0
        for s in self.steps:
            if t < start + s.settle:
                return s.index, "settle"
            if t < start + s.duration:
                return s.index, "hold"
            start += s.duration
        return (len(self.steps) - 1, "drain") if t < start + DRAIN else (len(self.steps), "end")

    def _judge(self, index: int) -> str | None:
        if index in self.judged or index not in self.stats:
            return None
        self.judged.add(index)
        stats = self.stats[index]
        step = self.steps[index]
        invalid = stats.invalid()
        if invalid:
            return f"step {index + 1} ({step.users} users) could not be measured honestly: {'; '.join(invalid)}"
        if self.targets:
            missed = stats.missed(self.targets["p95_s"], self.targets["error_percent"])
            if missed:
                return f"step {index + 1} ({step.users} users) missed the targets: {', '.join(missed)}"
        return None

    def decide(self, t: float) -> Decision:
        step, phase = self.position(t)
        if self.requests >= self.max_requests:
            self.stop_now(f"the request bound ({self.max_requests} requests) was reached")
        if t >= self.max_time:
            self.stop_now(f"the time bound ({self.max_time:g} s) was reached")
        # a step is judged once the phase after its hold is over: the next step's settle, or the drain
        if phase == "hold" and step > 0 and self.targets is not None:
            why = self._judge(step - 1)
            if why:
                self.stop_now(why)
        if phase == "end" and self.targets is not None:
            why = self._judge(len(self.steps) - 1)
            if why:
                self.stop_now(why)
        if phase == "end":
            self.stop_now("every step ran")
        if self.stopped:
            return Decision(step=step, phase=phase, stop=self.stopped)
        current = self.steps[min(step, len(self.steps) - 1)]
        before = self.steps[current.index - 1].users if current.index > 0 else 0
        rate = self.spawn_rate or max(1.0, (current.users - before) / max(current.settle / 2, 0.5))
        return Decision(users=current.users, spawn_rate=rate, step=current.index, phase=phase)
