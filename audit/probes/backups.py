"""Backup & Disaster Recovery (guide: Database Backup, Application Backup, Automated Backup
Schedule, and the daily task "Check backup status"): the backup scripts, root's crontab, the
backup files with their ages, the newest backup's integrity (gzip -t / tar -tzf, the pg_dump
header, footer and tables), and the logrotate entry the crontab runs.

One SSH round trip per host (`backups`), with the commands of the host's roles (backup_db,
backup_app, app); read-only. Schedules are compared as schedules (croniter), not as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from audit import guide
from audit.facts import probe
from audit.probes.shell import crontab_entries, same_schedule, script_commands  # noqa: F401

# ---------------------------------------------------------------- parsing (unit-tested)


@dataclass(frozen=True)
class BackupFile:
    name: str
    bytes: int
    age_hours: float


def backup_files(text: str, now: float) -> tuple[BackupFile, ...]:
    """`find -printf '%T@ %s %f'` lines -> backup files, oldest first."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            out.append(BackupFile(parts[2], int(parts[1]), round((now - float(parts[0])) / 3600, 2)))
    return tuple(sorted(out, key=lambda f: -f.age_hours))


def shell_vars(text: str) -> dict[str, str]:
    """A script's `NAME=value` assignments (quotes dropped)."""
    return {m.group(1): m.group(2).strip().strip('"\'') for m in re.finditer(r"^\s*([A-Z_]+)=(.+)$", text, re.M)}


def dump_is_complete(head: str, tail: str, tables: str, want: dict) -> dict:
    """A pg_dump's header and completion marker, and the app's tables it lacks."""
    names = {t.split()[-1].split(".")[-1].strip('"') for t in tables.splitlines() if t.strip()}
    return {"header": want["header"] in head, "footer": want["footer"] in tail,
            "tables": sorted(set(guide.APP_TABLES) - names)}


def cron_entry_for(crontab: str, command: str) -> list[str]:
    """Schedules of the crontab lines that run `command` (its words, arguments included)."""
    words = command.split()
    return [e["schedule"] for e in crontab_entries(crontab) if e["command"].split()[: len(words)] == words]


def cleanup_lines(commands: list[str], pattern: str, max_days: int) -> list[str]:
    """The script's `find ... -name PATTERN -mtime +DAYS -delete` lines."""
    return [ln for ln in commands
            if ln.startswith("find ") and pattern in ln and f"-mtime +{max_days}" in ln and "-delete" in ln]


def dump_script(text: str) -> dict:
    """backup_db.sh as the guide writes it: where, what, as whom, how, under which name."""
    v, lines = shell_vars(text), script_commands(text)
    dump = next((ln for ln in lines if "pg_dump" in ln and "gzip" in ln), "")
    return {"backup_dir": v.get("BACKUP_DIR"), "database": v.get("DB_NAME"), "user": v.get("DB_USER"),
            "pipeline": "pg_dump | gzip" if re.search(r"pg_dump\b.*\|\s*gzip\b", dump) else dump or None,
            "file_pattern": "pynomaly_backup_%Y%m%d_%H%M%S.sql.gz"
            if "pynomaly_backup_$TIMESTAMP.sql.gz" in dump and "%Y%m%d_%H%M%S" in v.get("TIMESTAMP", "") else None,
            "mkdir": any(re.match(r"mkdir -p \$\{?BACKUP_DIR", ln) for ln in lines)}


def archive_script(text: str, dir_exists: bool) -> dict:
    """backup_app.sh as the guide writes it: the tar line's source and target."""
    v = shell_vars(text)
    tar = next((ln for ln in script_commands(text) if ln.startswith("tar ")), "")
    return {"source": v.get("APP_DIR") if re.search(r"\$\{?APP_DIR\}?\s*$", tar) else None,
            "backup_dir": v.get("BACKUP_DIR") if dir_exists else "missing",
            "file_pattern": "pynomaly_app_%Y%m%d_%H%M%S.tar.gz"
            if re.search(r"-c?z\S*f \$\{?BACKUP_DIR\}?/pynomaly_app_\$\{?TIMESTAMP\}?\.tar\.gz", tar)
            and "%Y%m%d_%H%M%S" in v.get("TIMESTAMP", "") else None,
            "tar line": tar}


# ---------------------------------------------------------------- facts


@dataclass(frozen=True)
class Script:
    """A backup script: `stat` (mode, owner, 'executable' when it is) and its text."""

    path: str
    state: str
    text: str

    @property
    def executable(self) -> bool:
        return "No such file" not in self.state and self.state.endswith("executable")

    @property
    def commands(self) -> list[str]:
        return script_commands(self.text)


@dataclass(frozen=True)
class Backups:
    """One kind of backup: its script, its files (oldest first) and the newest one's integrity
    output ('' when there is no backup)."""

    directory: str
    script: Script
    files: tuple[BackupFile, ...]
    newest: str

    @property
    def latest(self) -> BackupFile | None:
        return self.files[-1] if self.files else None


@dataclass(frozen=True)
class BackupFacts:
    now: float
    today: str                              # YYYYmmdd on the host
    crontab: str                            # root's
    db: Backups | None = None               # backup_db hosts
    dump: dict | None = None                # the newest dump: head, tail, CREATE TABLE lines
    app: Backups | None = None              # backup_app hosts
    app_dir_exists: bool = False
    logrotate_conf: str | None = None       # app hosts: the entry's text ('' when missing)
    logrotate_rc: str = ""                  # `logrotate -d` exit status, "rc=N"


def _files(backup_dir: str, backup_glob: str) -> str:
    return f"$SUDO find {backup_dir} -maxdepth 1 -name '{backup_glob}' -printf '%T@ %s %f\\n' | sort -n"


def _newest(backup_dir: str, backup_glob: str, var: str) -> str:
    """Shell: the newest backup's path in `$var` (audit/sudo.py allows only the guide's names)."""
    return (f"{var}=$($SUDO find {backup_dir} -maxdepth 1 -name '{backup_glob}' -printf '%T@ %p\\n' | sort -n "
            f"| tail -1 | cut -d' ' -f2-); [ -n \"${var}\" ] || exit 0; ")


def _script(backup_script: str) -> dict[str, str]:
    return {"state": f"$SUDO stat -c '%a %U:%G' {backup_script} 2>&1; $SUDO test -x {backup_script} && echo executable",
            "text": f"$SUDO cat {backup_script} 2>&1"}


def commands(roles) -> dict[str, str]:
    """What the backup checks read from a host with these roles (one round trip)."""
    cmds = {"now": "date +%s", "today": "date +%Y%m%d", "crontab": "$SUDO crontab -l -u root 2>&1"}
    if "backup_db" in roles:
        newest = _newest(guide.BACKUP_DB_DIR, "*.sql.gz", "db_backup")
        cmds |= {f"db_{k}": v for k, v in _script(guide.BACKUP_DB_SCRIPT).items()}
        cmds |= {"db_files": _files(guide.BACKUP_DB_DIR, "*.sql.gz"),
                 "db_newest": newest + "echo \"$db_backup\"; $SUDO gzip -t \"$db_backup\" 2>&1 && echo gzip-ok",
                 "db_head": newest + "$SUDO gunzip -c \"$db_backup\" | head -5",
                 "db_tail": newest + "$SUDO gunzip -c \"$db_backup\" | tail -8",
                 "db_tables": newest + "$SUDO gunzip -c \"$db_backup\" | grep -oE '^CREATE TABLE [^ ]+'"}
    if "backup_app" in roles:
        cmds |= {f"app_{k}": v for k, v in _script(guide.BACKUP_APP_SCRIPT).items()}
        cmds |= {"app_dir": f"$SUDO test -d {guide.BACKUP_APP_DIR} && echo exists",
                 "app_files": _files(guide.BACKUP_APP_DIR, "*.tar.gz"),
                 "app_newest": _newest(guide.BACKUP_APP_DIR, "*.tar.gz", "app_backup") + "echo \"$app_backup\"; "
                               "list=$($SUDO tar -tzf \"$app_backup\" 2>&1) && echo tar-ok; printf '%s\\n' \"$list\" "
                               "| grep -c .; printf '%s\\n' \"$list\" | grep -m3 '^opt/pynomaly'"}
    if "app" in roles:
        cmds |= {"logrotate_conf": f"$SUDO cat {guide.LOGROTATE_CONF} 2>&1",
                 "logrotate_rc": f"$SUDO logrotate -d {guide.LOGROTATE_CONF} >/dev/null 2>&1; echo rc=$?"}
    return cmds


@probe()
def backups(session, host) -> BackupFacts:
    """Scripts, crontab, backup files and the newest backups' integrity, logrotate (one round trip)."""
    out = session.access.collect(host, commands(host.roles))
    now = float(out["now"])

    def kind(prefix: str, script: str, directory: str) -> Backups:
        return Backups(directory, Script(script, out[f"{prefix}_state"], out[f"{prefix}_text"]),
                       backup_files(out[f"{prefix}_files"], now), out[f"{prefix}_newest"])

    facts = {"now": now, "today": out["today"], "crontab": out["crontab"]}
    if "backup_db" in host.roles:
        facts |= {"db": kind("db", guide.BACKUP_DB_SCRIPT, guide.BACKUP_DB_DIR),
                  "dump": {k: out[f"db_{k}"] for k in ("head", "tail", "tables")}}
    if "backup_app" in host.roles:
        facts |= {"app": kind("app", guide.BACKUP_APP_SCRIPT, guide.BACKUP_APP_DIR),
                  "app_dir_exists": out["app_dir"] == "exists"}
    if "app" in host.roles:
        facts |= {"logrotate_conf": out["logrotate_conf"], "logrotate_rc": out["logrotate_rc"]}
    return BackupFacts(**facts)
