"""Host-level checks' own logic (backups, checklist) on captured outputs, both directions."""

import datetime as dt
from types import SimpleNamespace

import pytest

from audit.hostparse import parse_ufw_status
from checks import test_backups as bak
from checks import test_checklist as chk

NOW = dt.datetime(2026, 11, 26, 5, 30, tzinfo=dt.UTC).timestamp()


def test_schedule_matches():
    assert bak.schedule_matches("0 */6 * * *", "0 */6 * * *")
    assert bak.schedule_matches("0 0,6,12,18 * * *", "0 */6 * * *")  # same schedule, other text
    assert not bak.schedule_matches("0 */12 * * *", "0 */6 * * *")
    assert not bak.schedule_matches("0 4 * * *", "0 2 * * *")
    assert not bak.schedule_matches("not a schedule", "0 2 * * *")


def test_cron_entry_for():
    crontab = ("0 2 * * * /opt/pynomaly/scripts/backup_app.sh\n"
               "0 3 * * * /usr/sbin/logrotate /etc/logrotate.d/pynomaly\n")
    assert bak.cron_entry_for(crontab, "/opt/pynomaly/scripts/backup_app.sh") == ["0 2 * * *"]
    assert bak.cron_entry_for(crontab, "/usr/sbin/logrotate /etc/logrotate.d/pynomaly") == ["0 3 * * *"]
    assert bak.cron_entry_for(crontab, "/opt/pynomaly/scripts/backup_db.sh") == []
    assert bak.cron_entry_for("0 3 * * * /usr/sbin/logrotate /etc/logrotate.d/other\n",
                              "/usr/sbin/logrotate /etc/logrotate.d/pynomaly") == []


def test_backup_files_and_dump():
    files = bak.backup_files(f"{NOW - 7200} 1764 pynomaly_backup_20261126_033000.sql.gz\n", NOW)
    assert files == [{"name": "pynomaly_backup_20261126_033000.sql.gz", "bytes": 1764, "age_hours": 2.0}]
    want = {"header": "-- PostgreSQL database dump", "footer": "-- PostgreSQL database dump complete"}
    tables = "CREATE TABLE public.users\nCREATE TABLE public.audit_logs\nCREATE TABLE public.api_keys\n"
    ok = bak.dump_is_complete("--\n-- PostgreSQL database dump\n--", "-- PostgreSQL database dump complete\n--",
                              tables, want)
    assert ok == {"header": True, "footer": True, "tables": []}
    bad = bak.dump_is_complete("garbage", "-- Name: users", "CREATE TABLE public.users\n", want)
    assert bad == {"header": False, "footer": False, "tables": ["api_keys", "audit_logs"]}


def test_shell_vars():
    v = bak.shell_vars('BACKUP_DIR="/opt/backups/postgres"\nTIMESTAMP=$(date +%Y%m%d_%H%M%S)\n')
    assert v == {"BACKUP_DIR": "/opt/backups/postgres", "TIMESTAMP": "$(date +%Y%m%d_%H%M%S)"}


def test_failed_logins_window():
    log = "\n".join([
        "2026-11-26T05:29:00.1+00:00 cache3 sshd[4242]: Failed password for root from 203.0.113.9 port 2222 ssh2",
        "2026-11-26T05:29:01.1+00:00 cache3 sshd[42]: Failed password for invalid user x from 203.0.113.9 port 1 ssh2",
        "2026-11-26T05:29:02.1+00:00 cache3 sshd[4242]: Invalid user admin from 203.0.113.9 port 2222",
        "2026-11-26T05:29:03.1+00:00 cache3 sshd[4242]: Failed password for root from 203.0.113.9 port 2222 ssh2",
        "2026-11-26T04:00:00.1+00:00 cache3 sshd[1]: Failed password for root from 198.51.100.1 port 2 ssh2",
        "2026-11-26T05:29:04.1+00:00 cache3 sshd[7]: Accepted publickey for root from 172.28.77.254 port 5 ssh2",
    ])
    counts = chk.failures_per_source(log, NOW, 600)
    assert counts == {"203.0.113.9": 4}  # the 04:00 one is outside the window, accepted ones never count
    assert chk.failures_per_source(log.splitlines()[-1], NOW, 600) == {}


def test_firewall_extra_rules():
    want = {"all": ["22/tcp"], "web": ["80/tcp", "443/tcp"], "db_primary": ["5432/tcp internal"]}
    db = SimpleNamespace(roles=frozenset({"db_primary", "backup_db"}))
    allowed = chk.allowance(db, want)
    assert allowed == [(22, False), (5432, True)]
    good = parse_ufw_status("Status: active\n\nTo  Action  From\n--  ------  ----\n"
                            "22/tcp                     ALLOW IN    Anywhere\n"
                            "5432/tcp                   ALLOW IN    172.28.77.0/25\n")
    assert chk.extra_rules(good, allowed, "172.28.77.0/25") == []
    bad = parse_ufw_status("Status: active\n\nTo  Action  From\n--  ------  ----\n"
                           "22/tcp                     ALLOW IN    Anywhere\n"
                           "5432/tcp                   ALLOW IN    Anywhere\n"
                           "9999/tcp                   ALLOW IN    172.28.77.0/25\n")
    assert chk.extra_rules(bad, allowed, "172.28.77.0/25") == [
        "5432/tcp ALLOW IN Anywhere", "9999/tcp ALLOW IN 172.28.77.0/25"]


def test_services_and_filesystems():
    assert chk.expected_services({"db_primary", "backup_db"}, {"all": ["ssh"], "db_primary": ["postgresql"]}) == [
        "ssh", "postgresql"]
    script = chk.service_states_script(["ssh"], [8000, 8001])
    assert "http://127.0.0.1:8001/health" in script
    assert "pynomaly-app:8000" in script
    df = "Filesystem 1024-blocks Used Available Capacity Mounted on\noverlay 1 1 1 27% /\ntmpfs 1 1 1 0% /proc/acpi\n"
    assert chk.filesystems(df) == {"/": 27}


def test_restore_row_counts():
    out = "newest f\nrestore rc=0\n--- restored\nusers 3\napi_keys 1\n--- live\nusers 4\napi_keys 1\n"
    assert chk.row_counts(out, "restored") == {"users": 3, "api_keys": 1}
    assert chk.row_counts(out, "live") == {"users": 4, "api_keys": 1}
    assert chk.row_counts("restore rc=3\n", "live") == {}
    truncated = "restore rc=0\n--- restored\n--- live\nusers 4\n"  # nothing restored
    assert chk.row_counts(truncated, "restored") == {}
    assert chk.row_counts(truncated, "live") == {"users": 4}


def test_cpu_load_percent():
    assert chk.cpu_load_percent("0.52 1.20 1.31 1/450 1592", "2\n") == (2, 1.2, 60.0)
    assert chk.cpu_load_percent("3.9 3.4 3.0 5/450 1592", "4") == (4, 3.4, 85.0)  # >= 80: non-compliant


def test_tcp_connect_ms_counts_a_timeout_as_latency(monkeypatch):
    """A lossy link (a SYN and its retransmission dropped) is latency, not could-not-audit; a host
    that never answers cannot be measured."""
    import contextlib

    outcomes = iter([None, TimeoutError(), None, TimeoutError(), TimeoutError()])

    def connect(*_args, **_kw):
        outcome = next(outcomes)
        if outcome:
            raise outcome
        return contextlib.nullcontext()

    monkeypatch.setattr(chk.socket, "create_connection", connect)
    times = chk.tcp_connect_ms("127.0.0.1", 22, timeout=2.0)
    assert len(times) == 5
    assert times.count(2000.0) == 3
    outcomes = iter([TimeoutError()] * 5)
    with pytest.raises(TimeoutError, match="no TCP connection within 2.0s in 5 tries"):
        chk.tcp_connect_ms("127.0.0.1", 22, timeout=2.0)
