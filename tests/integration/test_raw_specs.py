"""Raw testinfra specs audit hosts the suite did not build: `--hosts=ssh://user@host`,
`docker://NAME` and `local://`, against a plain container (Debian 12 from the reference base
image: sshd runs, nothing of Pynomaly is configured or running) and this machine. Every check ends
in one of the suite's own outcomes: passed, non-compliant, could not audit (with the host and the
reason), skipped with a reason; never a crash of a check or a probe, and nothing reached through
a mechanism the host does not have (SSH forwards on a docker:// or local:// host)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import time

import docker
import pytest

from provision import images
from tests.integration.audit_runner import run_audit

PLAIN = "pynomaly-plain-host"
DEFECT = "a defect of the suite"


@pytest.fixture(scope="module")
def plain_host(deployment, tmp_path_factory):
    """A container from the reference base image running sshd only, with a key of this test's
    own; yields (container name, its address, an ssh_config that reaches it as root)."""
    client = docker.from_env()
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(PLAIN).remove(force=True)
    home = tmp_path_factory.mktemp("home")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / "id_ed25519")], check=True)
    container = client.containers.run(
        images.base_tag(), name=PLAIN, detach=True, labels={"pynomaly-test": "raw-specs"},
        entrypoint=["/bin/sh", "-c", "mkdir -p /run/sshd && ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e"])
    try:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            data = (ssh / "id_ed25519.pub").read_bytes()
            info = tarfile.TarInfo("root/.ssh/authorized_keys")
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
        container.put_archive("/", archive.getvalue())
        container.reload()
        address = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        for _ in range(30):
            scan = subprocess.run(["ssh-keyscan", "-T", "2", address], capture_output=True, text=True, check=False)
            if scan.stdout.strip():
                break
            time.sleep(1)
        (ssh / "known_hosts").write_text(scan.stdout)
        (ssh / "config").write_text(f"Host {address}\n  IdentityFile {ssh / 'id_ed25519'}\n"
                                    f"  UserKnownHostsFile {ssh / 'known_hosts'}\n  StrictHostKeyChecking yes\n")
        yield PLAIN, address, str(ssh / "config")
    finally:
        container.remove(force=True)


def assert_only_the_suites_outcomes(run) -> None:
    assert run.exit_code in (1, 6), run.explain()  # a verdict: not an internal error, not a usage error
    assert run.tests, run.stdout[-3000:]
    crashes = {n: t for n, t in run.tests.items()
               if t.get("category") == "suite-error" or DEFECT in (t.get("message") or "")}
    assert not crashes, crashes
    for nodeid, test in run.tests.items():
        if test["outcome"] == "error":
            assert test["message"].startswith("could not audit"), (nodeid, test)
        if test["outcome"] == "skipped":
            assert test.get("reason"), (nodeid, test)


@pytest.mark.parametrize("spec", ["ssh", "docker", "local"])
def test_a_host_the_suite_did_not_build(plain_host, tmp_path, spec):
    name, address, ssh_config = plain_host
    hosts = {"ssh": f"ssh://root@{address}", "docker": f"docker://{name}", "local": "local://"}[spec]
    run = run_audit(hosts, tmp_path, *([f"--ssh-config={ssh_config}"] if spec == "ssh" else []), timeout=600)
    assert_only_the_suites_outcomes(run)
    # a host that runs nothing of the guide is non-compliant, and what it cannot show is named
    assert run.by_outcome("failed"), run.explain()
    if spec != "local":
        assert any("no host in group" in (t.get("message") or "") for t in run.by_outcome("error").values())
