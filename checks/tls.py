"""Guide: SSL/TLS Configuration and the HTTPS server of NGINX Configuration - protocols, ciphers,
the certificate, session resumption and certbot (HSTS, a header, is in checks/nginx.py). What is
read, and how: audit/probes/tls.py (the scan, the web hosts' files and certbot) and
audit/probes/nginx.py (the directives).

ssl_ciphers, ssl_prefer_server_ciphers and ssl_session_cache/timeout are catalogue rows judged
by checks/values.py; a protocol that OpenSSL refuses anyway never shows in a scan, hence also
the configured ssl_protocols.
"""

from __future__ import annotations

import pytest

from audit import evidence
from audit.probes.nginx import with_domain
from audit.probes.shell import crontab_entries, same_schedule
from audit.probes.tls import PROTOCOL_COMMANDS, name_matches

# ---------------------------------------------------------------- the endpoint (one scan per run)


@pytest.mark.requirement("TLS-PROTOCOLS")
def check_only_tls12_and_tls13_are_accepted(judge, tls_scan):
    """"ssl_protocols TLSv1.2 TLSv1.3;": handshakes with SSLv2/SSLv3/TLSv1/TLSv1.1 fail."""
    tls_scan.need(*PROTOCOL_COMMANDS.values())
    evidence.attach("vulnerabilities (information, not a guide requirement)", tls_scan.info, kind="json")
    enabled = sorted(p for p, suites in tls_scan.protocols.items() if suites)
    judge.equal(enabled, what="protocols accepted", expected=sorted(judge.expected["enabled"]),
                where=f"sslyze {tls_scan.target}")


@pytest.mark.requirement("TLS-CIPHERS-TLS12")
def check_tls12_cipher_suites(judge, tls_scan):
    """"ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;"."""
    tls_scan.need("tls_1_2_cipher_suites")
    judge.equal(sorted(tls_scan.protocols["TLSv1.2"]), what="TLSv1.2 cipher suites accepted",
                expected=sorted(judge.expected), where=f"sslyze {tls_scan.target}")


@pytest.mark.requirement("TLS-SESSION-RESUMPTION")
def check_session_resumption(judge, tls_scan):
    """"ssl_session_cache shared:SSL:10m; ssl_session_timeout 10m;": a client offering its previous
    session ID is resumed (the session cache, not only tickets)."""
    tls_scan.need("session_resumption")
    result = tls_scan.resumption
    judge.that(result.get("session_id_resumption_result") == "FULLY_SUPPORTED", what="session ID resumption",
               found=result, expected={"session_id_resumption_result": "FULLY_SUPPORTED"},
               where=f"sslyze {tls_scan.target}")


@pytest.mark.requirement("TLS-CERT-TRUSTED")
def check_certificate_is_trusted(judge, tls_scan):
    """"sudo certbot --nginx -d your-domain.com" / "cp your-certificate.crt ...": a certificate from
    a trusted CA, within its validity period."""
    tls_scan.need("certificate_info")
    judge.that(tls_scan.trusted, what="trust path of the served certificate", found=" -> ".join(tls_scan.path),
               expected=f"verifies against {tls_scan.anchors}", where=f"sslyze {tls_scan.target}")


@pytest.mark.requirement("TLS-CERT-HOSTNAME")
def check_certificate_matches_the_public_name(judge, tls_scan):
    """"certbot --nginx -d your-domain.com": the certificate names the public host."""
    tls_scan.need("certificate_info")
    want = with_domain(judge.expected, tls_scan.host)
    judge.that(any(name_matches(n, want) for n in tls_scan.leaf_names), what="certificate names (SAN)",
               found=tls_scan.leaf_names, expected=want, where=f"sslyze {tls_scan.target}")


@pytest.mark.requirement("TLS-CERT-CHAIN-COMPLETE")
def check_full_chain_is_sent(judge, tls_scan):
    """"ssl_certificate /etc/letsencrypt/live/your-domain.com/fullchain.pem;": every certificate's
    issuer is sent or trusted; nothing has to be fetched."""
    tls_scan.need("certificate_info")
    judge.that(bool(tls_scan.chain) and not tls_scan.gaps, what="received chain",
               found={"received": tls_scan.chain, "issuer neither sent nor trusted": tls_scan.gaps} if tls_scan.chain
               else None, expected="complete up to a trusted anchor", where=f"sslyze {tls_scan.target}")


@pytest.mark.requirement("TLS-CERT-RSA-KEY")
def check_certificate_key_is_rsa_2048(judge, tls_scan):
    """"openssl genrsa -out your-domain.key 2048" and ECDHE-RSA ciphers: an RSA key of >= 2048 bits."""
    tls_scan.need("certificate_info")
    want, key = judge.expected, tls_scan.key
    judge.that(key.get("type") == want["type"] and (key.get("bits") or 0) >= want["min_bits"],
               what="the served certificate's key", found=key, where=f"sslyze {tls_scan.target}")


@pytest.mark.requirement("CHK-CERT-VALIDITY")
def check_certificate_valid_for_more_than_30_days(judge, tls_scan):
    """"echo | openssl s_client -connect your-domain.com:443 2>/dev/null | openssl x509 -noout -dates"
    (System Health): the certificate stays valid for more than 30 days."""
    tls_scan.need("certificate_info")
    left = tls_scan.days_left
    judge.that(left is not None and left > judge.expected["min_days"], what="days of validity left",
               found=None if left is None else round(left, 1), expected=f"> {judge.expected['min_days']}",
               where=f"sslyze {tls_scan.target}: not after {tls_scan.chain[0]['not_after'] if tls_scan.chain else '-'}")


# ---------------------------------------------------------------- the web hosts


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-PROTOCOLS")
def check_ssl_protocols_configured(judge, nginx):
    """"ssl_protocols TLSv1.2 TLSv1.3;" in the HTTPS server (also what OpenSSL would refuse anyway)."""
    found = nginx.read("https: ssl_protocols")
    judge.equal(sorted(found) if found else None, what="ssl_protocols", expected=sorted(judge.expected["enabled"]),
                where="nginx -T")


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-CERT-FILES")
def check_certificate_files(judge, nginx, tls_host):
    """"ssl_certificate /etc/letsencrypt/live/your-domain.com/fullchain.pem; ssl_certificate_key
    /etc/letsencrypt/live/your-domain.com/privkey.pem;" - and the files are there."""
    want = with_domain(judge.expected, nginx.public_host)
    judge.equal(nginx.read("https: " + ", ".join(want)), what="certificate files", expected=want, where="nginx -T")
    judge.each(tls_host.files, bool, what="file present on the host", expected="present")


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-CERTBOT-NGINX-PLUGIN")
def check_certbot_nginx_plugin(judge, tls_host):
    """"sudo apt install certbot python3-certbot-nginx"."""
    judge.that(tls_host.plugin_installed, what=f"package {judge.expected}", found=tls_host.plugin_state,
               expected="installed")


@pytest.mark.roles("web")
@pytest.mark.requirement("TLS-CERTBOT-RENEW-CRON")
def check_certbot_renew_scheduled(judge, tls_host):
    """"sudo crontab -e  # Add: 0 12 * * * /usr/bin/certbot renew --quiet"."""
    want = judge.expected
    jobs = [(e["schedule"], e["command"]) for e in crontab_entries(tls_host.crontab)
            if "certbot" in e["command"] and "renew" in e["command"]]
    judge.that(any(same_schedule(s, want["schedule"]) and c.split() == want["command"].split() for s, c in jobs),
               what="certbot renew jobs", found=jobs,
               expected=f"{want['schedule']} {want['command']}", where=f"crontab -l -u {want['crontab']}")
