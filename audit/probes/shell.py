"""Shell scripts and crontabs, as several areas read them (app start script, deploy script, backup
and maintenance scripts, root's crontab for backups, certbot and maintenance): the one parser of
each, pure and unit-tested (tests/unit/test_maintenance_parsing.py, test_edge_tls.py)."""

from __future__ import annotations

import datetime as dt
import re
import shlex

SPECIALS = {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *",
            "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@hourly": "0 * * * *"}


def script_commands(text: str) -> list[str]:
    """A shell script's command lines: comments and blank lines dropped, backslash continuations
    joined, runs of whitespace collapsed."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        out.append(" ".join((pending + line).split()))
        pending = ""
    return out


def words(line: str) -> list[str]:
    """A command line's shell words (quoting does not matter when comparing)."""
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def crontab_entries(text: str, with_user: bool = False) -> list[dict]:
    """Job lines of crontab text as {schedule, command, user}: 5 fields or an @keyword (kept as
    written: same_schedule() compares them); comments, blanks and VAR=value lines dropped. A
    system crontab (/etc/crontab, /etc/cron.d) has a user field (`with_user`); in user crontabs
    a `#@user NAME` line says whose the following lines are (root until one does)."""
    entries, user = [], "root"
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#@user "):
            user = line.split()[1]
            continue
        if not line or line.startswith("#") or re.match(r"^[A-Za-z_]\w*\s*=", line):
            continue
        fields = line.split()
        if fields[0].startswith("@"):
            schedule, rest = fields[0], fields[1:]
        elif len(fields) >= 6:
            schedule, rest = " ".join(fields[:5]), fields[5:]
        else:
            continue
        who = user
        if with_user and rest:
            who, rest = rest[0], rest[1:]
        if rest:
            entries.append({"schedule": schedule, "user": who, "command": " ".join(rest)})
    return entries


def cron_expression(schedule: str) -> str | None:
    """A schedule as five cron fields (@daily -> 0 0 * * *); None for @reboot and the unknown."""
    return SPECIALS.get(schedule) if schedule.startswith("@") else schedule


def same_schedule(actual: str, expected: str, start: dt.datetime | None = None, runs: int = 64) -> bool:
    """Two cron schedules fire at the same times (the next `runs` runs), e.g. @daily == 0 0 * * *."""
    from croniter import croniter

    a, b = cron_expression(actual), cron_expression(expected)
    if not a or not b or not croniter.is_valid(a) or not croniter.is_valid(b):
        return False
    start = start or dt.datetime(2025, 1, 1)
    ia, ib = croniter(a, start), croniter(b, start)
    return all(ia.get_next(dt.datetime) == ib.get_next(dt.datetime) for _ in range(runs))
