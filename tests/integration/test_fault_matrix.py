"""The fault matrix: when parts of the deployment are down or refuse the auditor, the audit says
so per host (could not audit, with host and cause), still audits the rest, exits with the code
of the case, and never hangs. An expired certificate is non-compliance, not a failure to audit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from audit.outcomes import COULD_NOT_AUDIT, NON_COMPLIANT
from provision import containers, docker_engine, drifts
from provision.drifts import redis as redis_drifts
from provision.state import State
from provision.topology import PUBLIC_NAME
from tests.integration.audit_runner import ROOT, inventory_variant, run_audit

BOUND_S = 120  # no fault may make an audit of a few modules take longer than this


def sh(host: str, cmd: str, auth: bool = False) -> str:
    client = docker_engine.client_or_none()
    env = {"REDISCLI_AUTH": State().secret("redis_password")} if auth else None
    return containers.run(client.containers.get(host), cmd, env=env)[1]


def module_of(area: str) -> str:
    """checks/<area>.py: a module that is missing fails the test (it was once renamed, and a
    skip here hid a fault case that no longer ran)."""
    path = ROOT / "checks" / f"{area}.py"
    assert path.exists(), f"{path} is gone: the fault case cannot audit its area"
    return f"checks/{area}.py"


def timed(inventory, tmp_path, *args):
    start = time.monotonic()
    run = run_audit(inventory, tmp_path / "out", *args)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND_S, f"the audit took {elapsed:.0f}s: something waited without a timeout"
    return run


def assert_errors_only_on(run, host: str, cause: str | None = None) -> None:
    errors = run.by_outcome("error")
    assert errors, run.explain()
    assert {t["host"] for t in errors.values()} == {host}, run.explain()
    text = run.stdout
    assert f"could not audit: {host}" in text or host in text
    if cause:
        assert cause in text, run.explain()


@contextlib.contextmanager
def fault(apply, heal):
    with drifts.lock():
        apply()
        try:
            yield
        finally:
            heal()


def _restart_cache3(deployment) -> None:
    """Start cache3 again, and fail its cluster master back if its replica took over meanwhile."""
    docker_engine.client_or_none().containers.get("cache3").start()
    deployment.up()
    ctx, _, _ = drifts._ctx()
    redis_drifts.restore_failed_over_master(ctx)


def test_stopped_host_errors_for_that_host_only(deployment, tmp_path):
    client = docker_engine.client_or_none()
    with fault(lambda: client.containers.get("cache3").stop(timeout=5), lambda: _restart_cache3(deployment)):
        run = timed("local", tmp_path, "checks/prerequisites.py")
    assert run.exit_code == COULD_NOT_AUDIT, run.explain()
    assert_errors_only_on(run, "cache3")
    assert {t["host"] for t in run.by_outcome("passed").values()} >= {"web1", "db1", "db2", "cache1", "cache2"}


def test_refused_key_errors_for_that_host_only(deployment, tmp_path):
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    inv = inventory_variant(tmp_path, hosts={"db_replica": {"db2": {"ansible_host": "127.77.0.22",
                                                                    "ansible_ssh_private_key_file": str(key)}}})
    run = timed(inv, tmp_path, "checks/prerequisites.py")
    assert run.exit_code == COULD_NOT_AUDIT, run.explain()
    assert_errors_only_on(run, "db2", cause="Permission denied")


def test_postgresql_down_is_could_not_audit_for_that_host(deployment, tmp_path):
    module = module_of("postgres")
    with fault(lambda: sh("db2", "service postgresql stop"), lambda: (sh("db2", "service postgresql start"),
                                                                       deployment.up())):
        run = timed("local", tmp_path, module)
    errors = run.by_outcome("error")
    assert errors, run.explain()
    assert {t["host"] for t in errors.values()} <= {"db2"}, run.explain()
    # the primary still audits; a replica that does not stream is non-compliance seen from there
    assert any(t["host"] == "db1" and t["outcome"] in ("passed", "failed") for t in run.tests.values())
    assert run.exit_code in (NON_COMPLIANT, COULD_NOT_AUDIT)


def test_redis_down_is_could_not_audit_for_that_host(deployment, tmp_path):
    module = module_of("redis")
    # not `service redis-server stop`: in these containers start-stop-daemon cannot match the process
    stop = "redis-cli --no-auth-warning -p 6379 shutdown nosave >/dev/null 2>&1; true"
    start = "rm -f /run/redis/redis-server.pid && service redis-server start >/dev/null"
    with fault(lambda: sh("cache1", stop, auth=True), lambda: sh("cache1", start)):
        run = timed("local", tmp_path, module)
    errors = run.by_outcome("error")
    assert errors, run.explain()
    assert {t["host"] for t in errors.values()} == {"cache1"}, run.explain()
    cluster = [t for n, t in run.tests.items() if "cluster" in n.lower() and t["outcome"] == "passed"]
    assert cluster, "the Redis Cluster checks still audit while standalone Redis is down"


def _expired_cert(st: State) -> tuple[bytes, bytes]:
    ca_cert = x509.load_pem_x509_certificate(st.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(st.ca_key.read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, PUBLIC_NAME)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=120)).not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(PUBLIC_NAME)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM) + st.ca.read_bytes(), pem_key


def test_expired_certificate_is_non_compliance(deployment, tmp_path):
    module = module_of("tls")
    live = f"/etc/letsencrypt/live/{PUBLIC_NAME}"
    chain, key = _expired_cert(State())
    staging = Path(tmp_path)
    (staging / "fullchain.pem").write_bytes(chain)
    (staging / "privkey.pem").write_bytes(key)

    def apply():
        sh("web1", f"cp -p {live}/fullchain.pem /root/fullchain.pem.orig"
                   f" && cp -p {live}/privkey.pem /root/privkey.pem.orig")
        for name in ("fullchain.pem", "privkey.pem"):
            subprocess.run(["docker", "cp", str(staging / name), f"web1:{live}/{name}"], check=True)
        sh("web1", "nginx -t -q && service nginx reload")

    def heal():
        sh("web1", f"cp -p /root/fullchain.pem.orig {live}/fullchain.pem"
                   f" && cp -p /root/privkey.pem.orig {live}/privkey.pem"
                   " && rm -f /root/*.pem.orig && service nginx reload")

    with fault(apply, heal):
        run = timed("local", tmp_path, module)
    assert run.exit_code == NON_COMPLIANT, run.explain()
    assert not run.by_outcome("error"), run.explain()
    assert "CHK-CERT-VALIDITY" in run.red_requirements() or "TLS-CERT-TRUSTED" in run.red_requirements()
