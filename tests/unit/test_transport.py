"""audit/transport.py: the shared SSH connection's forwards, on a recorded ssh (no host needed)."""

from __future__ import annotations

import subprocess

from audit.inventory import Host, Inventory
from audit.transport import Transport


def test_a_lost_shared_connection_is_made_again_before_the_forward(monkeypatch, tmp_path):
    """The first `-O forward` finds no control socket (none yet, or ControlPersist ended an idle
    one): `ssh HOST true` (the host before the command) makes the connection, then it forwards."""
    host = Host("db1", frozenset({"db_primary"}), {"ansible_host": "10.0.0.5"})
    transport = Transport(Inventory(path=tmp_path / "inv.yml", name="t", hosts={"db1": host}))
    calls = []

    def fake_run(argv, **_):
        calls.append(argv[3:])
        first_forward = argv.count("forward") and sum("forward" in c for c in calls) == 1
        err = "Control socket connect(/tmp/pa-x/abc): No such file or directory" if first_forward else ""
        return subprocess.CompletedProcess(argv, 255 if first_forward else 0, "", err)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert transport.forward(host, 5432)[0] == "127.0.0.1"
    assert calls[1] == ["db1", "true"]
    assert calls[2][:2] == ["-O", "forward"]
    assert calls[2][-1] == "db1"
