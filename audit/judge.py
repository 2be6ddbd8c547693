"""`judge`: the one helper a check uses to compare what it found with the guide.

A check receives `judge` as a fixture bound to its own item: the host it runs on, its
requirement (from its `requirement` marker) and that requirement's expected value (the
catalogue's, or the inventory's override, shown in the report). One call compares, attaches the
evidence (host, what, where, found, expected) and, when the deployment differs, raises
`NonCompliant` with a message that says the same. Nothing found is never a pass: an empty value,
no rows or no answer is non-compliance unless the check says `allow_empty`.

Running and on-disk state: `judge.sides({"running": Reading(...), "on disk": Reading(...)}, ...)` judges both, shows
both labelled, and says which side differs: a file not yet reloaded ("not reloaded") or a live
change never written down ("not persisted").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from audit import evidence
from audit.outcomes import NonCompliant

GUIDE = object()  # "the requirement's expected value"
RUNNING, ON_DISK = "running", "on disk"
SIDE_LABEL = {RUNNING: "running", ON_DISK: "on disk (takes effect at next reload/restart)"}


def empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | bytes | list | tuple | dict | set | frozenset) and not value)


def short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Judge:
    """Compares for one check item; see the module docstring."""

    def __init__(self, host: str | None, requirements: list[str], expected_of: Callable[[str], Any],
                 record: Callable[[str, str], None] | None = None):
        self.host = host
        self.requirements = requirements
        self._expected_of = expected_of
        self._record = record or (lambda key, value: None)
        self._sides: set[str] = set()  # what each judge.sides call of this check found

    # ------------------------------------------------------------ expected values

    @property
    def expected(self) -> Any:
        """The expected value of the check's one requirement."""
        if len(self.requirements) != 1:
            raise TypeError(f"the check names {len(self.requirements)} requirements: use judge.expected_of(ID)")
        return self._expected_of(self.requirements[0])

    def expected_of(self, req_id: str) -> Any:
        return self._expected_of(req_id)

    # ------------------------------------------------------------ verdicts

    def _where(self) -> str:
        return f"{self.host}: " if self.host else ""

    def fail(self, message: str) -> None:
        """A finding the check words itself (the host is prefixed)."""
        raise NonCompliant(evidence.mask(self._where() + message))

    def that(self, ok: bool, *, what: str, found: Any, expected: Any = GUIDE, where: str | None = None,
             why: str | None = None, allow_empty: bool = False) -> None:
        """The general verdict: `ok` says whether `found` meets `expected` for `what`."""
        want = self.expected if expected is GUIDE else expected
        evidence.attach(what, {"host": self.host, "where": where, "found": found, "expected": want}, kind="json")
        if empty(found) and not allow_empty:
            self.fail(f"{what}: nothing found{f' ({where})' if where else ''}; guide: {short(want)}")
        if not ok:
            at = f" ({where})" if where else ""
            self.fail(f"{what} is {short(found)}{at}; guide: {short(want)}" + (f": {why}" if why else ""))

    def equal(self, found: Any, *, what: str, expected: Any = GUIDE, where: str | None = None,
              normalise: Callable[[Any], Any] = lambda v: v) -> None:
        """found == expected (after `normalise` on both sides)."""
        want = self.expected if expected is GUIDE else expected
        try:
            ok = not empty(found) and normalise(found) == normalise(want)
        except (TypeError, ValueError, AttributeError, KeyError):
            ok = False
        self.that(ok, what=what, found=found, expected=want, where=where)

    def each(self, found: Mapping[str, Any], ok: Callable[[Any], bool], *, what: str, expected: Any = GUIDE,
             where: str | None = None, allow_empty: bool = False) -> None:
        """Every item of `found` (name -> value) meets `ok` (which says what an empty item means);
        no item at all is a finding."""
        want = self.expected if expected is GUIDE else expected
        evidence.attach(what, {"host": self.host, "where": where, "found": dict(found), "expected": want}, kind="json")
        if not found and not allow_empty:
            self.fail(f"{what}: none found{f' ({where})' if where else ''}; guide: {short(want)}")
        bad = {k: v for k, v in found.items() if not _safe(ok, v)}
        if bad:
            at = f" ({where})" if where else ""
            self.fail(f"{what}: {short(bad, 300)}{at}; guide: {short(want)}")

    def sides(self, readings: Mapping[str, Reading], ok: Callable[[Any], bool], *, what: str,
              expected: Any = GUIDE) -> None:
        """The running state and the one on disk (a side that cannot be read on this host is left
        out): both must meet `ok`; the evidence shows both, labelled, and the message says which
        side differs and what that means."""
        want = self.expected if expected is GUIDE else expected
        shown = {SIDE_LABEL.get(side, side): {"value": r.shown, "where": r.where} for side, r in readings.items()}
        evidence.attach(what, {"host": self.host, "found": shown, "expected": want}, kind="json")
        good = {side: not empty(r.value) and bool(_safe(ok, r.value)) for side, r in readings.items()}
        both = RUNNING in readings and ON_DISK in readings
        agree = both and same(readings[RUNNING].value, readings[ON_DISK].value)
        if RUNNING in readings or ON_DISK in readings:  # (a file's mode, a tool's version: neither)
            self._sides.add("agree" if agree else "differ" if both else f"{next(iter(readings))} only")
            self._record("sides", combine_sides(self._sides))  # the last one recorded is the check's
        if not readings:
            self.fail(f"{what}: nothing found; guide: {short(want)}")
        if all(good.values()):
            return
        parts = [f"{side} {short(r.shown)}" + (f" ({r.where})" if r.where else "") for side, r in readings.items()]
        note = ""
        if good.get(RUNNING) and good.get(ON_DISK) is False:
            note = ": the file differs from what runs (not reloaded yet, or the next restart changes it)"
        elif good.get(ON_DISK) and good.get(RUNNING) is False:
            note = ": the running value differs from the file (not reloaded, or changed live and not persisted)"
        self.fail(f"{what}: {'; '.join(parts)}; guide: {short(want)}{note}")


SIDES_ORDER = ("differ", "agree", "running only", "on disk only")


def same(running: Any, on_disk: Any) -> bool:
    """The two sides agree: equal values; for two mappings, equal on the keys both sides read (a
    daemon does not tell everything its file sets: fail2ban's jail port and filter)."""
    if isinstance(running, Mapping) and isinstance(on_disk, Mapping):
        common = set(running) & set(on_disk)
        return bool(common) and all(running[k] == on_disk[k] for k in common)
    return running == on_disk


def combine_sides(kinds) -> str:
    """One word for several `sides` verdicts (the calls of a check, the checks and hosts of a
    requirement): "differ" when any side differs; else the one kind, or the kinds joined with
    " + " ("agree + on disk only": some settings could be read on one side only)."""
    kinds = {k for kind in kinds for k in kind.split(" + ") if k}
    if "differ" in kinds:
        return "differ"
    return " + ".join(sorted(kinds, key=lambda k: (SIDES_ORDER.index(k) if k in SIDES_ORDER else 9, k)))


@dataclass(frozen=True)
class Reading:
    """One side of a setting: as people write it, as it compares, and where it was read."""

    shown: Any
    value: Any
    where: str = ""


def _safe(func: Callable, value: Any) -> Any:
    try:
        return func(value)
    except (TypeError, ValueError, AttributeError, KeyError):
        return False
