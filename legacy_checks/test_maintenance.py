"""Guide: Maintenance > Regular Tasks - the daily, weekly and monthly scripts, their schedule
(croniter) and what shows that they do their job (old logs gone, certificate readable, tables
vacuumed and analysed within the month).

Everything read from an app host is ONE collect group ("maintenance"); the database figures
come from one read-only query on the primary (audit role, through the SSH tunnel).
"""

from __future__ import annotations

import datetime as dt
import re
import shlex

import pytest
from croniter import croniter

from audit import services
from audit.evidence import attach, compare, mask_assignments
from audit.hostparse import script_commands
from audit.marks import per_requirement

SCRIPTS = {
    "daily": "/opt/pynomaly/scripts/daily_maintenance.sh",
    "weekly": "/opt/pynomaly/scripts/weekly_maintenance.sh",
    "monthly": "/opt/pynomaly/scripts/monthly_maintenance.sh",
}
API_KEY_SCRIPT = "/opt/pynomaly/scripts/audit_api_keys.py"
LOG_DIR = "/var/log/pynomaly"


def _commands(public_host: str) -> dict[str, str]:
    paths = " ".join([*SCRIPTS.values(), API_KEY_SCRIPT])
    cmds = {
        "stat": f"for f in {paths}; do if [ -e $f ]; then printf '%s %s %s\\n' $f "
                "$(stat -c %a $f) $([ -x $f ] && echo x || echo -); else echo $f missing; fi; done",
        "user_crontabs": "for f in /var/spool/cron/crontabs/*; do [ -f $f ] && "
                         "{ echo \"#@user ${f##*/}\"; cat $f; }; done 2>/dev/null; true",
        "system_crontabs": "cat /etc/crontab /etc/cron.d/* 2>/dev/null; true",
        "cron_dirs": "for d in daily weekly monthly; do for f in /etc/cron.$d/*; do [ -e $f ] && "
                     "echo \"$d $f $(readlink -f $f)\"; done; done 2>/dev/null; true",
        "old_logs": f"find {LOG_DIR} -name '*.log.*' -mtime +30 2>/dev/null; true",
        "cert_expiry": f"openssl x509 -noout -enddate -in /etc/letsencrypt/live/{public_host}/cert.pem "
                       "2>&1; true",
    }
    for name, path in SCRIPTS.items():
        cmds[f"script_{name}"] = f"cat {path} 2>/dev/null; true"
    return cmds


@pytest.fixture
def maint(server, inventory) -> dict[str, str]:
    return server.collect("maintenance", _commands(inventory.setting("audit_public_host", "your-domain.com")))


# ---------------------------------------------------------------- parsing (unit-tested)

def words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


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
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 2 and f[1] == "missing":
            out[f[0]] = {"exists": False, "executable": False}
        elif len(f) == 3:
            out[f[0]] = {"exists": True, "mode": f[1], "executable": f[2] == "x"}
    return out


def cron_entries(user_crontabs: str, system_crontabs: str) -> list[dict]:
    """Cron lines as {schedule, user, command}; user crontabs start with `#@user NAME`."""
    entries, user = [], "root"
    specials = {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
                "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
                "@hourly": "0 * * * *"}

    def parse(text: str, with_user: bool) -> None:
        nonlocal user
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("#@user "):
                user = line.split()[1]
                continue
            if not line or line.startswith("#") or re.match(r"^[A-Za-z_]\w*\s*=", line):
                continue
            f = line.split()
            if f[0].startswith("@"):
                if f[0] not in specials:
                    continue
                schedule, rest = specials[f[0]], f[1:]
            else:
                if len(f) < 6:
                    continue
                schedule, rest = " ".join(f[:5]), f[5:]
            who = user
            if with_user and rest:
                who, rest = rest[0], rest[1:]
            entries.append({"schedule": schedule, "user": who, "command": " ".join(rest)})

    parse(user_crontabs, with_user=False)
    parse(system_crontabs, with_user=True)
    return entries


PERIODS = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7), "monthly": dt.timedelta(days=31)}


def cadence(schedule: str, start: dt.datetime | None = None) -> str | None:
    """daily / weekly / monthly / other: the largest gap between runs over a year (croniter)."""
    if not croniter.is_valid(schedule):
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
    """Tables whose latest (auto)vacuum or (auto)analyze is missing or older than max_age_days."""
    limit = now - dt.timedelta(days=max_age_days)
    bad: dict[str, list[str]] = {}
    for r in rows:
        for what in ("vacuum", "analyze"):
            times = [t for t in (r.get(f"last_{what}"), r.get(f"last_auto{what}")) if t]
            latest = max(times) if times else None
            if latest is None or latest < limit:
                bad.setdefault(r["relname"], []).append(f"{what}: {latest or 'never'}")
    return bad


# ---------------------------------------------------------------- scripts present and scheduled

@per_requirement("MAINT-DAILY-SCRIPT", "MAINT-WEEKLY-SCRIPT", "MAINT-MONTHLY-SCRIPT")
@pytest.mark.roles("app")
def test_maintenance_script_is_executable(server, maint, expected, req_id):
    """"/opt/pynomaly/scripts/{daily,weekly,monthly}_maintenance.sh" (Maintenance > Regular Tasks)."""
    path = expected(req_id)
    stat = parse_stat(maint["stat"]).get(path, {"exists": False, "executable": False})
    compare(path, stat, {"exists": True, "executable": True})
    assert stat["exists"], f"{server.name}: {path} does not exist"
    assert stat["executable"], f"{server.name}: {path} is not executable (mode {stat.get('mode')})"


@per_requirement("MAINT-DAILY-SCHEDULED", "MAINT-WEEKLY-SCHEDULED", "MAINT-MONTHLY-SCHEDULED")
@pytest.mark.roles("app")
def test_maintenance_script_is_scheduled(server, maint, expected, req_id):
    """Daily, Weekly and Monthly Tasks: each script runs at its cadence (cron, read with croniter)."""
    period = expected(req_id)["period"]
    path = SCRIPTS[period]
    entries = cron_entries(maint["user_crontabs"], maint["system_crontabs"])
    found = schedules_of(path, entries, maint["cron_dirs"])
    attach("crontabs", mask_assignments(maint["user_crontabs"] + "\n" + maint["system_crontabs"]))
    compare(f"schedule of {path}", [{"how": h, "cadence": c} for h, c in found], {"cadence": period})
    assert found, f"{server.name}: {path} is not scheduled (no cron entry runs it)"
    assert any(c == period for _, c in found), (
        f"{server.name}: {path} runs {', '.join(f'{c} ({h})' for h, c in found)}, guide: {period}")


# ---------------------------------------------------------------- what each script does

def _lines(maint: dict, period: str) -> list[str]:
    text = maint[f"script_{period}"]
    attach(f"{period}_maintenance.sh", mask_assignments(text))
    return script_commands(text)


def assert_step(server, maint, period: str, what: str, *needles: str) -> str:
    line = find_line(_lines(maint, period), *needles)
    compare(what, line, " ... ".join(needles))
    assert line, f"{server.name}: {SCRIPTS[period]} does not {what} (no line with {' / '.join(needles)})"
    return line


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-DAILY-DISK-ALERT")
def test_daily_disk_alert(server, maint, expected):
    """"df -h | grep -E "9[0-9]%" && echo "ALERT: Disk space critical"" (Daily Tasks)."""
    want = expected("MAINT-DAILY-DISK-ALERT")
    lines = _lines(maint, "daily")
    percent = disk_alert_percent(lines)
    line = find_line(lines, "df", want["message"])
    compare("disk alert", {"line": line, "alert_percent": percent}, want)
    assert line, f"{server.name}: daily_maintenance.sh has no disk alert ({want['message']!r})"
    assert percent is not None, f"{server.name}: the disk alert's threshold cannot be read: {line!r}"
    assert percent <= want["alert_percent"], (
        f"{server.name}: the disk alert fires from {percent}% full, guide: {want['alert_percent']}%")


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-DAILY-ERROR-LOG-SCAN")
def test_daily_error_log_scan(server, maint, expected):
    """"grep -i error /var/log/pynomaly/error.log | tail -10" (Daily Tasks)."""
    assert_step(server, maint, "daily", "scan the error log", "grep", "error",
                expected("MAINT-DAILY-ERROR-LOG-SCAN"))


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-DAILY-BACKUP-CHECK")
def test_daily_backup_check(server, maint, expected):
    """"test -f /opt/backups/postgres/pynomaly_backup_$(date +%Y%m%d)*.sql.gz || echo "ALERT: No
    backup found for today"" (Daily Tasks)."""
    want = expected("MAINT-DAILY-BACKUP-CHECK")
    assert_step(server, maint, "daily", "verify today's backup", want["pattern"], want["message"])


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-DAILY-HEALTH-CHECK")
def test_daily_health_check(server, maint, expected):
    """"curl -f http://localhost/health || echo "ALERT: Health check failed"" (Daily Tasks)."""
    want = expected("MAINT-DAILY-HEALTH-CHECK")
    assert_step(server, maint, "daily", "alert on a failed health check", want["command"], want["message"])


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-WEEKLY-APT-UPGRADABLE")
def test_weekly_lists_upgradable_packages(server, maint, expected):
    """"sudo apt update && sudo apt list --upgradable" (Weekly Tasks)."""
    assert_step(server, maint, "weekly", "list upgradable packages", *expected("MAINT-WEEKLY-APT-UPGRADABLE"))


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-WEEKLY-DB-STATS")
def test_weekly_reports_table_activity(server, maint, expected):
    """"psql ... -c "SELECT schemaname, tablename, n_tup_ins, n_tup_upd, n_tup_del FROM
    pg_stat_user_tables;"" (Weekly Tasks)."""
    assert_step(server, maint, "weekly", "report table activity", "psql", expected("MAINT-WEEKLY-DB-STATS"))


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-WEEKLY-CERT-EXPIRY")
def test_weekly_reports_certificate_expiry(server, maint, inventory):
    """"openssl x509 -in /etc/letsencrypt/live/your-domain.com/cert.pem -text -noout | grep "Not
    After"" (Weekly Tasks), with the deployment's public name; the certificate it reads exists."""
    cert = f"/etc/letsencrypt/live/{inventory.setting('audit_public_host', 'your-domain.com')}/cert.pem"
    assert_step(server, maint, "weekly", "report the certificate's expiry", "openssl x509", cert, "Not After")
    attach("certificate expiry seen on the host", maint["cert_expiry"])
    assert maint["cert_expiry"].startswith("notAfter="), (
        f"{server.name}: the certificate the weekly task watches cannot be read: {maint['cert_expiry'].strip()}")


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-WEEKLY-LOG-CLEANUP")
def test_weekly_log_cleanup(server, maint, expected):
    """"find /var/log/pynomaly -name "*.log.*" -mtime +30 -delete" (Weekly Tasks); no rotated log
    older than 30 days is left."""
    want = expected("MAINT-WEEKLY-LOG-CLEANUP")
    assert_step(server, maint, "weekly", "delete old rotated logs", "find", want["dir"], want["pattern"],
                f"-mtime +{want['max_age_days']}", "-delete")
    old = maint["old_logs"].split()
    compare(f"rotated logs older than {want['max_age_days']} days", old, [])
    assert not old, f"{server.name}: {len(old)} rotated log(s) older than {want['max_age_days']} days: {old[:5]}"


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-MONTHLY-OUTDATED-DEPS")
def test_monthly_lists_outdated_dependencies(server, maint, expected):
    """"pip list --outdated" (Monthly Tasks)."""
    assert_step(server, maint, "monthly", "list outdated dependencies", expected("MAINT-MONTHLY-OUTDATED-DEPS"))


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-MONTHLY-SECURITY-AUDIT")
def test_monthly_security_audit(server, maint, expected):
    """"sudo apt install -y unattended-upgrades; sudo unattended-upgrade --dry-run" (Monthly Tasks)."""
    for step in expected("MAINT-MONTHLY-SECURITY-AUDIT"):
        assert_step(server, maint, "monthly", f"run `{step}`", step)


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-MONTHLY-API-KEY-AUDIT")
def test_monthly_api_key_audit(server, maint, expected, inventory, audit_context):
    """"python /opt/pynomaly/scripts/audit_api_keys.py" (Monthly Tasks: review and rotate API keys);
    the script exists. Evidence: active API keys older than 90 days, counted from api_keys."""
    path = expected("MAINT-MONTHLY-API-KEY-AUDIT")
    assert_step(server, maint, "monthly", "review the API keys", "python", path)
    stat = parse_stat(maint["stat"]).get(path, {"exists": False})
    compare(path, stat, {"exists": True})
    assert stat["exists"], f"{server.name}: {path} does not exist"
    primaries = inventory.hosts_with_role("db_primary")
    if primaries:
        conn = services.postgres(audit_context.server(primaries[0].name), inventory)
        rows = services.query(conn, "SELECT count(*) FILTER (WHERE is_active) AS active, count(*) FILTER "
                                    "(WHERE is_active AND created_at < now() - interval '90 days') AS due "
                                    "FROM api_keys")
        attach("api_keys due for rotation (active, older than 90 days)", rows[0], kind="json")


@pytest.mark.roles("app")
@pytest.mark.requirement("MAINT-MONTHLY-VACUUM-ANALYZE")
def test_monthly_vacuum_analyze(server, maint, expected, inventory, audit_context):
    """"sudo -u postgres psql -d pynomaly_prod -c "VACUUM ANALYZE;"" (Monthly Tasks); every user
    table of the primary was vacuumed and analysed within the month (pg_stat_user_tables)."""
    want = expected("MAINT-MONTHLY-VACUUM-ANALYZE")
    assert_step(server, maint, "monthly", "run VACUUM ANALYZE", "psql", "VACUUM ANALYZE")
    primaries = inventory.hosts_with_role("db_primary")
    if not primaries:
        pytest.skip("no db_primary in the inventory: table statistics not checked")
    conn = services.postgres(audit_context.server(primaries[0].name), inventory, want["database"])
    rows = services.query(conn, "SELECT relname, last_vacuum, last_autovacuum, last_analyze, last_autoanalyze, "
                                "now() AS now FROM pg_stat_user_tables ORDER BY relname")
    attach("pg_stat_user_tables", rows, kind="json")
    now = rows[0]["now"] if rows else dt.datetime.now(dt.UTC)
    stale = stale_tables(rows, now, want["max_age_days"])
    compare(f"tables not vacuumed/analysed within {want['max_age_days']} days", stale, {})
    assert not stale, f"{primaries[0].name}: {want['database']}: {stale}"
