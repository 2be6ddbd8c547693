"""Maintenance (guide: Maintenance > Regular Tasks): the daily, weekly and monthly scripts, how
cron runs them (croniter reads the schedule), and what shows that they do their job: no rotated
log older than 30 days, a readable certificate, tables vacuumed and analysed within the month.

- `maintenance` (per app host, ONE round trip): the scripts' modes and text, every crontab
  (root's and the users' in /var/spool/cron, /etc/crontab, /etc/cron.d, the cron.daily/weekly/
  monthly folders), old rotated logs, the certificate's expiry.
- `table_maintenance` (the deployment): pg_stat_user_tables of the primary and the API keys due
  for rotation, one read-only query each as the audit role.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from croniter import croniter

from audit import guide
from audit.facts import probe
from audit.outcomes import CouldNotAudit
from audit.probes.network import MISSING
from audit.probes.shell import cron_expression, crontab_entries, script_commands, words  # noqa: F401
from audit.sudo import grouped

PERIODS = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7), "monthly": dt.timedelta(days=31)}


# ---------------------------------------------------------------- parsing (unit-tested)

def find_line(lines: list[str], *needles: str) -> str | None:
    """The first command line that contains every needle (compared on shell words, so quoting
    does not matter)."""
    for line in lines:
        joined = " ".join(words(line))
        if all(n in joined for n in needles):
            return line
    return None


def disk_alert_percent(lines: list[str]) -> int | None:
    """The usage percentage from which `df -h | grep -E "9[0-9]%" && echo ALERT` fires."""
    for line in lines:
        if not re.search(r"\bdf\b", line) or "ALERT" not in line:
            continue
        m = re.search(r"grep\s+(?:-E\s+)?[\"']?(\d)\[(\d)-9\]%", line)
        if m:
            return int(m.group(1)) * 10 + int(m.group(2))
        m = re.search(r"(?:-ge|>=)\s*(\d{1,3})\b", line)
        if m:
            return int(m.group(1))
    return None


def parse_stat(text: str) -> dict[str, dict]:
    """`PATH MODE x|-` or `PATH missing` lines -> {path: {exists, mode, executable}}."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 2 and f[1] == "missing":
            out[f[0]] = {"exists": False, "executable": False}
        elif len(f) == 3:
            out[f[0]] = {"exists": True, "mode": f[1], "executable": f[2] == "x"}
    return out


def cron_entries(user_crontabs: str, system_crontabs: str) -> list[dict]:
    """Every cron line of a host as {schedule, user, command}: the users' crontabs (`#@user NAME`
    lines say whose) and the system ones (/etc/crontab, /etc/cron.d: with a user field)."""
    return crontab_entries(user_crontabs) + crontab_entries(system_crontabs, with_user=True)


def cadence(schedule: str, start: dt.datetime | None = None) -> str | None:
    """daily / weekly / monthly / other: the largest gap between runs over a year (croniter)."""
    schedule = cron_expression(schedule)
    if not schedule or not croniter.is_valid(schedule):
        return None
    start = start or dt.datetime(2025, 1, 1)
    it = croniter(schedule, start)
    runs: list[dt.datetime] = []
    while len(runs) < 400 and (len(runs) < 3 or runs[-1] < start + dt.timedelta(days=366)):
        runs.append(it.get_next(dt.datetime))
    gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
    if not gaps:
        return None
    longest, shortest = max(gaps), min(gaps)
    if longest <= PERIODS["daily"] and shortest >= dt.timedelta(hours=23):
        return "daily"
    if longest <= PERIODS["weekly"] and shortest >= dt.timedelta(days=6):
        return "weekly"
    if longest <= PERIODS["monthly"] and shortest >= dt.timedelta(days=27):
        return "monthly"
    return "other"


def schedules_of(path: str, entries: list[dict], cron_dirs: str) -> list[tuple[str, str]]:
    """(how, cadence) for every way `path` is scheduled: a cron line running it, or a file in
    /etc/cron.{daily,weekly,monthly} that is (or links to) it."""
    found = []
    for e in entries:
        if path in words(e["command"]) or re.search(rf"(^|[\s;&|]){re.escape(path)}($|[\s;&|>])", e["command"]):
            found.append((f"{e['schedule']} ({e['user']}) {e['command']}", cadence(e["schedule"])))
    for line in cron_dirs.splitlines():
        f = line.split()
        if len(f) == 3 and (f[2] == path or f[1] == path):
            found.append((f"/etc/cron.{f[0]}: {f[1]}", f[0]))
    return found


def stale_tables(rows: list[dict], now: dt.datetime, max_age_days: int) -> dict[str, list[str]]:
    """Every table -> what of its latest (auto)vacuum and (auto)analyze is missing or older than
    max_age_days (an empty list: both within the limit)."""
    limit = now - dt.timedelta(days=max_age_days)
    bad: dict[str, list[str]] = {}
    for r in rows:
        bad[r["relname"]] = []
        for what in ("vacuum", "analyze"):
            times = [t for t in (r.get(f"last_{what}"), r.get(f"last_auto{what}")) if t]
            latest = max(times) if times else None
            if latest is None or latest < limit:
                bad[r["relname"]].append(f"{what}: {latest or 'never'}")
    return bad


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class MaintenanceFacts:
    """The maintenance scripts of an app host and how cron runs them."""

    scripts: dict[str, str]              # period -> the script's text ('' when missing or unreadable)
    stat: dict[str, dict]                # path -> {exists, mode, executable}
    entries: tuple[dict, ...]            # every cron line: {schedule, user, command}
    cron_dirs: str                       # "PERIOD FILE TARGET" lines of /etc/cron.{daily,weekly,monthly}
    old_logs: tuple[str, ...] | None     # rotated logs older than the guide's limit; None: no log folder
    cert: str                            # the certificate the weekly task reads (public name)
    cert_expiry: str                     # `openssl x509 -enddate` of it

    def step(self, period: str, *needles: str) -> str | None:
        """The first command line of the `period` script with every needle (shell words)."""
        return find_line(script_commands(self.scripts.get(period, "")), *needles)

    def disk_alert(self, message: str) -> dict | None:
        """The daily script's disk alert line and the usage from which it fires; None without one."""
        lines = script_commands(self.scripts.get("daily", ""))
        line = find_line(lines, "df", message)
        return line and {"line": line, "alert_percent": disk_alert_percent(lines)}

    def schedules(self, path: str) -> list[tuple[str, str]]:
        return schedules_of(path, list(self.entries), self.cron_dirs)


SCRIPT_PATHS = " ".join([*guide.MAINTENANCE_SCRIPTS.values(), guide.API_KEY_SCRIPT])
# `PATH MODE x|-` or `PATH missing` per script, from one fixed stat as root: a path it did not print
# is missing only when stat said so (a refused sudo prints nothing, and the probe cannot audit)
SCRIPT_MODES = (f"out=$($SUDO stat -c '%n %a %A' {SCRIPT_PATHS} 2>&1); printf '%s\\n' \"$out\" "
                "| grep -qv -e '^/' -e '^stat: ' && exit 0; "
                f"for f in {SCRIPT_PATHS}; do set -- $(printf '%s\\n' \"$out\" | awk -v f=\"$f\" '$1 == f'); "
                "if [ $# -eq 3 ]; then case \"$3\" in ???[xst]*|??????[xst]*|?????????[xst]*) x=x;; *) x=-;; esac; "
                "echo \"$1 $2 $x\"; else echo \"$f missing\"; fi; done")


def commands(public_host: str, max_age_days: int) -> dict[str, str]:
    scripts = guide.MAINTENANCE_SCRIPTS
    cmds = {
        "stat": SCRIPT_MODES,
        # Debian's /var/spool/cron/crontabs/USER, RHEL's /var/spool/cron/USER: one fixed grep as root
        "user_crontabs": "$SUDO grep -r -H -a -e ^ /var/spool/cron 2>/dev/null | " + grouped(
            [(r"^/var/spool/cron/crontabs/[^./][^/]*$", 0), (r"^/var/spool/cron/[^./][^/]*$", 1)], '"#@user " b'),
        "system_crontabs": "$SUDO grep -R -H -a -e ^ /etc/crontab /etc/cron.d 2>/dev/null | " + grouped(
            [(r"^/etc/crontab$", 0), (r"^/etc/cron\.d/[^./][^/]*$", 1)]),
        "cron_dirs": "for d in daily weekly monthly; do for f in /etc/cron.$d/*; do [ -e $f ] && "
                     "echo \"$d $f $(readlink -f $f)\"; done; done; true",
        "old_logs": f"if [ -d {guide.APP_LOG_DIR} ]; then $SUDO find {guide.APP_LOG_DIR} -name '*.log.*' "
                    f"-mtime +{int(max_age_days)}; else echo '{MISSING}'; fi",
        "cert_expiry": f"$SUDO openssl x509 -noout -enddate -in {guide.LETSENCRYPT_LIVE}/{public_host}/cert.pem 2>&1",
    }
    for period, maintenance_script in scripts.items():
        cmds[f"script_{period}"] = f"$SUDO cat {maintenance_script}"
    return cmds


@probe()
def maintenance(session, host) -> MaintenanceFacts:
    """The maintenance scripts, the crontabs, old rotated logs and the certificate (one round trip)."""
    public_host = session.inventory.setting("audit_public_host") or guide.PLACEHOLDER_DOMAIN
    max_age = session.expected("MAINT-WEEKLY-LOG-CLEANUP")["max_age_days"]
    out = session.access.collect(host, commands(public_host, max_age))
    stat = parse_stat(out["stat"])
    if not stat:
        raise CouldNotAudit(host.name, guide.SCRIPTS_DIR, "the scripts' modes could not be read")
    old_logs = None if out["old_logs"] == MISSING else tuple(out["old_logs"].splitlines())
    return MaintenanceFacts(
        scripts={p: out[f"script_{p}"] for p in guide.MAINTENANCE_SCRIPTS}, stat=stat,
        entries=tuple(cron_entries(out["user_crontabs"], out["system_crontabs"])), cron_dirs=out["cron_dirs"],
        old_logs=old_logs, cert=f"{guide.LETSENCRYPT_LIVE}/{public_host}/cert.pem", cert_expiry=out["cert_expiry"])


@dataclass(frozen=True)
class TableMaintenance:
    """pg_stat_user_tables of the primary's database, and its API keys due for rotation."""

    host: str
    database: str
    now: dt.datetime | None
    tables: tuple[dict, ...]
    api_keys: dict[str, int | str]    # active, due (older than 90 days); or why they could not be counted

    def stale(self, max_age_days: int) -> dict[str, list[str]]:
        """Every table -> what of its (auto)vacuum/(auto)analyze is older than max_age_days."""
        return stale_tables(list(self.tables), self.now, max_age_days) if self.tables else {}


@probe(per_host=False)
def table_maintenance(session) -> TableMaintenance:
    """The primary's table statistics (VACUUM/ANALYZE times) and API keys, read-only."""
    primaries = session.inventory.hosts_with_role("db_primary")
    if not primaries:
        raise CouldNotAudit(None, "PostgreSQL table statistics", "no host in inventory group db_primary")
    host, database = primaries[0], session.expected("MAINT-MONTHLY-VACUUM-ANALYZE")["database"]
    session.facts.get("reach", host.name)
    rows = session.access.query(host, "SELECT relname, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze, "
                                      "now() AS now FROM pg_stat_user_tables ORDER BY relname", database=database)
    try:
        keys = session.access.query(host, "SELECT count(*) FILTER (WHERE is_active) AS active, count(*) FILTER "
                                          "(WHERE is_active AND created_at < now() - interval '90 days') AS due "
                                          "FROM api_keys", database=database)[0]
    except CouldNotAudit as exc:
        keys = {"not counted": exc.why}
    return TableMaintenance(host.name, database, rows[0]["now"] if rows else None,
                            tuple({k: v for k, v in r.items() if k != "now"} for r in rows), dict(keys))
