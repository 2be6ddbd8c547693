"""Progress lines on stderr-free stdout, with elapsed time."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


class ProvisionError(RuntimeError):
    """A failure the CLI reports as one clear line (no traceback)."""


def step(message: str) -> None:
    """Print one progress line prefixed with the elapsed seconds."""
    print(f"[{time.monotonic() - _START:6.1f}s] {message}", flush=True)


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def wait_for(what: str, probe, timeout: float, interval: float = 1.0):
    """Call ``probe()`` until it returns a truthy value; raise after ``timeout`` s.

    ``probe`` may raise; the last error is included in the timeout message.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last})" if last else ""
            raise ProvisionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
