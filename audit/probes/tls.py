"""TLS (guide: SSL/TLS Configuration, the HTTPS server of NGINX Configuration, System Health):
the public endpoint as a client sees it, and the web hosts' certificate files and certbot.

- `tls_scan` (the deployment, slow): ONE sslyze scan of the public endpoint (the public name in
  SNI, at the inventory's address override, certificates validated against the inventory's CA
  bundle, else the CA bundle requests trusts), reduced to plain data: protocols and their cipher
  suites, session resumption (measured once more when only partly resumed: a reload racing the
  scan is not a finding), the received chain and what the checks judge of it.
- `tls_host` (per web host, one round trip): the certificate and key files the HTTPS server
  names, root's crontab and the certbot NGINX plugin's package state.

The NGINX directives (ssl_protocols, ssl_ciphers, ...) are read by the `nginx` probe.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.facts import probe
from audit.outcomes import CouldNotAudit
from audit.probes.nginx import public_host

PROTOCOL_COMMANDS = {  # guide name -> sslyze scan command
    "SSLv2": "ssl_2_0_cipher_suites", "SSLv3": "ssl_3_0_cipher_suites", "TLSv1": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites", "TLSv1.2": "tls_1_2_cipher_suites", "TLSv1.3": "tls_1_3_cipher_suites",
}
INFO_COMMANDS = ("tls_compression", "heartbleed", "robot", "session_renegotiation", "openssl_ccs_injection",
                 "tls_fallback_scsv", "elliptic_curves", "tls_1_3_early_data", "tls_extended_master_secret")


# ---------------------------------------------------------------- the scan

def scan_request(hostname: str, address: str, port: int, ca_file: str | None, only: set[str] | None = None):
    """sslyze's request for every command the checks read, or `only` these. The CA file is passed
    only with certificate_info: sslyze refuses an extra argument for a command it does not run."""
    import sslyze
    from sslyze import ScanCommand

    commands = {ScanCommand(c) for c in (*PROTOCOL_COMMANDS.values(), *INFO_COMMANDS)}
    commands |= {ScanCommand.CERTIFICATE_INFO, ScanCommand.SESSION_RESUMPTION}
    if only:
        commands = {ScanCommand(c) for c in only}
    with_ca = ca_file and ScanCommand.CERTIFICATE_INFO in commands
    extra = sslyze.ScanCommandsExtraArguments(
        certificate_info=sslyze.CertificateInfoExtraArgument(custom_ca_file=Path(ca_file)) if with_ca else None)
    return sslyze.ServerScanRequest(scan_commands=commands, scan_commands_extra_arguments=extra,
                                    server_location=sslyze.ServerNetworkLocation(hostname, port, ip_address=address))


def scan_endpoint(public, only: set[str] | None = None) -> dict[str, Any]:
    """One sslyze scan of the public endpoint (see scan_request); sslyze's JSON model."""
    from sslyze import Scanner, ServerScanResultAsJson

    scanner = Scanner()
    scanner.queue_scans([scan_request(public.name, public.address, public.port, public.ca_bundle, only)])
    result = next(iter(scanner.get_results()))
    scan = json.loads(ServerScanResultAsJson.model_validate(result).model_dump_json())
    if scan.get("scan_status") != "COMPLETED":
        raise CouldNotAudit(None, f"the public endpoint {public.name}:{public.port} (via {public.address})",
                            f"the TLS scan did not run: {scan.get('connectivity_status') or scan.get('scan_status')} "
                            f"{(scan.get('connectivity_error_trace') or '').strip()[-200:]}".strip())
    return scan


def results(scan: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(command -> result, command -> why it did not complete) of a completed scan."""
    done, failed = {}, {}
    for command, attempt in (scan.get("scan_result") or {}).items():
        if not attempt:
            continue
        if attempt.get("status") == "COMPLETED" and attempt.get("result") is not None:
            done[command] = attempt["result"]
        elif attempt.get("status") != "NOT_SCHEDULED":
            failed[command] = (f"sslyze {command}: {attempt.get('status')} {attempt.get('error_reason')} "
                               f"{(attempt.get('error_trace') or '')[-300:]}").strip()
    return done, failed


def accepted_protocols(done: dict[str, Any]) -> dict[str, list[str]]:
    """guide protocol name -> accepted cipher suites (OpenSSL names), for the protocols scanned."""
    return {proto: [c["cipher_suite"]["openssl_name"] for c in done[cmd]["accepted_cipher_suites"]]
            for proto, cmd in PROTOCOL_COMMANDS.items() if cmd in done}


# ---------------------------------------------------------------- certificates

def load_certificates(pem: str | bytes):
    from cryptography import x509

    return x509.load_pem_x509_certificates(pem.encode() if isinstance(pem, str) else pem) if pem else []


def anchors_file(ca_bundle: str | None) -> str:
    """The trust anchors: the inventory's CA bundle, else the bundle requests trusts (certifi)."""
    import certifi

    return ca_bundle or certifi.where()


def issued_by(cert, issuer) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except Exception:  # noqa: BLE001 - InvalidSignature, a different issuer name, unsupported key types
        return False


def valid_at(cert, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def trust_path(chain: list, anchors: list, now: dt.datetime) -> tuple[bool, list[str]]:
    """Does the leaf chain up, through the received certificates, to an anchor, each certificate
    within its validity period? (ok, the path as subjects / the reason it breaks)."""
    if not chain:
        return False, ["no certificate received"]
    path, cert, pool = [], chain[0], chain[1:]
    for _ in range(len(chain) + 1):
        path.append(cert.subject.rfc4514_string())
        if not valid_at(cert, now):
            return False, [*path, f"outside its validity {cert.not_valid_before_utc} .. {cert.not_valid_after_utc}"]
        anchor = next((a for a in anchors if issued_by(cert, a)), None)
        if anchor is not None:
            return valid_at(anchor, now), [*path, f"anchor: {anchor.subject.rfc4514_string()}"]
        nxt = next((c for c in pool if c != cert and issued_by(cert, c)), None)
        if nxt is None:
            return False, [*path, f"issuer {cert.issuer.rfc4514_string()} is neither sent nor trusted"]
        cert = nxt
    return False, [*path, "loop"]


def chain_gaps(chain: list, anchors: list) -> list[str]:
    """Certificates of the received chain whose issuer is neither the next one sent, a trust anchor,
    nor themselves: what a client would have to fetch (empty = the full chain is sent)."""
    gaps = []
    for i, cert in enumerate(chain):
        if issued_by(cert, cert) or (i + 1 < len(chain) and issued_by(cert, chain[i + 1])) \
                or any(issued_by(cert, a) for a in anchors):
            continue
        gaps.append(f"{cert.subject.rfc4514_string()} (issuer {cert.issuer.rfc4514_string()})")
    return gaps


def cert_names(cert) -> list[str]:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        return []


def name_matches(pattern: str, host: str) -> bool:
    """RFC 6125: exact (case-insensitive), or a wildcard for the whole left-most label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        return "." in host and host.split(".", 1)[1] == pattern[2:]
    return pattern == host


def days_left(cert, now: dt.datetime) -> float:
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


def key_of(cert) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = cert.public_key()
    return {"type": "RSA" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__.lstrip("_"),
            "bits": getattr(key, "key_size", None)}


def describe(cert) -> dict[str, Any]:
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(), "san": cert_names(cert)}


# ---------------------------------------------------------------- facts of the scan

@dataclass(frozen=True)
class TlsScan:
    """The public endpoint's TLS, as one scan saw it (plain data)."""

    target: str                        # name:port via address
    host: str                          # the deployment's public name
    protocols: dict[str, list[str]]    # guide protocol name -> accepted suites (the protocols scanned)
    resumption: dict[str, Any]         # sslyze's session_resumption result ({} when it did not run)
    chain: list[dict[str, Any]]        # the received chain: subject, issuer, not_after, san
    trusted: bool
    path: list[str]                    # the trust path, or where it breaks
    gaps: list[str]                    # certificates whose issuer is neither sent nor trusted
    key: dict[str, Any]                # the leaf's public key: type, bits
    days_left: float | None            # of the leaf's validity, when the scan ran
    anchors: str                       # the CA bundle the chain is verified against
    errors: dict[str, str]             # scan command -> why it did not complete
    info: dict[str, Any]               # vulnerabilities (heartbleed, robot, ...): information only

    def need(self, *commands: str) -> None:
        """CouldNotAudit when a scan command the check judges did not complete."""
        failed = [self.errors[c] for c in commands if c in self.errors]
        if failed:
            raise CouldNotAudit(None, f"the public endpoint {self.target}", "; ".join(failed))

    @property
    def leaf_names(self) -> list[str]:
        return self.chain[0]["san"] if self.chain else []


def summarise(scan: dict[str, Any], anchors_pem: str | bytes, now: dt.datetime, target: str, host: str = "",
              anchors: str = "") -> TlsScan:
    """A completed sslyze scan (JSON) reduced to what the checks judge."""
    done, failed = results(scan)
    protocols = accepted_protocols(done)
    failed |= {c: f"sslyze {c}: no result" for c in (*PROTOCOL_COMMANDS.values(), "certificate_info",
                                                     "session_resumption") if c not in done and c not in failed}
    deployments = (done.get("certificate_info") or {}).get("certificate_deployments") or [{}]
    chain = load_certificates("".join(c["as_pem"] for c in deployments[0].get("received_certificate_chain") or []))
    trusted_by = load_certificates(anchors_pem)
    ok, path = trust_path(chain, trusted_by, now)
    info = {c: done.get(c) or ((scan.get("scan_result") or {}).get(c) or {}).get("status") for c in INFO_COMMANDS}
    return TlsScan(target=target, host=host, protocols=protocols, resumption=done.get("session_resumption") or {},
                   chain=[describe(c) for c in chain], trusted=ok, path=path, gaps=chain_gaps(chain, trusted_by),
                   key=key_of(chain[0]) if chain else {}, days_left=days_left(chain[0], now) if chain else None,
                   anchors=anchors, errors=failed, info=info)


@probe(per_host=False, slow=True)
def tls_scan(session) -> TlsScan:
    """One sslyze scan of the public endpoint: protocols, cipher suites, resumption, the chain."""
    public = session.access.public()
    bundle = anchors_file(public.ca_bundle)
    try:
        anchors_pem = Path(bundle).read_bytes()
    except OSError as exc:
        raise CouldNotAudit(None, f"the CA bundle {bundle}", f"cannot read it: {exc.strerror} "
                                                             "(inventory all.vars.audit_ca_bundle)") from None
    scan = scan_endpoint(public)
    first = scan["scan_result"].get("session_resumption") or {}
    if (first.get("result") or {}).get("session_id_resumption_result") == "PARTIALLY_SUPPORTED":
        # some of sslyze's 5 resumptions failed: measure once more before calling it non-compliance
        # (a cache that is off or too small fails again; a reload racing the scan does not)
        again = scan_endpoint(public, {"session_resumption"})["scan_result"]["session_resumption"]
        scan["scan_result"]["session_resumption"] = {**again, "result": again.get("result") and {
            **again["result"], "first scan": first["result"]}}
    return summarise(scan, anchors_pem, dt.datetime.now(dt.UTC), f"{public.name}:{public.port} via {public.address}",
                     public_host(session.inventory) or public.name, bundle)


# ---------------------------------------------------------------- the web host: files, certbot

def parse_crontab(text: str) -> str | None:
    """The crontab from `crontab -l ...; echo exit=$?`: '' when the user has none, None when it
    could not be read."""
    match = re.search(r"exit=(\d+)\s*$", text)
    body = re.sub(r"\s*exit=\d+\s*$", "", text)
    if match and match.group(1) == "0":
        return body
    return "" if re.search(r"^no crontab for \S+\s*$", body, re.M) else None


def package_state(text: str, package: str) -> tuple[bool | None, str]:
    """(installed?, what the package manager said) from dpkg-query's `${Status} ${Version}` or
    `rpm -q`; None when neither answered."""
    for line in (ln.strip() for ln in text.splitlines()):
        if re.match(r"^(install|deinstall|purge|hold|unknown) \S+ \S+", line):
            return line.startswith("install ok installed"), line
        if "no packages found" in line or "is not installed" in line:
            return False, line
        if line.startswith(f"{package}-") and re.match(rf"^{re.escape(package)}-\d", line):
            return True, line
    return None, " ".join(text.split())[:200]


@dataclass(frozen=True)
class TlsHost:
    """A web host's certificate files (as its HTTPS server names them) and certbot."""

    files: dict[str, bool]             # path -> the file exists
    crontab: str                       # root's crontab ('' when root has none)
    plugin_installed: bool
    plugin_state: str                  # what the package manager said


@probe(needs=("nginx",))
def tls_host(session, host) -> TlsHost:
    """The certificate files the HTTPS server names, root's crontab, the certbot NGINX plugin."""
    package = session.expected("TLS-CERTBOT-NGINX-PLUGIN")
    try:
        nginx = session.facts.get("nginx", host.name)
        paths = [p for p in (nginx.read("https: ssl_certificate"), nginx.read("https: ssl_certificate_key")) if p]
    except CouldNotAudit:
        paths = []
    out = session.access.collect(host, {
        "crontab": "$SUDO crontab -l -u root 2>&1; echo \"exit=$?\"",
        "plugin": f"dpkg-query -W -f='${{Status}} ${{Version}}\\n' {shlex.quote(package)} 2>&1 "
                  f"|| rpm -q {shlex.quote(package)} 2>&1",
        "files": "; ".join(f"$SUDO test -f {shlex.quote(cert_file)} && echo {shlex.quote(cert_file)}"
                           for cert_file in paths) or "true",
    })
    crontab = parse_crontab(out["crontab"])
    if crontab is None:
        raise CouldNotAudit(host.name, "root's crontab", f"`crontab -l -u root` failed: {out['crontab'][-200:]}")
    installed, state = package_state(out["plugin"], package)
    if installed is None:
        raise CouldNotAudit(host.name, f"package {package}", f"neither dpkg-query nor rpm answered: {state}")
    present = set(out["files"].splitlines())
    return TlsHost({p: p in present for p in paths}, crontab, installed, state)
