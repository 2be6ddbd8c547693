"""PostgreSQL parsing and comparison helpers of checks/test_postgres.py (pure: unit-tested on
captured outputs in tests/unit/test_postgres_parsing.py)."""

from __future__ import annotations

import re
from typing import Any

# pg_settings units -> base unit (bytes for memory, milliseconds for time)
MEMORY = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
TIME = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
AUTH_FAILURE = re.compile(
    r"password authentication failed|not permitted to log in|authentication method requirement"
    r"|no pg_hba\.conf entry|pg_hba\.conf rejects|SCRAM|server requested|does not exist", re.I)


def unit_factor(unit: str | None) -> tuple[str, float]:
    """('memory'|'time'|'', factor to base unit) of a pg_settings unit such as '8kB' or 'ms'."""
    if not unit:
        return "", 1
    m = re.match(r"^(\d*)\s*([A-Za-z]+)$", unit)
    if not m:
        return "", 1
    mult, name = int(m.group(1) or 1), m.group(2)
    if name in MEMORY:
        return "memory", mult * MEMORY[name]
    if name in TIME:
        return "time", mult * TIME[name]
    return "", 1


def normalise(value: Any, unit: str | None) -> Any:
    """A postgresql.conf value as a comparable number in base units (bytes, ms), a float for plain
    numbers, or the lower-cased text (booleans as 'on'/'off').

    A bare number takes the setting's own unit ('wal_keep_size = 64' is 64 MB; pg_settings
    shows shared_buffers as 1048576 with unit 8kB = 8GB)."""
    kind, factor = unit_factor(unit)
    text = str(value).strip().strip("'")
    if isinstance(value, bool):
        return "on" if value else "off"
    m = _UNIT.match(text)
    if m:
        number, suffix = float(m.group(1)), m.group(2)
        if not suffix:
            return number * factor
        table = MEMORY if kind == "memory" else TIME if kind == "time" else {}
        if suffix in table:
            return number * table[suffix]
        return text.lower()
    low = text.lower()
    return {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}.get(low, low)


def human(setting: str, unit: str | None) -> str:
    """pg_settings' (setting, unit) as people write it: ('1048576', '8kB') -> '8GB'."""
    kind, factor = unit_factor(unit)
    try:
        number = float(setting) * factor
    except ValueError:
        return setting
    if kind == "memory":
        for name in ("TB", "GB", "MB", "kB"):
            if number >= MEMORY[name] and number % MEMORY[name] == 0:
                return f"{int(number // MEMORY[name])}{name}"
        return f"{int(number)}B"
    if kind == "time":
        return f"{int(number)}ms"
    return setting


def same_setting(actual_setting: str, unit: str | None, expected: Any) -> bool:
    a, e = normalise(actual_setting, unit), normalise(expected, unit)
    if isinstance(a, float) and isinstance(e, float):
        return abs(a - e) < 1e-9 * max(1.0, abs(e))
    return a == e


def normalise_predicate(text: str | None) -> str:
    """'(is_active = true)' and 'is_active = true' compare equal."""
    if not text:
        return ""
    return re.sub(r"\s+", " ", text.replace("(", " ").replace(")", " ").replace('"', "")).strip().lower()


def index_findings(found: dict | None, expected: dict) -> list[str]:
    """What is wrong with one index of the guide: missing, other table/columns/predicate, invalid."""
    if not found:
        return [f"index {expected['name']} does not exist"]
    problems = []
    if found["table"] != expected["table"]:
        problems.append(f"on table {found['table']}, guide: {expected['table']}")
    if list(found["columns"]) != list(expected["columns"]):
        problems.append(f"columns {found['columns']}, guide: {expected['columns']}")
    if normalise_predicate(found.get("predicate")) != normalise_predicate(expected.get("where")):
        problems.append(f"predicate {found.get('predicate') or 'none'!r}, guide: {expected.get('where') or 'none'!r}")
    if not found["valid"]:
        problems.append("is INVALID (indisvalid = false: a failed CREATE INDEX CONCURRENTLY?)")
    if not found.get("ready", True):
        problems.append("is not ready (indisready = false)")
    return problems


def is_auth_failure(message: str) -> bool:
    """A refused login (wrong password, NOLOGIN, pg_hba) as opposed to a network problem."""
    return bool(AUTH_FAILURE.search(message or ""))
