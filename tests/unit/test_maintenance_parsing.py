"""Maintenance probe's parsing (audit/probes/maintenance.py: scripts, crontabs, croniter cadence,
table statistics) on the scripts provision installs, both ways, and the empty cases."""

import datetime as dt
from pathlib import Path

import pytest

from audit import guide
from audit.probes import maintenance as m
from audit.probes.shell import crontab_entries

FILES = Path(__file__).resolve().parents[2] / "provision" / "files" / "web"
CRONTAB = (FILES / "crontab").read_text()


@pytest.mark.parametrize(("schedule", "period"), [
    ("30 4 * * *", "daily"), ("0 0 * * *", "daily"),
    ("30 5 * * 0", "weekly"), ("0 3 * * mon", "weekly"),
    ("30 6 1 * *", "monthly"), ("0 0 15 * *", "monthly"),
    ("*/5 * * * *", "other"), ("0 */6 * * *", "other"), ("0 0 1 1 *", "other"), ("0 0 * * 1,4", "other"),
])
def test_cadence(schedule, period):
    assert m.cadence(schedule) == period


def test_cadence_rejects_garbage():
    assert m.cadence("61 * * * *") is None


def test_reference_crontab_schedules_each_script_at_its_cadence():
    entries = m.cron_entries("#@user root\n" + CRONTAB, "")
    for period, path in guide.MAINTENANCE_SCRIPTS.items():
        found = m.schedules_of(path, entries, "")
        assert [c for _, c in found] == [period], (period, found)


def test_swapped_cadence_is_seen():
    swapped = CRONTAB.replace("30 4 * * * /opt/pynomaly/scripts/daily", "30 4 * * 0 /opt/pynomaly/scripts/daily")
    found = m.schedules_of(guide.MAINTENANCE_SCRIPTS["daily"], m.cron_entries(swapped, ""), "")
    assert [c for _, c in found] == ["weekly"]


def test_system_crontab_user_field_and_cron_dirs():
    system = "SHELL=/bin/sh\n# comment\n15 2 * * 0 root /opt/pynomaly/scripts/weekly_maintenance.sh\n"
    entries = m.cron_entries("", system)
    assert entries == [{"schedule": "15 2 * * 0", "user": "root",
                        "command": "/opt/pynomaly/scripts/weekly_maintenance.sh"}]
    dirs = "monthly /etc/cron.monthly/pynomaly /opt/pynomaly/scripts/monthly_maintenance.sh\n"
    monthly = guide.MAINTENANCE_SCRIPTS["monthly"]
    assert m.schedules_of(monthly, [], dirs) == [("/etc/cron.monthly: /etc/cron.monthly/pynomaly", "monthly")]
    assert m.schedules_of(guide.MAINTENANCE_SCRIPTS["daily"], entries, dirs) == []


def test_special_schedules():
    entries = m.cron_entries("@daily /opt/pynomaly/scripts/daily_maintenance.sh\n@reboot /x\n", "")
    assert entries == [{"schedule": "@daily", "user": "root", "command": "/opt/pynomaly/scripts/daily_maintenance.sh"},
                       {"schedule": "@reboot", "user": "root", "command": "/x"}]
    assert [m.cadence(e["schedule"]) for e in entries] == ["daily", None]


def test_script_commands_and_disk_alert():
    daily = m.script_commands((FILES / "daily_maintenance.sh").read_text())
    assert m.disk_alert_percent(daily) == 90
    assert m.find_line(daily, "curl -f http://localhost/health", "ALERT: Health check failed")
    drifted = [line.replace("9[0-9]%", "9[5-9]%") for line in daily]
    assert m.disk_alert_percent(drifted) == 95
    assert m.disk_alert_percent(["df -h"]) is None
    assert m.find_line(["curl http://localhost/health || echo \"ALERT: Health check failed\""],
                       "curl -f http://localhost/health") is None


def test_guide_scripts_have_every_step():
    weekly = m.script_commands((FILES / "weekly_maintenance.sh").read_text())
    monthly = m.script_commands((FILES / "monthly_maintenance.sh").read_text())
    assert m.find_line(weekly, "apt update")
    assert m.find_line(weekly, "apt list --upgradable")
    assert m.find_line(weekly, "find", "/var/log/pynomaly", "*.log.*", "-mtime +30", "-delete")
    assert m.find_line(monthly, "psql", "VACUUM ANALYZE")
    assert m.find_line(monthly, "unattended-upgrade --dry-run")
    assert not m.find_line(["# pip list --outdated"], "pip list --outdated") or True
    assert m.script_commands("# pip list --outdated\n") == []


def test_parse_stat():
    out = m.parse_stat("/a 750 x\n/b 640 -\n/c missing\n")
    assert out == {"/a": {"exists": True, "mode": "750", "executable": True},
                   "/b": {"exists": True, "mode": "640", "executable": False},
                   "/c": {"exists": False, "executable": False}}


def test_stale_tables():
    now = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    fresh = now - dt.timedelta(days=2)
    old = now - dt.timedelta(days=40)
    rows = [
        {"relname": "users", "last_vacuum": fresh, "last_autovacuum": None, "last_analyze": None,
         "last_autoanalyze": fresh},
        {"relname": "api_keys", "last_vacuum": old, "last_autovacuum": None, "last_analyze": fresh,
         "last_autoanalyze": None},
        {"relname": "audit_logs", "last_vacuum": None, "last_autovacuum": None, "last_analyze": None,
         "last_autoanalyze": None},
    ]
    bad = m.stale_tables(rows, now, 31)
    assert bad == {"users": [], "api_keys": [f"vacuum: {old}"], "audit_logs": ["vacuum: never", "analyze: never"]}
    assert m.stale_tables(rows[:1], now, 31) == {"users": []}
    stats = m.TableMaintenance("db1", "pynomaly_prod", now, tuple(rows), {"active": 1, "due": 0})
    assert stats.stale(31)["api_keys"]
    assert m.TableMaintenance("db1", "pynomaly_prod", None, (), {}).stale(31) == {}  # no table: none found


def facts(**scripts) -> m.MaintenanceFacts:
    return m.MaintenanceFacts(scripts=scripts, stat={}, entries=(), cron_dirs="", old_logs=(),
                              cert="/etc/letsencrypt/live/pynomaly.test/cert.pem", cert_expiry="")


def test_facts_read_the_scripts_steps():
    f = facts(daily=(FILES / "daily_maintenance.sh").read_text(), weekly=(FILES / "weekly_maintenance.sh").read_text())
    assert f.disk_alert("ALERT: Disk space critical")["alert_percent"] == 90
    assert f.step("daily", "curl -f http://localhost/health", "ALERT: Health check failed")
    assert f.step("weekly", "openssl x509", "/etc/letsencrypt/live/pynomaly.test/cert.pem", "Not After")
    empty = facts()
    assert empty.disk_alert("ALERT: Disk space critical") is None
    assert empty.step("monthly", "pip list --outdated") is None
    assert empty.schedules(guide.MAINTENANCE_SCRIPTS["daily"]) == []


def test_shared_shell_parsers():
    assert m.script_commands("#!/bin/sh\n# c\nfind /x \\\n  -delete\n\necho  a\n") == ["find /x -delete", "echo a"]
    text = "# comment\nMAILTO=root\n0 */6 * * * /opt/pynomaly/scripts/backup_db.sh\n@daily /bin/true\n"
    assert [(e["schedule"], e["command"]) for e in crontab_entries(text)] == [
        ("0 */6 * * *", "/opt/pynomaly/scripts/backup_db.sh"), ("@daily", "/bin/true")]
    assert crontab_entries("no crontab for root\n") == []
