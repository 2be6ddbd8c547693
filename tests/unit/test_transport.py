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


def test_a_monitoring_api_ignores_proxies_in_the_environment(monkeypatch):
    """The Prometheus/Alertmanager APIs are tunnels on loopback: a proxy variable in the
    auditor's environment must not send their traffic elsewhere (nor be read from the prefetch
    threads while pytest rewrites os.environ)."""
    import http.server
    import json
    import threading

    from audit.access import Api

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps({"status": "success", "data": {"path": self.path}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(var, "http://192.0.2.1:9")  # TEST-NET-1: never answers
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        api = Api(f"http://127.0.0.1:{server.server_port}", "Prometheus")
        assert api.get("/api/v1/status/config") == {"path": "/api/v1/status/config"}
    finally:
        server.shutdown()
