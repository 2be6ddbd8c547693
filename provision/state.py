"""The state folder `.state/` (docs/contracts.md): keys, CA, secrets, deployment.json."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

from . import pki
from .topology import HOSTS, PUBLIC_NAME
from .ui import register_secrets

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".state"

# Secret names of the contract, then the ones only the deployment itself uses.
CONTRACT_SECRETS = ("db_password", "db_audit_password", "redis_password",
                    "app_username", "app_password", "jwt_secret")
INTERNAL_SECRETS = ("db_replication_password", "db_exporter_password", "encryption_key",
                    "api_key_salt", "smtp_username", "smtp_password")


def _new_secret(name: str) -> str:
    if name == "app_username":
        return f"admin@{PUBLIC_NAME}"
    if name == "smtp_username":
        return f"alerts-{secrets.token_hex(4)}@{PUBLIC_NAME}"
    return secrets.token_urlsafe(32)


class State:
    """Paths and contents of one state folder."""

    hosts = HOSTS  # whose host keys, known_hosts lines and ssh_config blocks it holds
    ssh_user = "root"
    key_comment = "provision@pynomaly-ref"
    control_path = "/tmp/pynomaly-ref-ssh-%C"

    def __init__(self, root: Path = STATE_DIR):
        self.root = root
        self.ssh = root / "ssh"
        self.tls = root / "tls"
        self.secrets_dir = root / "secrets"
        self.key = self.ssh / "id_ed25519"
        self.known_hosts = self.ssh / "known_hosts"
        self.ssh_config = self.ssh / "config"
        self.ca = self.tls / "ca.pem"
        self.ca_key = self.tls / "ca.key"
        self.cert = self.tls / f"{PUBLIC_NAME}.pem"
        self.cert_key = self.tls / f"{PUBLIC_NAME}.key"
        self.deployment_json = root / "deployment.json"

    # -- creation ---------------------------------------------------------
    def ensure(self) -> None:
        """Create whatever is missing; never replace an existing key or secret."""
        self.root.mkdir(mode=0o700, exist_ok=True)
        if not self.key.exists():
            private, public = pki.ssh_keypair()
            pki.write_private(self.key, private)
            self.key.with_suffix(".pub").write_bytes(public + f" {self.key_comment}\n".encode())
        for h in self.hosts:
            hk = self.host_key_path(h.name)
            if not hk.exists():
                private, public = pki.ssh_keypair()
                pki.write_private(hk, private)
                hk.with_suffix(".pub").write_bytes(public + f" root@{h.name}\n".encode())
        self._write_known_hosts()
        self._write_ssh_config()
        if not self.ca.exists():
            cert, key = pki.make_ca()
            pki.write_private(self.ca_key, key)
            self.ca.write_bytes(cert)
        if not self.cert.exists():
            cert, key = pki.issue_server_cert(self.ca.read_bytes(), self.ca_key.read_bytes(),
                                              PUBLIC_NAME)
            pki.write_private(self.cert_key, key)
            self.cert.write_bytes(cert)
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        for name in CONTRACT_SECRETS + INTERNAL_SECRETS:
            path = self.secrets_dir / name
            if not path.exists():
                pki.write_private(path, _new_secret(name).encode())
        self.secrets()  # registers the values for masking

    def host_key_path(self, host: str) -> Path:
        return self.ssh / "hosts" / host / "ssh_host_ed25519_key"

    def _write_known_hosts(self) -> None:
        lines = []
        for h in HOSTS:
            pub = self.host_key_path(h.name).with_suffix(".pub").read_text().split()
            # Both spellings: the contract's "[addr]:22" and the plain one OpenSSH
            # looks up when the port is 22.
            lines.append(f"[{h.public_ip}]:22,{h.public_ip},[{h.second_ip}]:22,{h.second_ip} {pub[0]} {pub[1]}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _write_ssh_config(self) -> None:
        blocks = []
        for h in self.hosts:
            blocks.append(
                f"Host {h.name} {h.public_ip}\n"
                f"    HostName {h.public_ip}\n"
                "    Port 22\n"
                f"    User {self.ssh_user}\n"
                f"    IdentityFile {self.key}\n"
                "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts}\n"
                "    StrictHostKeyChecking yes\n"
                "    ControlMaster auto\n"
                f"    ControlPath {self.control_path}\n"
                "    ControlPersist 60s\n")
        self.ssh_config.write_text("\n".join(blocks))

    # -- reading ----------------------------------------------------------
    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()

    def secrets(self) -> dict[str, str]:
        values = {p.name: p.read_text().strip() for p in sorted(self.secrets_dir.iterdir())}
        register_secrets(v for k, v in values.items() if k != "app_username")
        return values

    def exists(self) -> bool:
        return self.deployment_json.exists()

    def load(self) -> dict:
        if not self.deployment_json.exists():
            return {}
        return json.loads(self.deployment_json.read_text())

    def save(self, data: dict) -> None:
        tmp = self.deployment_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.deployment_json)

    def remove(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
