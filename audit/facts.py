"""Facts: what a probe read from a host (or from the deployment as a whole), gathered ONCE per run.

A probe (audit/probes/<area>.py) is a function registered with `@probe`: it reads through the
access layer (audit/access.py) and returns a frozen facts object; checks receive it as a fixture
of the probe's name and only judge it. The `FactStore` of a run keeps every result, failures
(CouldNotAudit) included, in a folder that the xdist controller and all its workers share, with
one lock file per (probe, host): whichever process needs a fact first gathers it, the others wait
for it and read it. After collection each process prefetches, in a thread pool, the facts its
checks will need, slow probes first and every host at once; a process only gathers what no other
process has started, so the remote commands per host are the same whatever `-n` is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.outcomes import CouldNotAudit

DEPLOYMENT = "@deployment"  # the host key of probes that read the deployment as a whole


@dataclass(frozen=True)
class Probe:
    """One kind of fact: `gather(session, host)` (or `gather(session)` when not per host)."""

    name: str
    gather: Callable[..., Any]
    per_host: bool = True
    slow: bool = False  # started first by the prefetcher (scans, probes from several vantage points)
    needs: tuple[str, ...] = ()  # other probes it reads (gathered first)
    quiet: bool = False  # latency-sensitive (a login): gathered before the others start
    on_demand: bool = False  # an opt-in measurement: never prefetched; gathered when a check needs it,
    #                          once this process's prefetch is over (nothing else of the audit in flight)


REGISTRY: dict[str, Probe] = {}


def probe(name: str | None = None, *, per_host: bool = True, slow: bool = False, needs: tuple[str, ...] = (),
          quiet: bool = False, on_demand: bool = False):
    """Register a probe function; the checks get its facts as the fixture `name`."""

    def register(func: Callable) -> Callable:
        key = name or func.__name__
        if key in REGISTRY and REGISTRY[key].gather is not func:
            raise ValueError(f"two probes are called {key!r}")
        REGISTRY[key] = Probe(key, func, per_host, slow, needs, quiet, on_demand)
        return func

    return register


def load_probes() -> dict[str, Probe]:
    """Import every module of audit/probes so that their probes are registered."""
    import importlib
    import pkgutil

    import audit.probes as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"audit.probes.{info.name}")
    return REGISTRY


class FactStore:
    """The facts of one run: gathered once per (probe, host), shared across processes."""

    def __init__(self, folder: Path, session):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.session = session
        self._memo: dict[tuple[str, str], tuple[str, Any]] = {}
        self._memo_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.gathered: dict[tuple[str, str], float] = {}  # what this process gathered, seconds each
        self.started = time.monotonic()

    def _path(self, probe_name: str, host: str) -> Path:
        return self.folder / f"{probe_name}@{host}"

    def get(self, probe_name: str, host: str | None = None) -> Any:
        """The facts of `probe_name` on `host` (None: deployment-wide); re-raises a cached failure."""
        kind, value = self._result(REGISTRY[probe_name], host or DEPLOYMENT, wait=True)
        if kind == "error":
            raise value
        return value

    def _result(self, p: Probe, host: str, wait: bool) -> tuple[str, Any] | None:
        key = (p.name, host)
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]
        path = self._path(p.name, host)
        result = self._read(path)
        if result is None:
            with open(f"{path}.lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    return None  # another process (or thread) gathers it now
                result = self._read(path)
                if result is None:
                    result = self._gather(p, host)
                    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}")
                    tmp.write_bytes(pickle.dumps(result))
                    tmp.replace(path)
        with self._memo_lock:
            self._memo[key] = result
        return result

    def _gather(self, p: Probe, host: str) -> tuple[str, Any]:
        if p.on_demand and self._pool is not None:
            self._pool.shutdown(wait=True)  # the prefetch is over: the measurement runs alone
        started = time.monotonic()
        try:
            for need in p.needs:
                self._result(REGISTRY[need], host if REGISTRY[need].per_host else DEPLOYMENT, wait=True)
            if p.per_host and p.name != "reach":
                self.get("reach", host)
            result = ("ok", self._call(p, host))
        except CouldNotAudit as exc:
            result = ("error", exc)
        except Exception as exc:  # noqa: BLE001 - a probe defect is reported by every check that needs it
            result = ("error", CouldNotAudit(None if host == DEPLOYMENT else host, f"probe {p.name}",
                                             f"the probe failed ({type(exc).__name__}: {exc}): a defect of the suite"))
        self.gathered[(p.name, host)] = time.monotonic() - started
        try:
            pickle.dumps(result)
        except Exception as exc:  # noqa: BLE001 - facts must cross processes
            result = ("error", CouldNotAudit(None, f"probe {p.name}", f"its facts cannot be shared: {exc}"))
        return result

    def _call(self, p: Probe, host: str) -> Any:
        """The probe's facts. pytest sets and deletes PYTEST_CURRENT_TEST around every check while
        the prefetch threads run: a library that walks os.environ meanwhile (requests' proxy lookup)
        can meet the name and not its value, KeyError. That race says nothing of the host: the
        probe runs again (at most twice more)."""
        attempts = 0
        while True:
            try:
                if p.per_host:
                    return p.gather(self.session, self.session.inventory.hosts[host])
                return p.gather(self.session)
            except KeyError as exc:
                attempts += 1
                if exc.args != ("PYTEST_CURRENT_TEST",) or attempts == 3:
                    raise

    @staticmethod
    def _read(path: Path) -> tuple[str, Any] | None:
        try:
            return pickle.loads(path.read_bytes())
        except FileNotFoundError:
            return None

    def prefetch(self, wanted: Iterable[tuple[str, str]], threads: int = 8) -> None:
        """Start gathering `(probe, host)` facts in the background: reachability of every host
        first, then slow probes, then the rest host by host in turn; skip what another process
        is gathering already (its checks will wait for it)."""
        wanted = {k for k in wanted if not REGISTRY[k[0]].on_demand}
        if not wanted:
            return
        hosts = sorted({h for _, h in wanted if h != DEPLOYMENT})
        quiet = sorted(k for k in wanted if REGISTRY[k[0]].quiet)
        order = [("reach", h) for h in hosts]
        rest = sorted(wanted - set(order) - set(quiet), key=lambda k: (
            not REGISTRY[k[0]].slow, k[0] == "reach", hosts.index(k[1]) if k[1] in hosts else -1, k[0]))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="facts")
        # the latency-sensitive reads first, alone, before the audit loads the deployment itself
        for name, host in quiet:
            self._pool.submit(self._quietly, REGISTRY[name], host).result()
        for name, host in order + rest:
            self._pool.submit(self._quietly, REGISTRY[name], host)

    def _quietly(self, p: Probe, host: str) -> None:
        with contextlib.suppress(Exception):
            self._result(p, host, wait=False)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
