"""Guide: Maintenance > Regular Tasks - the daily, weekly and monthly scripts, their schedule and
what shows that they do their job (old logs gone, certificate readable, tables vacuumed and
analysed within the month). What is read, and how: audit/probes/maintenance.py.
"""

from __future__ import annotations

import pytest

from audit import guide
from audit.marks import per_requirement

APP = pytest.mark.roles("app")


def _step(judge, maintenance, period: str, what: str, *needles: str) -> None:
    """The script of `period` has a command line with every needle."""
    line = maintenance.step(period, *needles)
    judge.that(line is not None, what=f"{guide.MAINTENANCE_SCRIPTS[period]}: a line to {what}", found=line,
               expected=" ... ".join(needles))


# ---------------------------------------------------------------- scripts present and scheduled

@APP
@per_requirement("MAINT-DAILY-SCRIPT", "MAINT-WEEKLY-SCRIPT", "MAINT-MONTHLY-SCRIPT")
def check_maintenance_script_is_executable(judge, maintenance, req_id):
    """"/opt/pynomaly/scripts/{daily,weekly,monthly}_maintenance.sh" (Maintenance > Regular Tasks)."""
    path = judge.expected
    stat = maintenance.stat.get(path, {"exists": False, "executable": False})
    judge.that(stat["exists"] and stat["executable"], what=path, found=stat,
               expected={"exists": True, "executable": True})


@APP
@per_requirement("MAINT-DAILY-SCHEDULED", "MAINT-WEEKLY-SCHEDULED", "MAINT-MONTHLY-SCHEDULED")
def check_maintenance_script_is_scheduled(judge, maintenance, req_id):
    """Daily, Weekly and Monthly Tasks: each script runs at its cadence (cron, read with croniter)."""
    period = judge.expected["period"]
    path = guide.MAINTENANCE_SCRIPTS[period]
    found = maintenance.schedules(path)
    judge.that(any(c == period for _, c in found), what=f"schedule of {path}",
               found=[f"{how}: {c}" for how, c in found], expected=f"{period} (a cron entry that runs it)")


# ---------------------------------------------------------------- what each script does

@APP
@pytest.mark.requirement("MAINT-DAILY-DISK-ALERT")
def check_daily_disk_alert(judge, maintenance):
    """"df -h | grep -E "9[0-9]%" && echo "ALERT: Disk space critical"" (Daily Tasks)."""
    want = judge.expected
    alert = maintenance.disk_alert(want["message"])
    percent = alert and alert["alert_percent"]
    judge.that(percent is not None and percent <= want["alert_percent"], what="daily_maintenance.sh: disk alert",
               found=alert, expected=want)


@APP
@pytest.mark.requirement("MAINT-DAILY-ERROR-LOG-SCAN")
def check_daily_error_log_scan(judge, maintenance):
    """"grep -i error /var/log/pynomaly/error.log | tail -10" (Daily Tasks)."""
    _step(judge, maintenance, "daily", "scan the error log", "grep", "error", judge.expected)


@APP
@pytest.mark.requirement("MAINT-DAILY-BACKUP-CHECK")
def check_daily_backup_check(judge, maintenance):
    """"test -f /opt/backups/postgres/pynomaly_backup_$(date +%Y%m%d)*.sql.gz || echo "ALERT: No
    backup found for today"" (Daily Tasks)."""
    _step(judge, maintenance, "daily", "verify today's backup", judge.expected["pattern"], judge.expected["message"])


@APP
@pytest.mark.requirement("MAINT-DAILY-HEALTH-CHECK")
def check_daily_health_check(judge, maintenance):
    """"curl -f http://localhost/health || echo "ALERT: Health check failed"" (Daily Tasks)."""
    _step(judge, maintenance, "daily", "alert on a failed health check", judge.expected["command"],
          judge.expected["message"])


@APP
@pytest.mark.requirement("MAINT-WEEKLY-APT-UPGRADABLE")
def check_weekly_lists_upgradable_packages(judge, maintenance):
    """"sudo apt update && sudo apt list --upgradable" (Weekly Tasks)."""
    _step(judge, maintenance, "weekly", "list upgradable packages", *judge.expected)


@APP
@pytest.mark.requirement("MAINT-WEEKLY-DB-STATS")
def check_weekly_reports_table_activity(judge, maintenance):
    """"psql ... -c "SELECT schemaname, tablename, n_tup_ins, n_tup_upd, n_tup_del FROM
    pg_stat_user_tables;"" (Weekly Tasks)."""
    _step(judge, maintenance, "weekly", "report table activity", "psql", judge.expected)


@APP
@pytest.mark.requirement("MAINT-WEEKLY-CERT-EXPIRY")
def check_weekly_reports_certificate_expiry(judge, maintenance):
    """"openssl x509 -in /etc/letsencrypt/live/your-domain.com/cert.pem -text -noout | grep "Not
    After"" (Weekly Tasks), with the deployment's public name; the certificate it reads exists."""
    _step(judge, maintenance, "weekly", "report the certificate's expiry", "openssl x509", maintenance.cert,
          "Not After")
    judge.that(maintenance.cert_expiry.startswith("notAfter="), what=f"expiry of {maintenance.cert}",
               found=maintenance.cert_expiry, expected="notAfter=<date> (a readable certificate)")


@APP
@pytest.mark.requirement("MAINT-WEEKLY-LOG-CLEANUP")
def check_weekly_log_cleanup(judge, maintenance):
    """"find /var/log/pynomaly -name "*.log.*" -mtime +30 -delete" (Weekly Tasks); no rotated log
    older than 30 days is left."""
    want = judge.expected
    _step(judge, maintenance, "weekly", "delete old rotated logs", "find", want["dir"], want["pattern"],
          f"-mtime +{want['max_age_days']}", "-delete")
    old = maintenance.old_logs
    judge.that(old == (), allow_empty=True, found=f"no folder {want['dir']}" if old is None else list(old),
               what=f"rotated logs older than {want['max_age_days']} days in {want['dir']}", expected="none")


@APP
@pytest.mark.requirement("MAINT-MONTHLY-OUTDATED-DEPS")
def check_monthly_lists_outdated_dependencies(judge, maintenance):
    """"pip list --outdated" (Monthly Tasks)."""
    _step(judge, maintenance, "monthly", "list outdated dependencies", judge.expected)


@APP
@pytest.mark.requirement("MAINT-MONTHLY-SECURITY-AUDIT")
def check_monthly_security_audit(judge, maintenance):
    """"sudo apt install -y unattended-upgrades; sudo unattended-upgrade --dry-run" (Monthly Tasks)."""
    for step in judge.expected:
        _step(judge, maintenance, "monthly", f"run `{step}`", step)


@APP
@pytest.mark.requirement("MAINT-MONTHLY-API-KEY-AUDIT")
def check_monthly_api_key_audit(judge, maintenance, table_maintenance):
    """"python /opt/pynomaly/scripts/audit_api_keys.py" (Monthly Tasks: review and rotate API keys);
    the script exists. Evidence: active API keys older than 90 days, counted from api_keys."""
    path = judge.expected
    _step(judge, maintenance, "monthly", "review the API keys", "python", path)
    judge.that(maintenance.stat.get(path, {}).get("exists", False), what=path,
               found={**maintenance.stat.get(path, {"exists": False}), "api_keys": table_maintenance.api_keys},
               expected={"exists": True})


@APP
@pytest.mark.requirement("MAINT-MONTHLY-VACUUM-ANALYZE")
def check_monthly_vacuum_analyze(judge, maintenance, table_maintenance):
    """"sudo -u postgres psql -d pynomaly_prod -c "VACUUM ANALYZE;"" (Monthly Tasks); every user
    table of the primary was vacuumed and analysed within the month (pg_stat_user_tables)."""
    _step(judge, maintenance, "monthly", "run VACUUM ANALYZE", "psql", "VACUUM ANALYZE")
    want = judge.expected
    judge.each(table_maintenance.stale(want["max_age_days"]), lambda problems: not problems,
               what=f"{table_maintenance.host} {want['database']}: vacuum/analyze older than {want['max_age_days']} d",
               expected="every table vacuumed and analysed within the month")
