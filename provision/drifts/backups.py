"""Backup and DR drifts: each breaks exactly the requirements it names."""

from __future__ import annotations

from . import BACKUPS, Drift, crontab_edit, edit_file

DB_DIR, APP_DIR = "/opt/backups/postgres", "/opt/backups/application"
DB_SCRIPT, APP_SCRIPT = "/opt/pynomaly/scripts/backup_db.sh", "/opt/pynomaly/scripts/backup_app.sh"


def _aged(host: str, directory: str, pattern: str, hours: int, name: str) -> tuple:
    """Every backup's mtime moved `hours` back (names kept); heal restores the original mtimes."""
    keep = f"{BACKUPS}/{name}"

    def apply(c) -> None:
        c.sh(host, f"mkdir -p {keep} && cd {directory} && for f in {pattern}; do touch -r \"$f\" {keep}/\"$f\";"
                   f" touch -d \"$(date -d @$(stat -c %Y \"$f\")) -{hours} hours\" \"$f\"; done")

    def heal(c) -> None:
        c.sh(host, f"cd {keep} && for f in *; do [ -e {directory}/\"$f\" ] && touch -r \"$f\" {directory}/\"$f\";"
                   f" done; rm -rf {keep}")

    return apply, heal


def _corrupt_newest(host: str, directory: str, prefix: str, ext: str) -> tuple:
    """A newer backup that is a truncated copy of the newest one; heal deletes it."""
    bad = f"{directory}/{prefix}$(date +%Y%m%d)_235959{ext}"

    def apply(c) -> None:
        c.sh(host, f"f=$(ls -t {directory}/*{ext} | head -1) && head -c 200 \"$f\" > {bad}")

    def heal(c) -> None:
        c.sh(host, f"rm -f {bad}")

    return apply, heal


def _renamed_to_yesterday(host: str) -> tuple:
    """Today's database backups renamed to yesterday's date (contents and mtimes kept)."""
    log = f"{BACKUPS}/renamed-backups"

    def apply(c) -> None:
        c.sh(host, f"mkdir -p {BACKUPS} && : > {log} && cd {DB_DIR} && t=$(date +%Y%m%d) && "
                   "y=$(date -d yesterday +%Y%m%d) && for f in pynomaly_backup_${t}*.sql.gz; do "
                   f"n=$(echo \"$f\" | sed \"s/_${{t}}/_${{y}}/\"); mv \"$f\" \"$n\" && echo \"$n $f\" >> {log}; done"
                   f" && test -s {log}")

    def heal(c) -> None:
        c.sh(host, f"cd {DB_DIR} && while read n f; do mv \"$n\" \"$f\"; done < {log} && rm -f {log}")

    return apply, heal


def _chmod(host: str, path: str) -> tuple:
    return (lambda c: c.sh(host, f"chmod a-x {path}"), lambda c: c.sh(host, f"chmod 750 {path}"))


DRIFTS: tuple[Drift, ...] = (
    Drift("backup-cron-removed", ("BAK-CRON-DB",),
          "db1: the backup_db.sh line removed from root's crontab",
          *crontab_edit("db1", "'/backup_db.sh/d'")),
    Drift("backup-db-script-not-executable", ("BAK-DB-SCRIPT",),
          f"db1: chmod a-x {DB_SCRIPT}", *_chmod("db1", DB_SCRIPT)),
    Drift("backup-db-wrong-database", ("BAK-DB-SCRIPT-DUMP",),
          "db1: backup_db.sh dumps DB_NAME=postgres instead of pynomaly_prod (next run)",
          *edit_file("db1", DB_SCRIPT, "'s/^DB_NAME=\"pynomaly_prod\"/DB_NAME=\"postgres\"/'", "true", "backup_db.sh")),
    Drift("backup-db-retention-90", ("BAK-DB-RETENTION",),
          "db1: backup_db.sh keeps 90 days (-mtime +90) instead of 30",
          *edit_file("db1", DB_SCRIPT, "'s/-mtime +30/-mtime +90/'", "true", "backup_db.sh")),
    Drift("backup-db-stale", ("BAK-DB-RECENT",),
          "db1: every database backup's mtime 8 hours earlier (the 6-hourly backups stopped)",
          *_aged("db1", DB_DIR, "*.sql.gz", 8, "aged-db")),
    Drift("backup-db-none-today", ("BAK-DB-TODAY",),
          "db1: today's database backups renamed to yesterday's date",
          *_renamed_to_yesterday("db1")),
    Drift("backup-db-truncated", ("BAK-DB-INTEGRITY",),
          "db1: the newest database backup is a truncated gzip",
          *_corrupt_newest("db1", DB_DIR, "pynomaly_backup_", ".sql.gz")),
    Drift("backup-app-script-not-executable", ("BAK-APP-SCRIPT",),
          f"web1: chmod a-x {APP_SCRIPT}", *_chmod("web1", APP_SCRIPT)),
    Drift("backup-app-wrong-source", ("BAK-APP-SCRIPT-ARCHIVE",),
          "web1: backup_app.sh archives /opt/pynomaly/static only (next run)",
          *edit_file("web1", APP_SCRIPT, "'s|^APP_DIR=\"/opt/pynomaly\"|APP_DIR=\"/opt/pynomaly/static\"|'", "true",
                     "backup_app.sh")),
    Drift("backup-app-retention-30", ("BAK-APP-RETENTION",),
          "web1: backup_app.sh keeps 30 days (-mtime +30) instead of 7",
          *edit_file("web1", APP_SCRIPT, "'s/-mtime +7/-mtime +30/'", "true", "backup_app.sh")),
    Drift("backup-app-stale", ("BAK-APP-RECENT",),
          "web1: every application backup's mtime 26 hours earlier (the daily backup stopped)",
          *_aged("web1", APP_DIR, "*.tar.gz", 26, "aged-app")),
    Drift("backup-app-truncated", ("BAK-APP-INTEGRITY",),
          "web1: the newest application backup is a truncated tar.gz",
          *_corrupt_newest("web1", APP_DIR, "pynomaly_app_", ".tar.gz")),
    Drift("backup-app-cron-4am", ("BAK-CRON-APP",),
          "web1: backup_app.sh scheduled at 4 AM instead of 2 AM",
          *crontab_edit("web1", "'s|^0 2 \\* \\* \\* /opt/pynomaly/scripts/backup_app.sh|0 4 * * * "
                            "/opt/pynomaly/scripts/backup_app.sh|'")),
    Drift("logrotate-cron-removed", ("BAK-CRON-LOGROTATE",),
          "web1: the logrotate line removed from root's crontab",
          *crontab_edit("web1", "'/logrotate/d'")),
    Drift("logrotate-config-elsewhere", ("BAK-LOGROTATE-CONFIG",),
          "web1: /etc/logrotate.d/pynomaly rotates /var/log/other/*.log instead of /var/log/pynomaly",
          *edit_file("web1", "/etc/logrotate.d/pynomaly", "'s|^/var/log/pynomaly/|/var/log/other/|'", "true",
                     "logrotate-pynomaly")),
)
