"""Guide: SSL/TLS Configuration and the HTTPS server block of NGINX Configuration - protocols,
ciphers, certificate, session resumption, HSTS is in test_nginx.py (a header), certbot renewal.

Live: ONE sslyze scan of the public endpoint per run (a session fixture, attached as JSON),
to the public name (SNI, certificate name) at the inventory's address override, certificates
validated against the inventory's CA bundle. Configuration: `nginx -T` of each web host (the
shared audit.nginx group), since a protocol that OpenSSL refuses anyway never shows in a scan.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from audit.evidence import attach, compare
from audit.http import address_for
from audit.nginx import effective_config, read

PLACEHOLDER = "your-domain.com"
PROTOCOL_COMMANDS = {  # guide name -> sslyze scan command
    "SSLv2": "ssl_2_0_cipher_suites", "SSLv3": "ssl_3_0_cipher_suites", "TLSv1": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites", "TLSv1.2": "tls_1_2_cipher_suites", "TLSv1.3": "tls_1_3_cipher_suites",
}
INFO_COMMANDS = ("tls_compression", "heartbleed", "robot", "session_renegotiation", "openssl_ccs_injection",
                 "tls_fallback_scsv", "elliptic_curves")
# Mozilla's "intermediate" server profile (v5.7), for information only: not a guide requirement.
MOZILLA_INTERMEDIATE = {
    "protocols": ["TLSv1.2", "TLSv1.3"],
    "tls12_ciphers": ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
                      "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
                      "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
                      "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305"],
    "hsts_min_age": 63072000,
    "certificate_max_days": 366,
}


# ---------------------------------------------------------------- the scan

def scan_request(hostname: str, address: str, port: int, ca_file: str | None,
                 only: set[str] | None = None):
    """sslyze's request for every command the checks read, or `only` these. The CA file is passed
    only with certificate_info: sslyze refuses an extra argument for a command it does not run."""
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommand,
        ScanCommandsExtraArguments,
        ServerNetworkLocation,
        ServerScanRequest,
    )

    commands = {ScanCommand(c) for c in (*PROTOCOL_COMMANDS.values(), *INFO_COMMANDS)}
    commands |= {ScanCommand.CERTIFICATE_INFO, ScanCommand.SESSION_RESUMPTION}
    if only:
        commands = {ScanCommand(c) for c in only}
    with_ca = ca_file and ScanCommand.CERTIFICATE_INFO in commands
    extra = ScanCommandsExtraArguments(
        certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(ca_file)) if with_ca else None)
    return ServerScanRequest(server_location=ServerNetworkLocation(hostname=hostname, port=port,
                                                                   ip_address=address),
                             scan_commands=commands, scan_commands_extra_arguments=extra)


def scan_endpoint(hostname: str, address: str, port: int, ca_file: str | None,
                  only: set[str] | None = None) -> dict[str, Any]:
    """One sslyze scan (see scan_request); sslyze's JSON model."""
    from sslyze import Scanner, ServerScanResultAsJson

    request = scan_request(hostname, address, port, ca_file, only)
    scanner = Scanner()
    scanner.queue_scans([request])
    result = next(iter(scanner.get_results()))
    return json.loads(ServerScanResultAsJson.model_validate(result).model_dump_json())


class ScanFailed(Exception):
    """The scan could not run (connection refused, timeout): could not audit."""


def command_result(scan: dict[str, Any], command: str) -> dict[str, Any]:
    if scan.get("scan_status") != "COMPLETED":
        raise ScanFailed(f"scan of {scan.get('server_location')}: {scan.get('scan_status')} "
                         f"({scan.get('connectivity_error_trace') or ''})")
    attempt = scan["scan_result"][command]
    if attempt["status"] != "COMPLETED" or attempt["result"] is None:
        raise ScanFailed(f"sslyze {command}: {attempt['status']} {attempt.get('error_reason')} "
                         f"{(attempt.get('error_trace') or '')[-300:]}")
    return attempt["result"]


def accepted_protocols(scan: dict[str, Any]) -> dict[str, list[str]]:
    """guide protocol name -> accepted cipher suites (OpenSSL names)."""
    return {proto: [c["cipher_suite"]["openssl_name"] for c in command_result(scan, cmd)["accepted_cipher_suites"]]
            for proto, cmd in PROTOCOL_COMMANDS.items()}


def compact(scan: dict[str, Any]) -> dict[str, Any]:
    """The scan with each protocol's list of rejected cipher suites replaced by its length."""
    out = json.loads(json.dumps(scan))
    for attempt in (out.get("scan_result") or {}).values():
        result = (attempt or {}).get("result") if isinstance(attempt, dict) else None
        if isinstance(result, dict) and isinstance(result.get("rejected_cipher_suites"), list):
            result["rejected_cipher_suites"] = len(result["rejected_cipher_suites"])
    return out


def received_chain(scan: dict[str, Any]) -> list[x509.Certificate]:
    deployment = command_result(scan, "certificate_info")["certificate_deployments"][0]
    return [x509.load_pem_x509_certificate(c["as_pem"].encode()) for c in deployment["received_certificate_chain"]]


def load_bundle(path: str | None) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(path).read_bytes()) if path else []


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, Exception):  # InvalidSignature, unsupported key types
        return False


def valid_at(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def trust_path(chain: list[x509.Certificate], anchors: list[x509.Certificate],
               now: dt.datetime) -> tuple[bool, list[str]]:
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


def chain_gaps(chain: list[x509.Certificate], anchors: list[x509.Certificate]) -> list[str]:
    """Certificates of the received chain whose issuer is neither the next one sent, a trust anchor,
    nor themselves: what a client would have to fetch (empty = the full chain is sent)."""
    gaps = []
    for i, cert in enumerate(chain):
        if issued_by(cert, cert):
            continue
        if i + 1 < len(chain) and issued_by(cert, chain[i + 1]):
            continue
        if any(issued_by(cert, a) for a in anchors):
            continue
        gaps.append(f"{cert.subject.rfc4514_string()} (issuer {cert.issuer.rfc4514_string()})")
    return gaps


def cert_names(cert: x509.Certificate) -> list[str]:
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


def days_left(cert: x509.Certificate, now: dt.datetime) -> float:
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


def cron_entries(crontab: str) -> list[tuple[str, str]]:
    """(schedule, command) of each job line of a crontab (5 fields, or an @keyword)."""
    out = []
    for line in crontab.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" in line.split(None, 1)[0]:
            continue
        fields = line.split(None, 1 if line.startswith("@") else 5)
        if line.startswith("@") and len(fields) == 2:
            out.append((fields[0], fields[1]))
        elif len(fields) == 6:
            out.append((" ".join(fields[:5]), fields[5]))
    return out


def same_schedule(actual: str, expected: str, start: dt.datetime | None = None, runs: int = 8) -> bool:
    """Two cron schedules fire at the same times (the next `runs` runs), e.g. @daily == 0 0 * * *."""
    if not croniter.is_valid(actual):
        return False
    start = start or dt.datetime(2025, 1, 1)
    a, b = croniter(actual, start), croniter(expected, start)
    return all(a.get_next(dt.datetime) == b.get_next(dt.datetime) for _ in range(runs))


def mozilla_intermediate_gaps(protocols: dict[str, list[str]], cert: x509.Certificate | None) -> dict[str, Any]:
    """Informational comparison with Mozilla's intermediate profile."""
    enabled = sorted(p for p, suites in protocols.items() if suites)
    tls12 = protocols.get("TLSv1.2", [])
    info: dict[str, Any] = {
        "protocols": {"served": enabled, "profile": MOZILLA_INTERMEDIATE["protocols"],
                      "match": enabled == MOZILLA_INTERMEDIATE["protocols"]},
        "tls12_ciphers_outside_profile": sorted(set(tls12) - set(MOZILLA_INTERMEDIATE["tls12_ciphers"])),
        "profile_tls12_ciphers_not_served": sorted(set(MOZILLA_INTERMEDIATE["tls12_ciphers"]) - set(tls12)),
    }
    if cert is not None:
        lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        info["certificate_lifetime_days"] = {"served": lifetime, "profile_max": MOZILLA_INTERMEDIATE[
            "certificate_max_days"]}
    return info


# ---------------------------------------------------------------- fixtures

class Endpoint:
    def __init__(self, inventory):
        url = inventory.setting("audit_public_url")
        self.name, self.address, self.port = address_for(url, inventory.setting("audit_resolve"))
        self.public_host = inventory.setting("audit_public_host") or self.name
        self.ca = inventory.setting("audit_ca_bundle")


@pytest.fixture(scope="session")
def endpoint(inventory) -> Endpoint:
    if not inventory.setting("audit_public_url"):
        pytest.skip("no audit_public_url in the inventory")
    return Endpoint(inventory)


@pytest.fixture(scope="session")
def _scan_cache() -> dict[str, Any]:
    return {}


@pytest.fixture
def scan(endpoint, _scan_cache) -> dict[str, Any]:
    """The session's one sslyze scan of the endpoint, attached (as JSON) to every check using it."""
    if "scan" not in _scan_cache:
        result = scan_endpoint(endpoint.name, endpoint.address, endpoint.port, endpoint.ca)
        _scan_cache["scan"] = result
        info = {}
        for cmd in INFO_COMMANDS:
            attempt = result.get("scan_result", {}).get(cmd) or {}
            info[cmd] = attempt.get("result") or attempt.get("status")
        try:
            chain = received_chain(result)
            info["mozilla_intermediate (information, not a guide requirement)"] = mozilla_intermediate_gaps(
                accepted_protocols(result), chain[0] if chain else None)
        except ScanFailed:
            pass
        _scan_cache["info"] = info
    result = _scan_cache["scan"]
    name = f"sslyze scan {endpoint.name}:{endpoint.port} via {endpoint.address}"
    if not _scan_cache.get("attached"):  # the whole scan once per session, then without rejected suites
        _scan_cache["attached"] = True
        attach(name, result, kind="json")
    else:
        attach(name + " (rejected cipher suites counted)", compact(result), kind="json")
    attach("vulnerabilities and Mozilla intermediate comparison (information)", _scan_cache["info"], kind="json")
    return result


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _with_domain(value: Any, domain: str) -> Any:
    if isinstance(value, dict):
        return {k: _with_domain(v, domain) for k, v in value.items()}
    return value.replace(PLACEHOLDER, domain) if isinstance(value, str) else value


# ---------------------------------------------------------------- live checks (the scan)

@pytest.mark.requirement("TLS-PROTOCOLS")
def test_only_tls12_and_tls13_are_accepted(scan, expected, endpoint):
    """"ssl_protocols TLSv1.2 TLSv1.3;": handshakes with SSLv2/SSLv3/TLSv1/TLSv1.1 fail."""
    want = expected("TLS-PROTOCOLS")
    protocols = accepted_protocols(scan)
    enabled = sorted(p for p, suites in protocols.items() if suites)
    compare("accepted protocols", protocols, want)
    assert enabled == sorted(want["enabled"]), (
        f"{endpoint.name}: protocols accepted {enabled}, guide: {want['enabled']}")


@pytest.mark.requirement("TLS-CIPHERS-TLS12")
def test_tls12_cipher_suites(scan, expected, endpoint):
    """"ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;"."""
    accepted = sorted(accepted_protocols(scan)["TLSv1.2"])
    compare("TLSv1.2 cipher suites accepted", accepted, sorted(expected("TLS-CIPHERS-TLS12")))
    assert accepted == sorted(expected("TLS-CIPHERS-TLS12")), f"{endpoint.name}: TLSv1.2 accepts {accepted}"


@pytest.mark.requirement("TLS-SESSION-RESUMPTION")
def test_session_resumption(scan, endpoint):
    """"ssl_session_cache shared:SSL:10m; ssl_session_timeout 10m;": a client offering its previous
    session ID is resumed (the session cache, not only tickets)."""
    result = command_result(scan, "session_resumption")
    if result["session_id_resumption_result"] == "PARTIALLY_SUPPORTED":
        # some of sslyze's 5 resumptions failed: measure once more before calling it non-compliance
        # (a cache that is off or too small fails again; a reload racing the scan does not)
        attach("session resumption, first scan", result, kind="json")
        rescan = scan_endpoint(endpoint.name, endpoint.address, endpoint.port, endpoint.ca, {"session_resumption"})
        result = command_result(rescan, "session_resumption")
    compare("session resumption", result, {"session_id_resumption_result": "FULLY_SUPPORTED"})
    assert result["session_id_resumption_result"] == "FULLY_SUPPORTED", (
        f"{endpoint.name}: session ID resumption {result['session_id_resumption_result']} "
        f"({result['session_id_successful_resumptions_count']}/{result['session_id_attempted_resumptions_count']})")


def _describe(chain: list[x509.Certificate]) -> list[dict[str, str]]:
    return [{"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
             "not_after": c.not_valid_after_utc.isoformat(), "san": cert_names(c)} for c in chain]


@pytest.mark.requirement("TLS-CERT-TRUSTED")
def test_certificate_is_trusted(scan, endpoint, now):
    """"sudo certbot --nginx -d your-domain.com" / "cp your-certificate.crt ...": a certificate from
    a trusted CA, within its validity period."""
    chain = received_chain(scan)
    ok, path = trust_path(chain, load_bundle(endpoint.ca), now)
    compare("trust path", {"received": _describe(chain), "path": path}, f"verifies against {endpoint.ca}")
    assert ok, f"{endpoint.name}: certificate does not verify: {' -> '.join(path)}"


@pytest.mark.requirement("TLS-CERT-HOSTNAME")
def test_certificate_matches_the_public_name(scan, expected, endpoint):
    """"certbot --nginx -d your-domain.com": the certificate names the public host."""
    want = _with_domain(expected("TLS-CERT-HOSTNAME"), endpoint.public_host)
    leaf = received_chain(scan)[0]
    names = cert_names(leaf)
    compare("certificate names (SAN)", names, want)
    assert any(name_matches(n, want) for n in names), f"{endpoint.name}: certificate names {names}, not {want}"


@pytest.mark.requirement("TLS-CERT-CHAIN-COMPLETE")
def test_full_chain_is_sent(scan, endpoint):
    """"ssl_certificate /etc/letsencrypt/live/your-domain.com/fullchain.pem;": every certificate's
    issuer is sent or trusted; nothing has to be fetched."""
    chain = received_chain(scan)
    gaps = chain_gaps(chain, load_bundle(endpoint.ca))
    compare("received chain", _describe(chain), "complete up to a trusted anchor")
    assert not gaps, f"{endpoint.name}: incomplete chain, issuer missing for {gaps}"


@pytest.mark.requirement("TLS-CERT-RSA-KEY")
def test_certificate_key_is_rsa_2048(scan, expected, endpoint):
    """"openssl genrsa -out your-domain.key 2048" and ECDHE-RSA ciphers: an RSA key of >= 2048 bits."""
    want = expected("TLS-CERT-RSA-KEY")
    key = received_chain(scan)[0].public_key()
    actual = {"type": "RSA" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__,
              "bits": getattr(key, "key_size", None)}
    compare("certificate key", actual, want)
    assert actual["type"] == want["type"], f"{endpoint.name}: certificate key is {actual['type']}"
    assert actual["bits"] >= want["min_bits"], f"{endpoint.name}: RSA key of {actual['bits']} bits"


@pytest.mark.requirement("CHK-CERT-VALIDITY")
def test_certificate_valid_for_more_than_30_days(scan, expected, endpoint, now):
    """"echo | openssl s_client -connect your-domain.com:443 2>/dev/null | openssl x509 -noout -dates"
    (System Health): the certificate stays valid for more than 30 days."""
    leaf = received_chain(scan)[0]
    left = days_left(leaf, now)
    compare("days of validity left", round(left, 1), f"> {expected('CHK-CERT-VALIDITY')['min_days']}")
    assert left > expected("CHK-CERT-VALIDITY")["min_days"], (
        f"{endpoint.name}: certificate expires {leaf.not_valid_after_utc:%Y-%m-%d} ({left:.0f} days left)")


# ---------------------------------------------------------------- configuration checks (web hosts)

@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-PROTOCOLS")
def test_ssl_protocols_configured(server, expected):
    """"ssl_protocols TLSv1.2 TLSv1.3;" in the HTTPS server (also what OpenSSL would refuse anyway)."""
    conf = effective_config(server)
    srv = conf.server_listening(443)
    d = (srv.first("ssl_protocols") if srv else None) or conf.http.first("ssl_protocols")
    actual = sorted(d.args) if d else None
    compare("ssl_protocols", actual, sorted(expected("TLS-PROTOCOLS")["enabled"]))
    assert actual == sorted(expected("TLS-PROTOCOLS")["enabled"]), f"{server.name}: ssl_protocols {actual}"


def _ssl_value(server, name: str) -> str | None:
    conf = effective_config(server)
    srv = conf.server_listening(443)
    return (srv.value(name) if srv else None) or conf.http.value(name)


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-CIPHERS-TLS12")
def test_ssl_ciphers_configured(server, expected):
    """"ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;"."""
    value = _ssl_value(server, "ssl_ciphers") or ""
    actual = sorted(c for c in value.split(":") if c)
    compare("ssl_ciphers", actual, sorted(expected("TLS-CIPHERS-TLS12")))
    assert actual == sorted(expected("TLS-CIPHERS-TLS12")), f"{server.name}: ssl_ciphers {value}"


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-PREFER-SERVER-CIPHERS-OFF")
def test_ssl_prefer_server_ciphers_off(server, expected):
    """"ssl_prefer_server_ciphers off;" (NGINX's default is off too)."""
    actual = _ssl_value(server, "ssl_prefer_server_ciphers") or "off (default)"
    compare("ssl_prefer_server_ciphers", actual, expected("TLS-PREFER-SERVER-CIPHERS-OFF"))
    assert actual.split()[0] == expected("TLS-PREFER-SERVER-CIPHERS-OFF"), f"{server.name}: {actual}"


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-SESSION-CACHE")
def test_ssl_session_cache(server, expected):
    """"ssl_session_cache shared:SSL:10m; ssl_session_timeout 10m;"."""
    want = expected("TLS-SESSION-CACHE")
    actual = {k: _ssl_value(server, k) for k in want}
    compare("session cache", actual, want)
    assert actual == want, f"{server.name}: {actual}"


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-CERT-FILES")
def test_certificate_files(server, expected, inventory):
    """"ssl_certificate /etc/letsencrypt/live/your-domain.com/fullchain.pem; ssl_certificate_key
    /etc/letsencrypt/live/your-domain.com/privkey.pem;"."""
    want = _with_domain(expected("TLS-CERT-FILES"), inventory.setting("audit_public_host") or PLACEHOLDER)
    actual = {k: _ssl_value(server, k) for k in want}
    compare("certificate files", actual, want)
    assert actual == want, f"{server.name}: {actual}"


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-CERTBOT-NGINX-PLUGIN")
def test_certbot_nginx_plugin(server, expected):
    """"sudo apt install certbot python3-certbot-nginx"."""
    status = read(server)["certbot_nginx"].strip()
    attach(expected("TLS-CERTBOT-NGINX-PLUGIN"), status or "not installed")
    assert status.startswith("install ok installed") or status.startswith(expected("TLS-CERTBOT-NGINX-PLUGIN")), (
        f"{server.name}: {expected('TLS-CERTBOT-NGINX-PLUGIN')} is not installed ({status or 'unknown'})")


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-CERTBOT-RENEW-CRON")
def test_certbot_renew_scheduled(server, expected):
    """"sudo crontab -e  # Add: 0 12 * * * /usr/bin/certbot renew --quiet"."""
    want = expected("TLS-CERTBOT-RENEW-CRON")
    crontab = read(server)["crontab"]
    jobs = [(s, c) for s, c in cron_entries(crontab) if "certbot" in c and "renew" in c]
    attach(f"crontab -l -u {want['crontab']}", crontab)
    compare("certbot renew jobs", jobs, [want["schedule"], want["command"]])
    good = [j for j in jobs if same_schedule(j[0], want["schedule"]) and j[1].split() == want["command"].split()]
    assert good, f"{server.name}: no `{want['schedule']} {want['command']}` in root's crontab (found {jobs})"
