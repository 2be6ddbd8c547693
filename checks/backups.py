"""Guide: Backup & Disaster Recovery - Database Backup, Application Backup, Automated Backup
Schedule (and the daily task "Check backup status"). What is read, and how: audit/probes/backups.py.
"""

from __future__ import annotations

import re

import pytest

from audit.evidence import attach, mask_assignments
from audit.marks import per_requirement_on
from audit.probes import backups as parse
from audit.probes.shell import same_schedule


def _as_the_guide_writes_it(judge, script, found: dict, want: dict) -> None:
    attach(script.path, mask_assignments(script.text))
    judge.that(all(found.get(k) == v for k, v in want.items()), what=script.path, found=found, expected=want)


KIND = {"BAK-DB": "db", "BAK-APP": "app"}  # which backup a requirement is about, by its id


def kind_of(backups, req_id: str):
    return getattr(backups, KIND[req_id.rsplit("-", 1)[0].replace("-CRON", "")])


@per_requirement_on({"BAK-DB-SCRIPT": "backup_db", "BAK-APP-SCRIPT": "backup_app"})
def check_backup_script_is_executable(judge, backups, req_id):
    """"/opt/pynomaly/scripts/backup_db.sh" and "/opt/pynomaly/scripts/backup_app.sh" ... "chmod +x"."""
    script = kind_of(backups, req_id).script
    judge.that(script.executable, what=judge.expected, found=script.state, expected="exists, executable",
               where="stat, test -x")


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-SCRIPT-DUMP")
def check_db_backup_script_dumps(judge, backups):
    """"pg_dump -h localhost -U $DB_USER -d $DB_NAME | gzip > $BACKUP_DIR/pynomaly_backup_$TIMESTAMP.sql.gz"
    (after "mkdir -p $BACKUP_DIR")."""
    _as_the_guide_writes_it(judge, backups.db.script, parse.dump_script(backups.db.script.text),
                            {**judge.expected, "mkdir": True})


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-APP-SCRIPT-ARCHIVE")
def check_app_backup_script_archives(judge, backups):
    """"tar -czf $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz $APP_DIR"."""
    _as_the_guide_writes_it(judge, backups.app.script,
                            parse.archive_script(backups.app.script.text, backups.app_dir_exists), judge.expected)


@per_requirement_on({"BAK-DB-RETENTION": "backup_db", "BAK-APP-RETENTION": "backup_app"})
def check_backup_retention(judge, backups, req_id):
    """"# Clean up old backups (keep last 30 days)" - find ... -mtime +30 -delete, and for the
    application "find $BACKUP_DIR -name "*.tar.gz" -mtime +7 -delete" (find's +30 means more than
    31 whole days, so a file is allowed up to 31 days)."""
    kind, pattern = kind_of(backups, req_id), judge.expected["pattern"]
    max_days = int(judge.expected["max_age_days"])
    cleanup = parse.cleanup_lines(kind.script.commands, pattern, max_days)
    too_old = [f.name for f in kind.files if f.age_hours > (max_days + 1) * 24]
    judge.that(bool(cleanup) and not too_old, what="retention",
               found={"cleanup line": cleanup, "older than allowed": too_old, "backups": len(kind.files)},
               expected={"cleanup": f"find ... -name '{pattern}' -mtime +{max_days} -delete", "older than allowed": []},
               where=f"{kind.script.path}, {kind.directory}")


@per_requirement_on({"BAK-DB-RECENT": "backup_db", "BAK-APP-RECENT": "backup_app"})
def check_backup_is_recent(judge, backups, req_id):
    """"0 */6 * * * /opt/pynomaly/scripts/backup_db.sh": a database backup no older than 6 h, and
    "0 2 * * * /opt/pynomaly/scripts/backup_app.sh": an application backup no older than a day
    (+ grace)."""
    kind = kind_of(backups, req_id)
    limit = float(judge.expected["max_age_hours"]) + float(judge.expected["grace_minutes"]) / 60
    newest = kind.latest
    judge.that(newest is not None and newest.age_hours <= limit, what="newest backup",
               found=newest or f"no backup in {kind.directory}", expected=f"age_hours <= {limit}")


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-TODAY")
def check_db_backup_of_today(judge, backups):
    """"if [ ! -f /opt/backups/postgres/pynomaly_backup_$(date +%Y%m%d)*.sql.gz ]; then echo "ALERT: No
    backup found for today""."""
    todays = [f.name for f in backups.db.files if f.name.startswith(f"pynomaly_backup_{backups.today}")]
    judge.that(bool(todays), what=f"database backups of today ({backups.today})", found=todays,
               expected=f"pynomaly_backup_{backups.today}*.sql.gz", where=backups.db.directory)


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-INTEGRITY")
def check_db_backup_integrity(judge, backups):
    """The newest dump is sound: gzip -t passes, it is a complete pg_dump with the app's tables."""
    dump = backups.dump
    attach("newest dump: head / tail / tables", "\n".join([dump["head"], "...", dump["tail"], dump["tables"]]))
    judge.that("gzip-ok" in backups.db.newest, what="gzip -t of the newest database backup",
               found=backups.db.newest or f"no backup in {backups.db.directory}", expected="gzip-ok")
    seen = parse.dump_is_complete(dump["head"], dump["tail"], dump["tables"], judge.expected)
    judge.equal(seen, what="the newest pg_dump", expected={"header": True, "footer": True, "tables": []})


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-APP-INTEGRITY")
def check_app_backup_integrity(judge, backups):
    """The newest application archive is a readable tar.gz of /opt/pynomaly."""
    seen, want = backups.app.newest, judge.expected["contains"]
    judge.that("tar-ok" in seen and bool(re.search(rf"^{re.escape(want)}", seen, re.M)),
               what="tar -tzf of the newest application backup", found=seen or f"no backup in {backups.app.directory}",
               expected=f"tar-ok, entries under {want}")


# ---------------------------------------------------------------- schedules


@per_requirement_on({"BAK-CRON-DB": "backup_db", "BAK-CRON-APP": "backup_app", "BAK-CRON-LOGROTATE": "app"})
def check_backup_is_scheduled(judge, backups, req_id):
    """"# Database backup every 6 hours: 0 */6 * * * /opt/pynomaly/scripts/backup_db.sh",
    "# Application backup daily at 2 AM: 0 2 * * * /opt/pynomaly/scripts/backup_app.sh",
    "# Log rotation: 0 3 * * * /usr/sbin/logrotate /etc/logrotate.d/pynomaly"."""
    want = judge.expected
    schedules = parse.cron_entry_for(backups.crontab, want["command"])
    judge.that(any(same_schedule(s, want["schedule"]) for s in schedules),
               what=f"schedule of {want['command']}", found=schedules or backups.crontab, expected=want["schedule"],
               where="crontab -l -u root")


@pytest.mark.roles("app")
@pytest.mark.requirement("BAK-LOGROTATE-CONFIG")
def check_logrotate_config(judge, backups):
    """The logrotate entry the crontab names exists, parses (logrotate -d), and covers /var/log/pynomaly."""
    want, conf = judge.expected, backups.logrotate_conf or ""
    attach(want["path"], conf)
    covers = [ln.strip() for ln in conf.splitlines() if ln.strip().startswith(want["logs"])]
    judge.that("No such file" not in conf and backups.logrotate_rc == "rc=0" and bool(covers),
               what="logrotate entry", found={"parses": backups.logrotate_rc, "covers": covers or conf},
               expected={"parses": "rc=0", "covers": f"{want['logs']}/..."}, where=want["path"])
