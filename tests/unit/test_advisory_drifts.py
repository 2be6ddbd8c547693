"""provision/drifts/advisories.py and provision/hardened.py: every advisory has a drift, except
the sslyze scans that Debian 12's OpenSSL and NGINX cannot fail (named in the module), and the
drifts name only advisories."""

from __future__ import annotations

from audit.catalogue import load_catalogue
from provision import hardened
from provision.drifts import _registry as registry
from provision.drifts import advisories

NO_DRIFT = {"ADV-TLS-HEARTBLEED", "ADV-TLS-CCS-INJECTION", "ADV-TLS-ROBOT", "ADV-TLS-SECURE-RENEGOTIATION",
            "ADV-TLS-FALLBACK-SCSV", "ADV-TLS-CLIENT-RENEGOTIATION", "ADV-TLS-COMPRESSION",
            "ADV-TLS-EXTENDED-MASTER-SECRET"}


def test_every_advisory_has_a_drift_but_the_ones_openssl_cannot_fail():
    ids = {a.id for a in load_catalogue().advisories}
    named = {r for d in advisories.DRIFTS for r in d.requirements}
    assert named <= ids
    assert ids - named == NO_DRIFT
    for scan in ("Heartbleed", "CCS injection", "ROBOT", "renegotiation", "TLS_FALLBACK_SCSV", "compression",
                 "Extended Master"):
        assert scan in advisories.__doc__


def test_drift_names_are_unique_and_new():
    names = [d.name for d in advisories.DRIFTS]
    assert len(names) == len(set(names))
    assert all(n.startswith("adv-") for n in names)
    assert not set(names) & {d.name for d in registry() if not d.hardened}
    assert set(names) <= {d.name for d in registry()}  # the registry carries them (Drift.hardened)
    assert set(advisories.NEEDS_HARDENED) <= set(names)


def test_hardening_undoes_in_reverse_order():
    calls = []

    class Ctx:
        def __getattr__(self, name):
            return lambda *a, **k: calls.append(name)

    steps = [lambda ctx, on, i=i: calls.append((i, on)) for i in range(3)]
    original = hardened.STEPS
    try:
        hardened.STEPS = tuple(steps)
        hardened.harden(Ctx())
        hardened.unharden(Ctx())
    finally:
        hardened.STEPS = original
    assert calls == [(0, True), (1, True), (2, True), (2, False), (1, False), (0, False)]
