"""Maintenance drifts (guide: Maintenance > Regular Tasks): each breaks exactly the requirements
it names, on web1 (the app host that runs the maintenance scripts)."""

from __future__ import annotations

from . import Drift, edit_file

SCRIPTS = "/opt/pynomaly/scripts"
DAILY, WEEKLY, MONTHLY = (f"{SCRIPTS}/{p}_maintenance.sh" for p in ("daily", "weekly", "monthly"))
CRONTAB = "/var/spool/cron/crontabs/root"
OLD_LOG = "/var/log/pynomaly/error.log.9"

DRIFTS: tuple[Drift, ...] = (
    Drift("maint-scripts-not-executable",
          ("MAINT-DAILY-SCRIPT", "MAINT-WEEKLY-SCRIPT", "MAINT-MONTHLY-SCRIPT"),
          "web1: chmod 640 the daily/weekly/monthly maintenance scripts (cron cannot run them)",
          lambda c: c.sh("web1", f"chmod 640 {DAILY} {WEEKLY} {MONTHLY}"),
          lambda c: c.sh("web1", f"chmod 750 {DAILY} {WEEKLY} {MONTHLY}")),
    Drift("maint-cron-cadence-swapped",
          ("MAINT-DAILY-SCHEDULED", "MAINT-WEEKLY-SCHEDULED", "MAINT-MONTHLY-SCHEDULED"),
          "web1: root's crontab runs the daily script weekly, the weekly one monthly, the monthly one daily",
          *edit_file("web1", CRONTAB,
                     "-e 's|^30 4 \\* \\* \\* \\(.*daily_\\)|30 4 * * 0 \\1|' "
                     "-e 's|^30 5 \\* \\* 0 \\(.*weekly_\\)|30 5 1 * * \\1|' "
                     "-e 's|^30 6 1 \\* \\* \\(.*monthly_\\)|30 6 * * * \\1|'",
                     "true", "maint-cron")),
    Drift("maint-daily-steps-broken",
          ("MAINT-DAILY-DISK-ALERT", "MAINT-DAILY-ERROR-LOG-SCAN", "MAINT-DAILY-BACKUP-CHECK",
           "MAINT-DAILY-HEALTH-CHECK"),
          "web1: daily_maintenance.sh alerts from 95% only, scans errors.log, drops the backup alert "
          "and curl's -f",
          *edit_file("web1", DAILY,
                     "-e 's/9\\[0-9\\]%/9[5-9]%/' -e 's|/error\\.log|/errors.log|' "
                     "-e 's/ || echo \"ALERT: No backup found for today\"//' "
                     "-e 's|curl -f http://localhost/health|curl http://localhost/health|'",
                     "true", "maint-daily")),
    Drift("maint-weekly-steps-broken",
          ("MAINT-WEEKLY-APT-UPGRADABLE", "MAINT-WEEKLY-DB-STATS", "MAINT-WEEKLY-CERT-EXPIRY",
           "MAINT-WEEKLY-LOG-CLEANUP"),
          "web1: weekly_maintenance.sh lists installed packages, reads pg_stat_activity, greps Subject "
          "and deletes logs after 90 days",
          *edit_file("web1", WEEKLY,
                     "-e 's/apt list --upgradable/apt list --installed/' "
                     "-e 's/pg_stat_user_tables/pg_stat_activity/' -e 's/\"Not After\"/\"Subject:\"/' "
                     "-e 's/-mtime +30/-mtime +90/'",
                     "true", "maint-weekly")),
    Drift("maint-monthly-steps-broken",
          ("MAINT-MONTHLY-VACUUM-ANALYZE", "MAINT-MONTHLY-OUTDATED-DEPS", "MAINT-MONTHLY-SECURITY-AUDIT",
           "MAINT-MONTHLY-API-KEY-AUDIT"),
          "web1: monthly_maintenance.sh only ANALYZEs, lists all packages, upgrades for real and skips "
          "the API key review",
          *edit_file("web1", MONTHLY,
                     "-e 's/VACUUM ANALYZE;/ANALYZE;/' -e 's/pip list --outdated/pip list/' "
                     "-e 's/unattended-upgrade --dry-run/unattended-upgrade/' "
                     "-e 's|^python /opt/pynomaly/scripts/audit_api_keys.py|# &|'",
                     "true", "maint-monthly")),
    Drift("maint-old-rotated-log", ("MAINT-WEEKLY-LOG-CLEANUP",),
          f"web1: a rotated log 45 days old ({OLD_LOG}) that the weekly cleanup should have deleted",
          lambda c: c.sh("web1", f"touch -d '45 days ago' {OLD_LOG}"),
          lambda c: c.sh("web1", f"rm -f {OLD_LOG}")),
)
