"""Monitoring checklist probe (audit/probes/checklist.py) on captured outputs, both directions: the
forms a host may print (Debian's RFC 3339 rsyslog, the traditional syslog stamp, RHEL's secure,
the journal; systemd or init scripts), the firewall allowance, the restore test's counts, and the
empty cases."""

import contextlib
import datetime as dt
import os
import subprocess
import textwrap

import pytest

from audit.outcomes import CouldNotAudit
from audit.probes import checklist as chk
from audit.probes.network import UNREADABLE, Rule

NOW = dt.datetime(2026, 11, 26, 5, 30, tzinfo=dt.UTC).timestamp()
FAILED = "Failed password for root from 203.0.113.9 port 2222 ssh2"


def facts(**kw) -> chk.ChecklistFacts:
    base = {"host": "cache3", "nproc": "2", "loadavg": "0.52 1.20 1.31 1/450 1592",
            "meminfo": "MemTotal: 1000 kB\nMemAvailable: 250 kB\n", "filesystems": {"/": 27}, "services": {},
            "now": NOW, "utc_offset": "+0000", "auth_source": "/var/log/auth.log", "auth_log": ""}
    return chk.ChecklistFacts(**{**base, **kw})


# ---------------------------------------------------------------- failed logins, every log format

def test_failed_logins_rfc3339_window():
    log = "\n".join([
        f"2026-11-26T05:29:00.1+00:00 cache3 sshd[4242]: {FAILED}",
        "2026-11-26T05:29:01.1+00:00 cache3 sshd[42]: Failed password for invalid user x from 203.0.113.9 port 1 ssh2",
        "2026-11-26T05:29:02.1+00:00 cache3 sshd[4242]: Invalid user admin from 203.0.113.9 port 2222",
        f"2026-11-26T05:29:03.1+00:00 cache3 sshd[4242]: {FAILED}",
        "2026-11-26T04:00:00.1+00:00 cache3 sshd[1]: Failed password for root from 198.51.100.1 port 2 ssh2",
        "2026-11-26T05:29:04.1+00:00 cache3 sshd[7]: Accepted publickey for root from 172.28.77.254 port 5 ssh2",
    ])
    assert chk.failures_per_source(log, NOW, 600) == {"203.0.113.9": 4}  # 04:00 is outside; accepted never counts
    assert chk.failures_per_source(log.splitlines()[-1], NOW, 600) == {}


def test_failed_logins_traditional_syslog_in_local_time():
    log = "\n".join([
        f"Nov 26 06:29:00 cache3 sshd[123]: {FAILED}",  # 05:29 UTC on a +0100 host
        "Nov 26 06:29:01 cache3 sshd[123]: Failed publickey for git from 203.0.113.9 port 2 ssh2",
        "Nov  6 06:29:01 cache3 sshd[123]: Failed password for root from 198.51.100.7 port 2 ssh2",
    ])
    assert chk.failures_per_source(log, NOW, 600, "+0100") == {"203.0.113.9": 2}
    assert chk.failures_per_source(log, NOW, 600, "+0000") == {}  # read as UTC they are an hour off


def test_failed_logins_rhel_secure_journal_and_sshd_session():
    secure = f"Nov 26 05:29:30 db1 sshd[2231]: {FAILED}\nNov 26 05:29:31 db1 sshd[2231]: Invalid user  from 192.0.2.4"
    assert chk.failures_per_source(secure, NOW, 600) == {"203.0.113.9": 1, "192.0.2.4": 1}
    journal = (f"2026-11-26T05:29:10+0000 web1 sshd-session[88]: {FAILED}\n"
               "2026-11-26T05:29:11+0000 web1 sshd-session[88]: Failed password for invalid user  from 192.0.2.4 "
               "port 5 ssh2")
    assert chk.failures_per_source(journal, NOW, 600) == {"203.0.113.9": 1, "192.0.2.4": 1}


def test_log_seconds_year_rollover_and_garbage():
    new_year = dt.datetime(2027, 1, 1, 0, 5, tzinfo=dt.UTC).timestamp()
    assert chk.log_seconds("Dec 31 23:59:00", new_year) == dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC).timestamp()
    assert chk.log_seconds("2026-11-26T05:29:00", NOW, "+0100") == NOW - 60 - 3600  # no zone: the host's
    assert chk.log_seconds("Foo 99 99:99:99", NOW) is None


def test_failures_need_a_readable_log():
    with pytest.raises(CouldNotAudit, match="no journal"):
        facts(auth_source=None).failures(600)
    with pytest.raises(CouldNotAudit, match="cannot read"):
        facts(auth_log=f"tail: cannot open\n{UNREADABLE}").failures(600)
    assert facts(auth_log="").failures(600) == {}  # a log that was read, with no failure in it


# ---------------------------------------------------------------- load, memory, disk

def test_cpu_memory_disk():
    assert chk.cpu_load_percent("0.52 1.20 1.31 1/450 1592", "2\n") == (2, 1.2, 60.0)
    assert chk.cpu_load_percent("3.9 3.4 3.0 5/450 1592", "4") == (4, 3.4, 85.0)  # >= 80: non-compliant
    assert chk.memory_used_percent("MemTotal: 1000 kB\nMemAvailable: 250 kB\n") == 75.0
    assert chk.memory_used_percent("MemTotal: 1000 kB\nMemAvailable: 100 kB\n") == 90.0
    df = ("Filesystem 1024-blocks Used Available Capacity Mounted on\noverlay 264212084 27869684 78521228 27% /\n"
          "shm 262144 236544 25600 91% /dev/shm\ntmpfs 1 1 1 0% /proc/acpi\n")
    assert chk.filesystems(df) == {"/": 27, "/dev/shm": 91}
    assert chk.filesystems("") == {}


def test_unreadable_load_and_memory_cannot_be_audited():
    assert facts().cpu() == (2, 1.2, 60.0)
    assert facts().memory_percent() == 75.0
    with pytest.raises(CouldNotAudit, match="loadavg"):
        facts(loadavg="", nproc="").cpu()
    with pytest.raises(CouldNotAudit, match="MemAvailable missing"):
        facts(meminfo="MemTotal: 1000 kB\n").memory_percent()


# ---------------------------------------------------------------- services, systemd or init scripts

def fake_host(tmp_path, systemd: bool) -> dict:
    """A PATH with fake `systemctl` and `service`, and an init.d folder: ssh runs (as sshd under
    systemd, RHEL's name), cron is stopped, fail2ban is not installed, under systemd rsyslog is
    masked and nginx failed."""
    bin_dir, init_d = tmp_path / "bin", tmp_path / "init.d"
    bin_dir.mkdir()
    init_d.mkdir()
    (bin_dir / "systemctl").write_text(textwrap.dedent("""\
        #!/bin/sh
        case "$1 $2 $3 $4" in
          "show -p LoadState sshd.service"|"show -p LoadState cron.service") echo LoadState=loaded ;;
          "show -p LoadState nginx.service") echo LoadState=loaded ;;
          "show -p LoadState rsyslog.service") echo LoadState=masked ;;
          "show -p LoadState "*) echo LoadState=not-found ;;
          "is-active sshd.service"*) echo active ;;
          "is-active cron.service"*|"is-active rsyslog.service"*) echo inactive; exit 3 ;;
          "is-active nginx.service"*) echo failed; exit 3 ;;
          "is-enabled rsyslog.service"*) echo masked; exit 1 ;;
          "is-enabled "*) echo enabled ;;
        esac
        """))
    (bin_dir / "service").write_text('#!/bin/sh\n[ "$1 $2" = "ssh status" ]\n')
    for name in ("ssh", "cron"):
        (init_d / name).write_text("#!/bin/sh\n")
    for f in [*bin_dir.iterdir(), *init_d.iterdir()]:
        f.chmod(0o755)
    if systemd:
        (tmp_path / "systemd").mkdir()
    return {"systemd": str(tmp_path / "systemd"), "init_d": str(init_d),
            "env": {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SUDO": ""}}


@pytest.mark.parametrize("systemd", [True, False], ids=["systemd", "init-scripts"])
def test_service_states_script(tmp_path, systemd):
    host = fake_host(tmp_path, systemd)
    script = chk.service_states_script(["ssh", "cron", "fail2ban", "rsyslog", "nginx"], [], host["systemd"],
                                       host["init_d"])
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=host["env"], check=True).stdout
    states = chk.service_states(out)
    if systemd:  # a masked or failed unit keeps its state, for the evidence and the message
        assert states == {"ssh": "active enabled (sshd)", "cron": "inactive enabled", "fail2ban": "not-installed",
                          "rsyslog": "inactive masked", "nginx": "failed enabled"}
    else:
        assert states == {"ssh": "active", "cron": "inactive", "fail2ban": "not-installed",
                          "rsyslog": "not-installed", "nginx": "not-installed"}
    assert [s for s, st in states.items() if st.startswith("active")] == ["ssh"]


def test_expected_services_and_app_instances():
    assert chk.expected_services({"db_primary", "backup_db"}, {"all": ["ssh"], "db_primary": ["postgresql"]}) == [
        "ssh", "postgresql"]
    script = chk.service_states_script(["ssh"], [8000, 8001])
    assert "http://127.0.0.1:8001/health" in script
    assert "pynomaly-app:8000" in script
    assert chk.service_states("") == {}


# ---------------------------------------------------------------- firewall allowance

def test_firewall_allowance():
    want = {"all": ["22/tcp"], "web": ["80/tcp", "443/tcp"], "db_primary": ["5432/tcp internal"]}
    allowed = chk.allowance({"db_primary", "backup_db"}, want)
    assert allowed == [(22, False), (5432, True)]
    net = "172.28.77.0/25"
    good = [Rule("22/tcp", "ALLOW IN", "Anywhere"), Rule("5432/tcp", "ALLOW IN", net), Rule("9/tcp", "DENY IN", "x")]
    assert all(chk.permitted(r, allowed, r.source == net) for r in good)
    bad = [Rule("5432/tcp", "ALLOW IN", "Anywhere"), Rule("9999/tcp", "ALLOW IN", net),
           Rule("Anywhere", "ALLOW IN", net)]
    assert not any(chk.permitted(r, allowed, r.source == net) for r in bad)
    guide_iptables = ["-A INPUT -i lo -j ACCEPT", "-A INPUT -p tcp --dport 22 -j ACCEPT",
                      "-A INPUT -p tcp --dport 443 -j ACCEPT", "-A INPUT -j DROP"]
    assert chk.iptables_allowance(guide_iptables) == [(22, False), (443, False)]


# ---------------------------------------------------------------- latency, restore

def test_tcp_connect_ms_counts_a_timeout_as_latency(monkeypatch):
    """A lossy link (a SYN and its retransmission dropped) is latency, not could-not-audit; a host
    that never answers cannot be measured."""
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
    assert chk.Latency("db2:22", (1.0, 1000.0, 2.0)).median == 2.0


def test_restore_row_counts():
    out = "newest f\nrestore rc=0\n--- restored\nusers 3\napi_keys 1\n--- live\nusers 4\napi_keys 1\n"
    assert chk.row_counts(out, "restored") == {"users": 3, "api_keys": 1}
    assert chk.row_counts(out, "live") == {"users": 4, "api_keys": 1}
    assert chk.row_counts("restore rc=3\n", "live") == {}
    truncated = "restore rc=0\n--- restored\n--- live\nusers 4\n"  # nothing restored
    assert chk.row_counts(truncated, "restored") == {}
    assert chk.row_counts(truncated, "live") == {"users": 4}
    script = chk.restore_script("pynomaly_restore_check_1", "pynomaly_prod", "/opt/backups/postgres")
    assert "DROP DATABASE IF EXISTS pynomaly_restore_check_1" in script
    assert "$SUDO runuser -u postgres" in script


def test_restore_refused_by_sudo_is_could_not_audit_naming_sudo():
    """The opt-in restore test under the default sudo rules (no `writes` rules): sudo refuses the
    scratch database; that says nothing of the backup (never a failed restore)."""
    from types import SimpleNamespace

    from audit.outcomes import CouldNotAudit

    def session(rc, stdout, stderr=""):
        ran = SimpleNamespace(rc=rc, stdout=stdout, stderr=stderr)
        return SimpleNamespace(expected=lambda _r: {"database": "pynomaly_prod", "backup_dir": "/opt/backups/postgres"},
                               access=SimpleNamespace(run=lambda *_a, **_k: ran))

    host = SimpleNamespace(name="db1")
    refused = session(3, "newest /opt/backups/postgres/x.sql.gz\nsudo: a password is required\n")
    with pytest.raises(CouldNotAudit) as exc:
        chk.restore_newest_backup(refused, host)
    assert exc.value.service == "sudo"
    assert "a password is required" in exc.value.why
    with pytest.raises(CouldNotAudit) as exc:
        chk.restore_newest_backup(session(3, "newest f\nERROR:  permission denied to create database\n"), host)
    assert exc.value.service == "PostgreSQL"
    assert "permission denied" in exc.value.why
    ok = chk.restore_newest_backup(session(0, "newest f\nrestore rc=0\n--- restored\nusers 3\n--- live\nusers 3\n"),
                                   host)
    assert ok.restored == {"users": 3}
