"""Progress lines with elapsed time, timed waits, and the one error type of the CLI."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


_SECRETS: set[str] = set()


def register_secrets(values) -> None:
    """Remember secret values so that ``mask`` hides them in any message."""
    _SECRETS.update(v for v in values if len(v) >= 6)


def mask(text: str) -> str:
    for value in _SECRETS:
        text = text.replace(value, "***")
    return text


class ProvisionError(RuntimeError):
    """A failure the CLI reports as one clear line (no traceback); secrets masked."""

    def __init__(self, message: str):
        super().__init__(mask(message))


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
