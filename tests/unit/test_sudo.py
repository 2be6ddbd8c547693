"""What the audit runs as root (audit/sudo.py) against what the probes run: every `$SUDO` use in
audit/probes/*.py (and the access layer's own `sudo -n`) is a command of the list, argument by
argument, and every command of the list is some probe's. The sudoers file rendered from it: each
command with exactly its arguments, escaped so that sudo matches nothing else."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

from audit import guide, sudo, sudoers
from audit.inventory import load_inventory
from audit.sudo import Pattern

ROOT = Path(__file__).resolve().parents[2]
PROBES = sorted((ROOT / "audit" / "probes").glob("*.py"))
WRAPPERS = re.compile(r"^(?:shlex\.quote|int|str)\((.*)\)$")
SHELL_VAR = re.compile(r"\$\{?(\w+)\}?")
MARK = "\x00{}\x00"  # a parameter's name, kept apart from the shell's quoting and operators


def placeholder(expr: str) -> str:
    """A Python value the probe passes that is not a module constant: the name of its variable."""
    while (m := WRAPPERS.match(expr)) is not None:
        expr = m.group(1)
    return expr.rsplit(".", 1)[-1]


def source_text(node: ast.AST, namespace: dict) -> str | None:
    """A string literal or f-string as the shell will see it: module constants evaluated, other
    values as `<name>` (kept apart from the shell's quoting by markers)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # `{name}`: a str.format template's
        return re.sub(r"(?<!{){(\w+)}(?!})", lambda m: MARK.format(m.group(1)), node.value)
    if not isinstance(node, ast.JoinedStr):
        return None
    out = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            out.append(part.value)
            continue
        expr = ast.unparse(part.value)
        try:
            out.append(str(eval(expr, namespace)))  # noqa: S307 - the probes' own module constants
        except Exception:  # noqa: BLE001 - a local value: a parameter
            out.append(MARK.format(placeholder(expr)))
    return "".join(out)


def sudo_commands(text: str) -> list[list[str]]:
    """Each `$SUDO cmd args` of a shell text, as the argument vector sudo receives (the shell's
    quoting undone; a shell variable `$name` or a Python value is `<name>`); up to the first
    operator, redirection or closing parenthesis. `"$SUDO"` (quoted: a test of the variable, as
    in `[ -z "$SUDO" ]`) runs nothing."""
    found = []
    for start in [m.end() for m in re.finditer(r"\$SUDO\b(?!\")", text)]:
        rest = text[start:].replace("\\(", "\x01").replace("\\)", "\x02")  # find's escaped parentheses
        lexer = shlex.shlex(rest, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        argv: list[str] = []
        while True:
            try:
                token = lexer.get_token()
            except ValueError:  # an unbalanced quote after the command: the command has ended
                break
            if token is None or token == "" or set(token) <= set(";&|()<>"):
                if token and token[0] in "<>" and argv and argv[-1].isdigit() \
                        and re.search(rf"(^|\s){argv[-1]}[<>]", rest):
                    argv.pop()  # `2>&1`: a redirection's descriptor, not an argument
                break
            argv.append(token)
        argv = [a.replace("\x01", "(").replace("\x02", ")") for a in argv]
        found.append([re.sub("\x00(\\w+)\x00", r"<\1>", SHELL_VAR.sub(r"<\1>", a)) for a in argv])
    return found


def probe_uses() -> list[tuple[str, int, list[str]]]:
    """(module, line, argv) of every `$SUDO` command in the probes' string literals."""
    uses = []
    for path in PROBES:
        module = importlib.import_module(f"audit.probes.{path.stem}")
        tree = ast.parse(path.read_text())
        inside = {id(child) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                  for child in ast.walk(node) if child is not node}
        inside |= {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}  # docstrings
        for node in ast.walk(tree):
            text = source_text(node, vars(module)) if id(node) not in inside else None
            if text and "$SUDO" in text:
                uses += [(path.stem, node.lineno, argv) for argv in sudo_commands(text)]
    return uses


def default_target() -> sudo.Target:
    return sudoers.target(None, None)


USES = probe_uses()


def test_the_probes_use_sudo():
    areas = {m for m, _, _ in USES}
    assert {"nginx", "network", "hardening", "checklist", "maintenance", "backups", "app", "monitoring",
            "postgres", "redis", "tls", "advisories", "prerequisites"} <= areas, areas
    assert len(USES) > 40


@pytest.mark.parametrize(("module", "line", "argv"), USES, ids=[f"{m}:{n}" for m, n, _ in USES])
def test_every_sudo_use_of_a_probe_is_in_the_list(module, line, argv):
    """A probe that adds a `$SUDO` command must add it to audit/sudo.py (and so to the sudoers
    file operators install): else a narrowed sudo refuses it."""
    assert sudo.allows(argv, default_target()) is not None, \
        f"audit/probes/{module}.py:{line}: `sudo {' '.join(argv)}` is not in audit/sudo.py COMMANDS"


def test_every_command_of_the_list_is_used():
    """No rule is granted that no probe needs."""
    target = default_target()
    used = {id(sudo.allows(argv, target)) for _, _, argv in USES}
    used |= {id(sudo.allows(["true"], target)), id(sudo.allows(["docker", "system", "dial-stdio"], target))}
    unused = [" ".join(c.argv) for c in sudo.COMMANDS if id(c) not in used]
    assert not unused, f"commands no probe runs: {unused}"


def test_the_access_layers_own_sudo_uses_are_in_the_list():
    access = (ROOT / "audit" / "access.py").read_text()
    transport = (ROOT / "audit" / "transport.py").read_text()
    assert "sudo -n true" in access
    assert sudo.allows(["true"], default_target())
    assert '"docker", "system", "dial-stdio"' in transport
    assert sudo.allows(["docker", "system", "dial-stdio"], default_target())


def test_a_command_not_in_the_list_is_found():
    for text in ("$SUDO sh -c 'cat /etc/shadow'", "$SUDO cat /etc/shadow 2>&1", "x=$($SUDO find / -name y)",
                 "printf 'get sshd bantime' | $SUDO fail2ban-client -i 2>&1", "$SUDO nginx -T -c /tmp/x"):
        for argv in sudo_commands(text):
            assert sudo.allows(argv, default_target()) is None, argv


def test_the_parser_reads_arguments_as_sudo_receives_them():
    assert sudo_commands("$SUDO stat -c '%a %U:%G %n' /a \"$f\" 2>&1; echo") == [
        ["stat", "-c", "%a %U:%G %n", "/a", "<f>"]]
    assert sudo_commands("f=$($SUDO find /d -printf '%T@ %p\\n' | sort)") == [["find", "/d", "-printf", "%T@ %p\\n"]]
    assert sudo_commands("$SUDO nginx -T 2>/dev/null || x") == [["nginx", "-T"]]
    assert sudo_commands("$SUDO fail2ban-client get \"$jail\" \"$jail_key\" 2>&1") == [
        ["fail2ban-client", "get", "<jail>", "<jail_key>"]]


# ---------------------------------------------------------------- the sudoers file

def test_words_are_escaped_so_that_sudo_matches_them_literally():
    assert sudoers.word("%a %U:%G %n") == r"%a\ %U\:%G\ %n"
    assert sudoers.word("/var/log/nginx/*") == r"/var/log/nginx/\*"
    # parentheses and quotes are plain in a command's arguments (visudo refuses `\(`, `\'`)
    assert sudoers.word("SELECT coalesce(json_agg(f), '[]'::json)") == \
        r"SELECT\ coalesce(json_agg(f)\,\ '\[\]'\:\:json)"
    assert sudoers.word("_COMM=sshd") == r"_COMM\=sshd"
    assert sudoers.word("( ! -user") == r"(\ !\ -user"
    # a literal backslash: `\\` for fnmatch, each one `\\` for the lexer
    assert sudoers.word("%T@ %p\\n") == r"%T@\ %p\\\\n"
    with pytest.raises(ValueError, match="line break"):
        sudoers.word("a\nb")
    assert sudoers.word(Pattern("/opt/b/x_[0-9][0-9].gz")) == "/opt/b/x_[0-9][0-9].gz"
    with pytest.raises(ValueError, match="empty"):
        sudoers.word("")


def test_a_command_without_arguments_allows_none():
    assert sudoers.line(("iptables-save",), "debian", None) == '/usr/sbin/iptables-save ""'
    assert sudoers.line(("nginx", "-T"), "debian", None) == "/usr/sbin/nginx -T"


def test_paths_by_distribution_and_as_the_host_resolves_them():
    assert sudo.program_path("iptables-save") == "/usr/sbin/iptables-save"
    assert sudo.program_path("iptables-save", "debian-split-usr") == "/sbin/iptables-save"
    assert sudo.program_path("cat", "debian-split-usr") == "/bin/cat"
    assert sudo.program_path("promtool", "rhel") == "/usr/local/bin/promtool"
    assert sudo.program_path("nginx", "rhel") == "/usr/sbin/nginx"
    assert sudo.program_path("nginx", resolved={"nginx": "/opt/nginx/sbin/nginx"}) == "/opt/nginx/sbin/nginx"
    assert sudo.program_path("/etc/init.d/ssh") == "/etc/init.d/ssh"
    every = {c.argv[0] for c in sudo.COMMANDS if not c.argv[0].startswith(("/", "<"))}
    assert every <= set(sudo.PATHS), every - set(sudo.PATHS)


def test_backup_names_are_matched_digit_by_digit():
    pattern = sudo.digits("pynomaly_backup_%Y%m%d_%H%M%S.sql.gz").text
    assert pattern == "pynomaly_backup_" + "[0-9]" * 8 + "_" + "[0-9]" * 6 + ".sql.gz"
    import fnmatch
    assert fnmatch.fnmatchcase("pynomaly_backup_20261127_150734.sql.gz", pattern)
    for other in ("pynomaly_backup_2026112_150734.sql.gz", "pynomaly_backup_20261127_15073/.sql.gz",
                  "pynomaly_backup_20261127_150734.sql.gz /etc/shadow", "pynomaly_backup_../../../x.sql.gz"):
        assert not fnmatch.fnmatchcase(other, pattern), other


def test_no_wildcard_can_name_another_file():
    """Patterns only in arguments that are the guide's files ([0-9] classes: one character, never
    `/`, `.` or a space) and the fail2ban jail's name of the read-only `get`."""
    for c in sudo.COMMANDS:
        for argv in c.lines(default_target()):
            for a in argv:
                if isinstance(a, Pattern):
                    stars = a.text.replace("\\*", "")
                    assert "*" not in stars or (c.argv[:2] == ("fail2ban-client", "get") and a.text == "*"), (c, a)
                    assert "?" not in a.text.replace("\\?", "")
                    assert set(re.findall(r"\[[^\]]*\]", a.text)) <= {"[0-9]"}, a
    shells = [c.argv for c in sudo.COMMANDS if {"sh", "bash", "-exec", "-i", "APT_CONFIG"} & set(c.argv)
              and c.argv[:3] != ("runuser", "-u", "<app_user>")]  # a fixed script as the app's own account
    assert not shells, shells


def test_fleet_web1_rules():
    inventory = load_inventory(ROOT / "inventories" / "fleet.yml")
    text, n = sudoers.sudoers(inventory, "web1")
    assert text.count("NOPASSWD") == 1
    assert "ALL=(root) NOPASSWD: PYNOMALY_AUDIT_ACCESS" in text
    assert "Defaults:auditor !requiretty" in text
    assert "/usr/sbin/nginx -T" in text
    assert '/usr/sbin/iptables-save ""' in text
    assert "/usr/bin/cat /etc/iptables/rules.v4" in text
    assert "/usr/sbin/ufw" not in text  # web1 runs the guide's iptables rules
    assert "/etc/ufw" not in text
    assert "psql" not in text  # not a database host
    assert "docker" not in text  # not the engine's
    assert "/usr/bin/test -f /etc/letsencrypt/live/pynomaly.test/fullchain.pem" in text
    assert "NOPASSWD: ALL" not in text
    assert n == sum(text.count(x) for x in ("= ", ", \\\n"))
    opt, m = sudoers.sudoers(inventory, "web1", frozenset({"writes"}))
    assert m > n
    assert "systemctl stop prometheus-postgres-exporter" in opt


def test_fleet_db1_and_app1_rules():
    inventory = load_inventory(ROOT / "inventories" / "fleet.yml")
    db1, _ = sudoers.sudoers(inventory, "db1")
    assert "/etc/postgresql/[0-9][0-9]/main/pg_hba.conf" in db1
    assert "/usr/bin/gzip -t /opt/backups/postgres/pynomaly_backup_[0-9][0-9][0-9][0-9]" in db1
    assert "nginx" not in db1
    assert "/usr/sbin/ufw status verbose" in db1
    app1, _ = sudoers.sudoers(inventory, "app1")
    assert "/usr/bin/docker system dial-stdio" in app1
    assert f"/usr/bin/cat {guide.ENV_FILE}" in app1
    assert "runuser" not in app1


def test_every_parameter_has_values_for_every_role():
    for c in sudo.COMMANDS:
        for groups in (None, frozenset(guide.SERVER_ROLES) | {"docker", guide.IPTABLES_GROUP}):
            t = sudo.Target(groups, default_target().expected, "example.org", sysvinit=True)
            assert c.lines(t), c.argv


def test_the_fleet_installs_the_rendered_rules_of_each_host():
    """provision --flavour fleet up puts `python -m audit.sudoers --inventory fleet --host NAME`
    into each host (no broad rule), outside the hosts' configuration hash (setup.sudoers keeps it
    current in place)."""
    from provision.fleet import roles, topology

    inventory = load_inventory(ROOT / "inventories" / "fleet.yml")
    assert {h.name for h in topology.HOSTS} == set(inventory.hosts)
    for h in topology.HOSTS:
        item = roles.sudoers_file(h)
        assert item.dest == "/etc/sudoers.d/auditor"
        assert item.mode == 0o440
        text = item.content.decode()
        assert text.startswith("# /etc/sudoers.d/auditor: what the Pynomaly deployment audit runs as root, "
                               f"host {h.name} (")
        assert f"--inventory fleet --host {h.name}`" in text
        assert text.split("\n", 2)[2] == sudoers.sudoers(inventory, h.name)[0].split("\n", 2)[2]
        assert text.count("NOPASSWD: ") == 1  # tests/integration/test_fleet_faults.py removes it
        assert "NOPASSWD: ALL" not in text
    assert not (ROOT / "provision" / "files" / "fleet" / "sudoers-auditor").exists()
