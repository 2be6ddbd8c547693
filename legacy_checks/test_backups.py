"""Guide: Backup & Disaster Recovery - Database Backup, Application Backup, Automated Backup
Schedule (and the daily task "Check backup status").

What a backup host is asked comes from ONE `server.collect("backups", ...)` round trip: the
scripts, root's crontab, the backup files with their ages, and the newest backup's integrity
(gzip -t / tar -tzf, pg_dump header, footer and tables). Schedules are compared as schedules
(croniter), not as text. Read-only.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from croniter import croniter

from audit.evidence import attach, compare, mask_assignments
from audit.hostparse import crontab_entries, script_commands

DB_DIR = "/opt/backups/postgres"
APP_DIR = "/opt/backups/application"
DB_SCRIPT = "/opt/pynomaly/scripts/backup_db.sh"
APP_SCRIPT = "/opt/pynomaly/scripts/backup_app.sh"
APP_TABLES = ("users", "audit_logs", "api_keys")


def _files(directory: str, pattern: str) -> str:
    return f"find {directory} -maxdepth 1 -name '{pattern}' -printf '%T@ %s %f\\n' 2>/dev/null | sort -n"


def backup_commands(roles) -> dict[str, str]:
    cmds = {"now": "date +%s", "today": "date +%Y%m%d", "crontab": "crontab -l 2>&1"}
    if "backup_db" in roles:
        newest = f"f=$(ls -t {DB_DIR}/*.sql.gz 2>/dev/null | head -1); [ -n \"$f\" ] || exit 0; "
        cmds |= {
            "db_script": f"stat -c '%a %U:%G' {DB_SCRIPT} 2>&1; test -x {DB_SCRIPT} && echo executable",
            "db_script_text": f"cat {DB_SCRIPT} 2>&1",
            "db_files": _files(DB_DIR, "*.sql.gz"),
            "db_newest_gzip": newest + "echo \"$f\"; gzip -t \"$f\" 2>&1 && echo gzip-ok",
            "db_newest_head": newest + "gunzip -c \"$f\" 2>/dev/null | head -5",
            "db_newest_tail": newest + "gunzip -c \"$f\" 2>/dev/null | tail -8",
            "db_newest_tables": newest + "gunzip -c \"$f\" 2>/dev/null | grep -oE '^CREATE TABLE [^ ]+'",
        }
    if "backup_app" in roles:
        newest = f"f=$(ls -t {APP_DIR}/*.tar.gz 2>/dev/null | head -1); [ -n \"$f\" ] || exit 0; "
        cmds |= {
            "app_script": f"stat -c '%a %U:%G' {APP_SCRIPT} 2>&1; test -x {APP_SCRIPT} && echo executable",
            "app_script_text": f"cat {APP_SCRIPT} 2>&1",
            "app_dir": f"test -d {APP_DIR} && echo exists",
            "app_files": _files(APP_DIR, "*.tar.gz"),
            "app_newest": newest + "echo \"$f\"; tar -tzf \"$f\" >/tmp/.pa-tar 2>&1 && echo tar-ok; "
                          "grep -c . /tmp/.pa-tar; grep -m3 '^opt/pynomaly' /tmp/.pa-tar; rm -f /tmp/.pa-tar",
        }
    if "app" in roles:
        cmds |= {
            "logrotate_conf": "cat /etc/logrotate.d/pynomaly 2>&1",
            "logrotate_debug": "logrotate -d /etc/logrotate.d/pynomaly >/dev/null 2>&1; echo rc=$?",
        }
    return cmds


def facts(server) -> dict[str, str]:
    return server.collect("backups", backup_commands(server.roles))


def backup_files(text: str, now: float) -> list[dict]:
    """`find -printf '%T@ %s %f'` lines -> [{name, bytes, age_hours}] oldest first."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            age = round((now - float(parts[0])) / 3600, 2)
            out.append({"name": parts[2], "bytes": int(parts[1]), "age_hours": age})
    return out


def _now(server) -> float:
    return float(facts(server)["now"].strip())


def script_is_executable(server, key: str, path: str) -> None:
    seen = facts(server)[key].strip()
    compare(path, seen, "exists, executable")
    assert "No such file" not in seen, f"{server.name}: {path} does not exist"
    assert seen.endswith("executable"), f"{server.name}: {path} is not executable ({seen})"


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-SCRIPT")
def test_db_backup_script(server, expected):
    """"/opt/pynomaly/scripts/backup_db.sh" ... "chmod +x"."""
    script_is_executable(server, "db_script", expected("BAK-DB-SCRIPT"))


def shell_vars(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip().strip('"\'') for m in re.finditer(r"^\s*([A-Z_]+)=(.+)$", text, re.M)}


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-SCRIPT-DUMP")
def test_db_backup_script_dumps(server, expected):
    """"pg_dump -h localhost -U $DB_USER -d $DB_NAME | gzip > $BACKUP_DIR/pynomaly_backup_$TIMESTAMP.sql.gz"."""
    want = expected("BAK-DB-SCRIPT-DUMP")
    text = facts(server)["db_script_text"]
    attach("backup_db.sh", mask_assignments(text))
    v = shell_vars(text)
    lines = script_commands(text)
    dump = next((ln for ln in lines if "pg_dump" in ln and "gzip" in ln), "")
    actual = {"backup_dir": v.get("BACKUP_DIR"), "database": v.get("DB_NAME"), "user": v.get("DB_USER"),
              "pipeline": "pg_dump | gzip" if re.search(r"pg_dump\b.*\|\s*gzip\b", dump) else dump or None,
              "file_pattern": "pynomaly_backup_%Y%m%d_%H%M%S.sql.gz"
              if "pynomaly_backup_$TIMESTAMP.sql.gz" in dump and "%Y%m%d_%H%M%S" in v.get("TIMESTAMP", "")
              else None,
              "mkdir": any(re.match(r"mkdir -p \$\{?BACKUP_DIR", ln) for ln in lines)}
    compare("backup_db.sh", actual, {**want, "mkdir": True})
    wrong = {k: actual[k] for k in want if actual.get(k) != want[k]}
    assert not wrong, f"{server.name}: backup_db.sh differs from the guide: {wrong}"
    assert actual["mkdir"], f"{server.name}: backup_db.sh does not create {want['backup_dir']}"


def _retention(server, key: str, script_key: str, pattern: str, max_days: int) -> None:
    files = backup_files(facts(server)[key], _now(server))
    text = facts(server)[script_key]
    cleanup = [ln for ln in script_commands(text)
               if ln.startswith("find ") and pattern in ln and f"-mtime +{max_days}" in ln and "-delete" in ln]
    too_old = [f for f in files if f["age_hours"] > (max_days + 1) * 24]
    compare("retention", {"cleanup line": cleanup, "older than allowed": too_old, "backups": len(files)},
            {"cleanup": f"find ... -name '{pattern}' -mtime +{max_days} -delete", "older than allowed": []})
    assert cleanup, f"{server.name}: the backup script does not delete {pattern} older than {max_days} days"
    assert not too_old, f"{server.name}: backups older than {max_days} days are left: {[f['name'] for f in too_old]}"


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-RETENTION")
def test_db_backup_retention(server, expected):
    """"# Clean up old backups (keep last 30 days)" - find ... -mtime +30 -delete (find's +30 means
    more than 31 whole days, so a file is allowed up to 31 days)."""
    _retention(server, "db_files", "db_script_text", "*.sql.gz", int(expected("BAK-DB-RETENTION")["max_age_days"]))


def _recent(server, key: str, want: dict, what: str) -> dict:
    files = backup_files(facts(server)[key], _now(server))
    limit = float(want["max_age_hours"]) + float(want["grace_minutes"]) / 60
    newest = files[-1] if files else None
    compare(f"newest {what} backup", newest, f"age_hours <= {limit}")
    assert newest, f"{server.name}: no {what} backup at all"
    assert newest["age_hours"] <= limit, (
        f"{server.name}: newest {what} backup is {newest['age_hours']} h old (max {limit} h)")
    return newest


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-RECENT")
def test_db_backup_is_recent(server, expected):
    """"0 */6 * * * /opt/pynomaly/scripts/backup_db.sh": a backup no older than 6 h (+ grace)."""
    _recent(server, "db_files", expected("BAK-DB-RECENT"), "database")


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-TODAY")
def test_db_backup_of_today(server, expected):
    """"if [ ! -f /opt/backups/postgres/pynomaly_backup_$(date +%Y%m%d)*.sql.gz ]; then echo "ALERT: No
    backup found for today""."""
    today = facts(server)["today"].strip()
    names = [f["name"] for f in backup_files(facts(server)["db_files"], _now(server))]
    todays = [n for n in names if n.startswith(f"pynomaly_backup_{today}")]
    compare(f"backups of {today}", todays, f"pynomaly_backup_{today}*.sql.gz")
    assert todays, f"{server.name}: no database backup of today ({today}) in {DB_DIR}"


def dump_is_complete(head: str, tail: str, tables: str, want: dict) -> dict:
    names = {t.split()[-1].split(".")[-1].strip('"') for t in tables.splitlines() if t.strip()}
    return {"header": want["header"] in head, "footer": want["footer"] in tail,
            "tables": sorted(set(APP_TABLES) - names)}


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-INTEGRITY")
def test_db_backup_integrity(server, expected):
    """The newest dump is sound: gzip -t passes, it is a complete pg_dump with the app's tables."""
    want = expected("BAK-DB-INTEGRITY")
    data = facts(server)
    attach("newest dump: gzip -t", data["db_newest_gzip"])
    attach("newest dump: head / tail / tables",
           "\n".join([data["db_newest_head"], "...", data["db_newest_tail"], data["db_newest_tables"]]))
    assert data["db_newest_gzip"].strip(), f"{server.name}: no database backup in {DB_DIR}"
    assert "gzip-ok" in data["db_newest_gzip"], f"{server.name}: newest backup fails gzip -t"
    seen = dump_is_complete(data["db_newest_head"], data["db_newest_tail"], data["db_newest_tables"], want)
    compare("pg_dump", seen, {"header": True, "footer": True, "tables": []})
    assert seen["header"], f"{server.name}: newest backup does not start like a pg_dump ({want['header']!r})"
    assert seen["footer"], f"{server.name}: newest backup is truncated (no {want['footer']!r})"
    assert not seen["tables"], f"{server.name}: newest backup lacks tables {seen['tables']}"


# ---------------------------------------------------------------- application backups


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-APP-SCRIPT")
def test_app_backup_script(server, expected):
    """"/opt/pynomaly/scripts/backup_app.sh"."""
    script_is_executable(server, "app_script", expected("BAK-APP-SCRIPT"))


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-APP-SCRIPT-ARCHIVE")
def test_app_backup_script_archives(server, expected):
    """"tar -czf $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz $APP_DIR"."""
    want = expected("BAK-APP-SCRIPT-ARCHIVE")
    text = facts(server)["app_script_text"]
    attach("backup_app.sh", mask_assignments(text))
    v = shell_vars(text)
    tar = next((ln for ln in script_commands(text) if ln.startswith("tar ")), "")
    actual = {"source": v.get("APP_DIR") if re.search(r"\$\{?APP_DIR\}?\s*$", tar) else None,
              "backup_dir": v.get("BACKUP_DIR") if "exists" in facts(server)["app_dir"] else "missing",
              "file_pattern": "pynomaly_app_%Y%m%d_%H%M%S.tar.gz"
              if re.search(r"-c?z\S*f \$\{?BACKUP_DIR\}?/pynomaly_app_\$\{?TIMESTAMP\}?\.tar\.gz", tar)
              and "%Y%m%d_%H%M%S" in v.get("TIMESTAMP", "") else None}
    compare("backup_app.sh", actual, want)
    wrong = {k: actual[k] for k in want if actual.get(k) != want[k]}
    assert not wrong, f"{server.name}: backup_app.sh differs from the guide: {wrong} (tar line: {tar!r})"


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-APP-RETENTION")
def test_app_backup_retention(server, expected):
    """"find $BACKUP_DIR -name "*.tar.gz" -mtime +7 -delete"."""
    _retention(server, "app_files", "app_script_text", "*.tar.gz", int(expected("BAK-APP-RETENTION")["max_age_days"]))


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-APP-RECENT")
def test_app_backup_is_recent(server, expected):
    """"0 2 * * * /opt/pynomaly/scripts/backup_app.sh": a backup no older than a day (+ grace)."""
    _recent(server, "app_files", expected("BAK-APP-RECENT"), "application")


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-APP-INTEGRITY")
def test_app_backup_integrity(server, expected):
    """The newest application archive is a readable tar.gz of /opt/pynomaly."""
    want = expected("BAK-APP-INTEGRITY")["contains"]
    seen = facts(server)["app_newest"]
    attach("newest archive: tar -tzf", seen)
    assert seen.strip(), f"{server.name}: no application backup in {APP_DIR}"
    assert "tar-ok" in seen, f"{server.name}: newest application backup is not a readable tar.gz"
    assert re.search(rf"^{re.escape(want)}", seen, re.M), f"{server.name}: newest application backup lacks {want}"


# ---------------------------------------------------------------- schedules


def schedule_matches(schedule: str, wanted: str, start: dt.datetime | None = None, runs: int = 64) -> bool:
    """Two cron schedules are the same when their next `runs` firing times are equal."""
    if not (croniter.is_valid(schedule) and croniter.is_valid(wanted)):
        return False
    start = start or dt.datetime(2025, 1, 1)
    a, b = croniter(schedule, start), croniter(wanted, start)
    return all(a.get_next(dt.datetime) == b.get_next(dt.datetime) for _ in range(runs))


def cron_entry_for(crontab: str, command: str) -> list[str]:
    """Schedules of the crontab lines that run `command` (the command's first word)."""
    return [sched for sched, cmd in crontab_entries(crontab) if cmd.split()[0] == command.split()[0]
            and cmd.split()[1:len(command.split())] == command.split()[1:]]


def _cron(server, want: dict) -> None:
    crontab = facts(server)["crontab"]
    attach("crontab -l (root)", crontab)
    schedules = cron_entry_for(crontab, want["command"])
    good = [s for s in schedules if schedule_matches(s, want["schedule"])]
    compare(f"schedule of {want['command']}", schedules, want["schedule"])
    assert schedules, f"{server.name}: root's crontab does not run {want['command']}"
    assert good, f"{server.name}: {want['command']} runs at {schedules}, guide: {want['schedule']}"


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-CRON-DB")
def test_db_backup_is_scheduled(server, expected):
    """"# Database backup every 6 hours: 0 */6 * * * /opt/pynomaly/scripts/backup_db.sh"."""
    _cron(server, expected("BAK-CRON-DB"))


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-CRON-APP")
def test_app_backup_is_scheduled(server, expected):
    """"# Application backup daily at 2 AM: 0 2 * * * /opt/pynomaly/scripts/backup_app.sh"."""
    _cron(server, expected("BAK-CRON-APP"))


@pytest.mark.roles("app")
@pytest.mark.requirement("BAK-CRON-LOGROTATE")
def test_logrotate_is_scheduled(server, expected):
    """"# Log rotation: 0 3 * * * /usr/sbin/logrotate /etc/logrotate.d/pynomaly"."""
    _cron(server, expected("BAK-CRON-LOGROTATE"))


@pytest.mark.roles("app")
@pytest.mark.requirement("BAK-LOGROTATE-CONFIG")
def test_logrotate_config(server, expected):
    """The logrotate entry the crontab names exists, parses, and covers /var/log/pynomaly."""
    want = expected("BAK-LOGROTATE-CONFIG")
    conf, rc = facts(server)["logrotate_conf"], facts(server)["logrotate_debug"].strip()
    attach(want["path"], conf)
    covers = [ln for ln in conf.splitlines() if ln.strip().startswith(want["logs"])]
    compare("logrotate entry", {"parses": rc, "covers": covers}, {"parses": "rc=0", "covers": f"{want['logs']}/..."})
    assert "No such file" not in conf, f"{server.name}: {want['path']} does not exist"
    assert rc == "rc=0", f"{server.name}: logrotate -d {want['path']} fails ({rc})"
    assert covers, f"{server.name}: {want['path']} does not cover {want['logs']}"
