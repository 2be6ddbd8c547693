"""Backup checks' parsing (audit/probes/backups.py) on outputs captured from the reference
deployment (db1, web1: the scripts as provision installs them), both directions, and the empty
cases (no script, no backup)."""

import datetime as dt

from audit.probes.backups import (
    BackupFile,
    Backups,
    Script,
    archive_script,
    backup_files,
    cleanup_lines,
    cron_entry_for,
    dump_is_complete,
    dump_script,
    shell_vars,
)
from audit.probes.shell import same_schedule

NOW = dt.datetime(2026, 11, 26, 5, 30, tzinfo=dt.UTC).timestamp()
DB_SCRIPT = """#!/bin/bash
# /opt/pynomaly/scripts/backup_db.sh

BACKUP_DIR="/opt/backups/postgres"
DB_NAME="pynomaly_prod"
DB_USER="pynomaly_user"
TIMESTAMP=$(date +%Y%m%d_%H%M%S)

# Create backup directory
mkdir -p $BACKUP_DIR

# Perform backup (pg_dump reads the password from root's ~/.pgpass)
pg_dump -h localhost -U $DB_USER -d $DB_NAME | gzip > $BACKUP_DIR/pynomaly_backup_$TIMESTAMP.sql.gz

# Upload to S3 (optional): only when S3_BUCKET is set (reference deployment: no S3)
if [ -n "${S3_BUCKET:-}" ]; then
    aws s3 cp $BACKUP_DIR/pynomaly_backup_$TIMESTAMP.sql.gz s3://$S3_BUCKET/
fi

# Clean up old backups (keep last 30 days)
find $BACKUP_DIR -name "*.sql.gz" -mtime +30 -delete
"""
APP_SCRIPT = """#!/bin/bash
# /opt/pynomaly/scripts/backup_app.sh

BACKUP_DIR="/opt/backups/application"
APP_DIR="/opt/pynomaly"
TIMESTAMP=$(date +%Y%m%d_%H%M%S)

# Create backup
tar -czf $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz $APP_DIR

# Upload to S3: only when S3_BUCKET is set (reference deployment: no S3)
if [ -n "${S3_BUCKET:-}" ]; then
    aws s3 cp $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz s3://$S3_BUCKET/
fi

# Clean up old backups
find $BACKUP_DIR -name "*.tar.gz" -mtime +7 -delete
"""
GUIDE_DUMP = {"backup_dir": "/opt/backups/postgres", "database": "pynomaly_prod", "user": "pynomaly_user",
              "pipeline": "pg_dump | gzip", "file_pattern": "pynomaly_backup_%Y%m%d_%H%M%S.sql.gz", "mkdir": True}
GUIDE_ARCHIVE = {"source": "/opt/pynomaly", "backup_dir": "/opt/backups/application",
                 "file_pattern": "pynomaly_app_%Y%m%d_%H%M%S.tar.gz"}


def test_schedules_compare_by_their_runs():
    assert same_schedule("0 */6 * * *", "0 */6 * * *")
    assert same_schedule("0 0,6,12,18 * * *", "0 */6 * * *")  # same schedule, other text
    assert not same_schedule("0 */12 * * *", "0 */6 * * *")
    assert not same_schedule("0 4 * * *", "0 2 * * *")
    assert not same_schedule("not a schedule", "0 2 * * *")


def test_cron_entry_for():
    crontab = ("0 2 * * * /opt/pynomaly/scripts/backup_app.sh\n"
               "0 3 * * * /usr/sbin/logrotate /etc/logrotate.d/pynomaly\n")
    assert cron_entry_for(crontab, "/opt/pynomaly/scripts/backup_app.sh") == ["0 2 * * *"]
    assert cron_entry_for(crontab, "/usr/sbin/logrotate /etc/logrotate.d/pynomaly") == ["0 3 * * *"]
    assert cron_entry_for(crontab, "/opt/pynomaly/scripts/backup_db.sh") == []
    assert cron_entry_for("0 3 * * * /usr/sbin/logrotate /etc/logrotate.d/other\n",
                          "/usr/sbin/logrotate /etc/logrotate.d/pynomaly") == []
    assert cron_entry_for("no crontab for root", "/opt/pynomaly/scripts/backup_db.sh") == []


def test_backup_files_and_dump():
    files = backup_files(f"{NOW - 3600} 1800 pynomaly_backup_20261126_043000.sql.gz\n"
                         f"{NOW - 7200} 1764 pynomaly_backup_20261126_033000.sql.gz\n", NOW)
    assert files == (BackupFile("pynomaly_backup_20261126_033000.sql.gz", 1764, 2.0),
                     BackupFile("pynomaly_backup_20261126_043000.sql.gz", 1800, 1.0))  # oldest first
    want = {"header": "-- PostgreSQL database dump", "footer": "-- PostgreSQL database dump complete"}
    tables = "CREATE TABLE public.users\nCREATE TABLE public.audit_logs\nCREATE TABLE public.api_keys\n"
    ok = dump_is_complete("--\n-- PostgreSQL database dump\n--", "-- PostgreSQL database dump complete\n--",
                          tables, want)
    assert ok == {"header": True, "footer": True, "tables": []}
    bad = dump_is_complete("garbage", "-- Name: users", "CREATE TABLE public.users\n", want)
    assert bad == {"header": False, "footer": False, "tables": ["api_keys", "audit_logs"]}


def test_no_backup_at_all():
    kind = Backups("/opt/backups/postgres", Script("/x", "", ""), backup_files("", NOW), "")
    assert kind.latest is None
    assert dump_is_complete("", "", "", {"header": "-- PostgreSQL database dump", "footer": "complete"}) == {
        "header": False, "footer": False, "tables": ["api_keys", "audit_logs", "users"]}


def test_shell_vars():
    v = shell_vars('BACKUP_DIR="/opt/backups/postgres"\nTIMESTAMP=$(date +%Y%m%d_%H%M%S)\n')
    assert v == {"BACKUP_DIR": "/opt/backups/postgres", "TIMESTAMP": "$(date +%Y%m%d_%H%M%S)"}


def test_dump_script_as_the_guide_writes_it():
    assert dump_script(DB_SCRIPT) == GUIDE_DUMP
    wrong = dump_script(DB_SCRIPT.replace('DB_NAME="pynomaly_prod"', 'DB_NAME="postgres"'))
    assert wrong["database"] == "postgres"
    assert not dump_script(DB_SCRIPT.replace("mkdir -p $BACKUP_DIR\n", ""))["mkdir"]


def test_a_missing_script_is_nothing_like_the_guide():
    missing = "cat: /opt/pynomaly/scripts/backup_db.sh: No such file or directory"
    assert dump_script(missing) == {"backup_dir": None, "database": None, "user": None, "pipeline": None,
                                    "file_pattern": None, "mkdir": False}
    assert not Script("/x", "stat: cannot statx '/x': No such file or directory", "").executable
    assert not Script("/x", "644 root:root", "").executable
    assert Script("/x", "755 root:root\nexecutable", "").executable
    assert archive_script("", dir_exists=False) == {"source": None, "backup_dir": "missing", "file_pattern": None,
                                                    "tar line": ""}


def test_archive_script():
    found = archive_script(APP_SCRIPT, dir_exists=True)
    assert {k: found[k] for k in GUIDE_ARCHIVE} == GUIDE_ARCHIVE
    static_only = archive_script(APP_SCRIPT.replace(".tar.gz $APP_DIR\n", ".tar.gz $APP_DIR/static\n"), dir_exists=True)
    assert static_only["source"] is None


def test_cleanup_lines():
    assert cleanup_lines(Script("/x", "", DB_SCRIPT).commands, "*.sql.gz", 30) == [
        'find $BACKUP_DIR -name "*.sql.gz" -mtime +30 -delete']
    assert cleanup_lines(Script("/x", "", DB_SCRIPT.replace("+30", "+90")).commands, "*.sql.gz", 30) == []
    assert cleanup_lines([], "*.tar.gz", 7) == []
