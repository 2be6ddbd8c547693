"""TLS parsing (audit/probes/tls.py): sslyze JSON (trimmed from a scan of the reference web1),
certificate chains made here, crontabs and package states; compliant and non-compliant samples."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from audit.outcomes import CouldNotAudit
from audit.probes.shell import crontab_entries, same_schedule
from audit.probes.tls import (
    PROTOCOL_COMMANDS,
    accepted_protocols,
    cert_names,
    chain_gaps,
    days_left,
    name_matches,
    package_state,
    parse_crontab,
    results,
    scan_request,
    summarise,
    trust_path,
)

NOW = dt.datetime(2026, 11, 26, 5, 0, tzinfo=dt.UTC)


def _suite(name: str) -> dict:
    return {"cipher_suite": {"name": name, "openssl_name": name}, "ephemeral_key": None}


def _scan(accepted: dict[str, list[str]], status: str = "COMPLETED") -> dict:
    result = {cmd: {"status": "COMPLETED", "error_reason": None, "error_trace": None,
                    "result": {"accepted_cipher_suites": [_suite(s) for s in accepted.get(proto, [])],
                               "rejected_cipher_suites": []}}
              for proto, cmd in PROTOCOL_COMMANDS.items()}
    result["session_resumption"] = {"status": "ERROR", "error_reason": "CONNECTIVITY_ISSUE",
                                    "error_trace": "timed out", "result": None}
    return {"scan_status": status, "server_location": {"hostname": "pynomaly.test"}, "scan_result": result}


REFERENCE = {"TLSv1.2": ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"],
             "TLSv1.3": ["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"]}


def test_accepted_protocols_of_the_reference():
    protocols = accepted_protocols(results(_scan(REFERENCE))[0])
    assert sorted(p for p, s in protocols.items() if s) == ["TLSv1.2", "TLSv1.3"]
    assert sorted(protocols["TLSv1.2"]) == ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"]


def test_accepted_protocols_with_tls11_and_a_weak_cipher():
    protocols = accepted_protocols(results(_scan({**REFERENCE, "TLSv1.1": ["ECDHE-RSA-AES128-SHA"],
                                                  "TLSv1.2": [*REFERENCE["TLSv1.2"], "ECDHE-RSA-AES128-SHA"]}))[0])
    assert sorted(p for p, s in protocols.items() if s) == ["TLSv1.1", "TLSv1.2", "TLSv1.3"]
    assert "ECDHE-RSA-AES128-SHA" in protocols["TLSv1.2"]


def test_a_command_that_did_not_complete_cannot_audit():
    done, failed = results(_scan(REFERENCE))
    assert "session_resumption" not in done
    assert "CONNECTIVITY_ISSUE" in failed["session_resumption"]
    scan = summarise(_scan(REFERENCE), b"", NOW, "pynomaly.test:443 via 127.77.0.11")
    scan.need("tls_1_2_cipher_suites")
    with pytest.raises(CouldNotAudit, match="CONNECTIVITY_ISSUE"):
        scan.need("session_resumption")
    with pytest.raises(CouldNotAudit, match="certificate_info"):
        scan.need("certificate_info")


def test_no_certificate_received_is_never_a_pass():
    scan = summarise(_scan(REFERENCE), b"", NOW, "t")
    assert scan.chain == []
    assert scan.leaf_names == []
    assert scan.trusted is False
    assert scan.path == ["no certificate received"]
    assert scan.days_left is None
    assert scan.key == {}


# ---------------------------------------------------------------- certificates

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn, key, issuer=None, issuer_key=None, days=90, dns=None, start=NOW - dt.timedelta(days=1)):
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer.subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days)))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    ca = _cert("CA", keys[0], days=365, start=NOW - dt.timedelta(days=10))
    mid = _cert("Intermediate", keys[1], ca, keys[0], days=200)
    leaf = _cert("pynomaly.test", keys[2], ca, keys[0], dns=["pynomaly.test"])
    leaf_via_mid = _cert("pynomaly.test", keys[2], mid, keys[1], dns=["pynomaly.test"])
    selfsigned = _cert("pynomaly.test", keys[3], dns=["pynomaly.test"])
    expired = _cert("pynomaly.test", keys[2], ca, keys[0], days=5, start=NOW - dt.timedelta(days=9))
    return {"ca": ca, "mid": mid, "leaf": leaf, "leaf_via_mid": leaf_via_mid, "self": selfsigned,
            "expired": expired}


def test_trusted_chains(pki):
    assert trust_path([pki["leaf"], pki["ca"]], [pki["ca"]], NOW)[0]  # fullchain = leaf + CA
    assert trust_path([pki["leaf"]], [pki["ca"]], NOW)[0]
    assert trust_path([pki["leaf_via_mid"], pki["mid"]], [pki["ca"]], NOW)[0]


def test_untrusted_chains(pki):
    ok, path = trust_path([pki["self"]], [pki["ca"]], NOW)
    assert not ok
    assert "neither sent nor trusted" in path[-1]
    assert not trust_path([pki["leaf_via_mid"]], [pki["ca"]], NOW)[0]  # intermediate not sent
    assert not trust_path([pki["expired"]], [pki["ca"]], NOW)[0]
    assert not trust_path([], [pki["ca"]], NOW)[0]


def test_chain_completeness(pki):
    assert chain_gaps([pki["leaf"], pki["ca"]], [pki["ca"]]) == []
    assert chain_gaps([pki["leaf_via_mid"], pki["mid"]], [pki["ca"]]) == []
    assert chain_gaps([pki["self"]], [pki["ca"]]) == []  # nothing to fetch (but not trusted)
    gaps = chain_gaps([pki["leaf_via_mid"]], [pki["ca"]])
    assert len(gaps) == 1
    assert "Intermediate" in gaps[0]


def test_names_and_validity(pki):
    assert cert_names(pki["leaf"]) == ["pynomaly.test"]
    assert cert_names(pki["ca"]) == []
    assert name_matches("pynomaly.test", "PYNOMALY.test")
    assert name_matches("*.pynomaly.test", "api.pynomaly.test")
    assert not name_matches("*.pynomaly.test", "pynomaly.test")
    assert not name_matches("*.pynomaly.test", "a.b.pynomaly.test")
    assert not name_matches("www.example.test", "pynomaly.test")
    assert 88 < days_left(pki["leaf"], NOW) < 90
    assert days_left(pki["expired"], NOW) < 0


def test_rsa_key_size_is_readable():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _cert("x", key)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 2048


# ---------------------------------------------------------------- certbot crontab

CRONTAB = """# root's crontab on web1
SHELL=/bin/sh
0 12 * * * /usr/bin/certbot renew --quiet
0 2 * * * /opt/pynomaly/scripts/backup_app.sh
@daily /usr/sbin/logrotate /etc/logrotate.conf
"""


def test_cron_entries():
    entries = [(e["schedule"], e["command"]) for e in crontab_entries(CRONTAB)]
    assert entries[0] == ("0 12 * * *", "/usr/bin/certbot renew --quiet")
    assert ("@daily", "/usr/sbin/logrotate /etc/logrotate.conf") in entries
    assert len(entries) == 3


def test_same_schedule():
    assert same_schedule("0 12 * * *", "0 12 * * *")
    assert same_schedule("00 12 * * 0-6", "0 12 * * *")
    assert same_schedule("@daily", "0 0 * * *")
    assert not same_schedule("0 0 * * *", "0 12 * * *")
    assert not same_schedule("0 12 * * 1", "0 12 * * *")
    assert not same_schedule("not a schedule", "0 12 * * *")


def test_scan_request_passes_the_ca_only_with_certificate_info(tmp_path):
    """The session-resumption re-scan runs one command: sslyze refuses the CA file's extra
    argument for a command it does not run (CI once hit that ValueError on the re-scan)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    full = scan_request("web1", "127.0.0.1", 443, str(ca))
    assert full.scan_commands_extra_arguments.certificate_info.custom_ca_file == ca
    rescan = scan_request("web1", "127.0.0.1", 443, str(ca), {"session_resumption"})
    assert {c.value for c in rescan.scan_commands} == {"session_resumption"}
    assert rescan.scan_commands_extra_arguments.certificate_info is None


def _with_chain(*certs) -> dict:
    from cryptography.hazmat.primitives import serialization

    scan = _scan(REFERENCE)
    pems = [{"as_pem": c.public_bytes(serialization.Encoding.PEM).decode()} for c in certs]
    scan["scan_result"]["certificate_info"] = {"status": "COMPLETED", "result": {
        "certificate_deployments": [{"received_certificate_chain": pems}]}}
    return scan


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def test_summary_of_a_trusted_chain(pki):
    scan = summarise(_with_chain(pki["leaf"], pki["ca"]), _pem(pki["ca"]), NOW, "t", "pynomaly.test", "ca.pem")
    assert scan.trusted
    assert scan.gaps == []
    assert scan.leaf_names == ["pynomaly.test"]
    assert scan.key["type"] != "RSA"  # the test PKI uses EC keys
    assert 88 < scan.days_left < 90
    assert set(scan.info) == {"tls_compression", "heartbleed", "robot", "session_renegotiation",
                              "openssl_ccs_injection", "tls_fallback_scsv", "elliptic_curves",
                              "tls_1_3_early_data", "tls_extended_master_secret"}
    assert "certificate_info" not in scan.errors


def test_summary_of_untrusted_and_incomplete_chains(pki):
    selfsigned = summarise(_with_chain(pki["self"]), _pem(pki["ca"]), NOW, "t")
    assert not selfsigned.trusted
    assert selfsigned.gaps == []
    missing_mid = summarise(_with_chain(pki["leaf_via_mid"]), _pem(pki["ca"]), NOW, "t")
    assert not missing_mid.trusted
    assert len(missing_mid.gaps) == 1


def test_rsa_key_of_the_leaf():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    scan = summarise(_with_chain(_cert("pynomaly.test", key)), b"", NOW, "t")
    assert scan.key == {"type": "RSA", "bits": 2048}


def test_crontab_read_empty_or_unreadable():
    assert parse_crontab(CRONTAB + "exit=0\n") == CRONTAB.rstrip("\n")
    assert parse_crontab("no crontab for root\nexit=1\n") == ""  # root has none: the finding
    assert parse_crontab("sudo: a password is required\nexit=1\n") is None  # could not audit
    assert parse_crontab("") is None


def test_package_states():
    name = "python3-certbot-nginx"
    assert package_state("install ok installed 2.1.0-2", name) == (True, "install ok installed 2.1.0-2")
    assert package_state("deinstall ok config-files 2.1.0-2", name)[0] is False
    assert package_state(f"dpkg-query: no packages found matching {name}", name)[0] is False
    assert package_state(f"sh: 1: dpkg-query: not found\n{name}-1.22.0-1.el9.noarch", name)[0] is True
    assert package_state(f"sh: 1: dpkg-query: not found\npackage {name} is not installed", name)[0] is False
    assert package_state("", name)[0] is None  # no package manager answered: could not audit
    assert package_state("sh: 1: dpkg-query: not found\nsh: 1: rpm: not found", name)[0] is None


def test_partial_resumption_is_measured_once_more(monkeypatch, tmp_path):
    """A scan that resumed 3 of 5 sessions is scanned again (resumption only): the second result
    is judged, the first kept beside it."""
    from types import SimpleNamespace

    import audit.probes.tls as tls

    def resumption(result):
        return {"status": "COMPLETED", "result": {"session_id_resumption_result": result}}

    first = _scan(REFERENCE)
    first["scan_result"]["session_resumption"] = resumption("PARTIALLY_SUPPORTED")
    again = {"scan_result": {"session_resumption": resumption("FULLY_SUPPORTED")}}
    calls = []
    monkeypatch.setattr(tls, "scan_endpoint",
                        lambda public, only=None: calls.append(only) or (again if only else first))
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    public = SimpleNamespace(name="pynomaly.test", port=443, address="127.77.0.11", ca_bundle=str(ca))
    session = SimpleNamespace(access=SimpleNamespace(public=lambda: public),
                              inventory=SimpleNamespace(setting=lambda key, default=None: None))
    scan = tls.tls_scan(session)
    assert calls == [None, {"session_resumption"}]
    assert scan.resumption["session_id_resumption_result"] == "FULLY_SUPPORTED"
    assert scan.resumption["first scan"]["session_id_resumption_result"] == "PARTIALLY_SUPPORTED"
    assert scan.host == "pynomaly.test"


def _host_session(outputs: dict[str, str], nginx=None):
    from types import SimpleNamespace

    def get(name, host):
        if nginx is None:
            raise CouldNotAudit(host, "NGINX configuration", "unreadable")
        return nginx

    def collect(host, commands):
        return {k: outputs.get(k, "") for k in commands}

    return SimpleNamespace(expected=lambda req: "python3-certbot-nginx", facts=SimpleNamespace(get=get),
                           access=SimpleNamespace(collect=collect))


def test_certificate_files_crontab_and_plugin_of_a_web_host():
    from types import SimpleNamespace

    from audit.probes.tls import tls_host

    live = "/etc/letsencrypt/live/pynomaly.test"
    nginx = SimpleNamespace(read=lambda key: {"https: ssl_certificate": f"{live}/fullchain.pem",
                                              "https: ssl_certificate_key": f"{live}/privkey.pem"}[key])
    host = SimpleNamespace(name="web1")
    facts = tls_host(_host_session({"crontab": CRONTAB + "exit=0", "plugin": "install ok installed 2.1.0-2",
                                    "files": f"{live}/fullchain.pem"}, nginx), host)
    assert facts.files == {f"{live}/fullchain.pem": True, f"{live}/privkey.pem": False}  # the key is missing
    assert facts.plugin_installed
    first = crontab_entries(facts.crontab)[0]
    assert (first["schedule"], first["command"]) == ("0 12 * * *", "/usr/bin/certbot renew --quiet")
    unread = tls_host(_host_session({"crontab": "no crontab for root\nexit=1", "plugin": "install ok installed 2"}),
                      host)
    assert unread.files == {}  # the configuration could not be read: no file to look for
    assert unread.crontab == ""
    with pytest.raises(CouldNotAudit, match="crontab"):
        tls_host(_host_session({"crontab": "sudo: a password is required\nexit=1"}), host)
    with pytest.raises(CouldNotAudit, match="neither dpkg-query nor rpm"):
        tls_host(_host_session({"crontab": "exit=0"}), host)
