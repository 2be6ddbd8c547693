"""Advisories (ADV-*, checks/advisories.yml) in the framework: loaded with the catalogue, shown
apart in the verdict and the requirement matrix, counted only by --gate=hardened."""

from __future__ import annotations

import pytest

from audit import matrix
from audit.catalogue import Catalogue, load_catalogue
from audit.outcomes import COMPLIANT, COULD_NOT_AUDIT, NON_COMPLIANT, Tally, verdict

SECTIONS = {"s": {"title": "S", "anchor": "s"}}


def _catalogue() -> Catalogue:
    return Catalogue(guide="g.md", sections=SECTIONS,
                     requirements=[{"id": "REQ-A", "section": "s", "statement": "a", "severity": "critical"}],
                     advisories=[{"id": "ADV-B", "section": "s", "statement": "b", "severity": "blocker",
                                  "source": "baseline: SSH"}])


def _tally(outcomes: dict[str, str]) -> Tally:
    t = Tally()
    for i, (req, outcome) in enumerate(outcomes.items()):
        t.by_test[f"checks/x.py::check_{i}[h]"] = {"outcome": outcome, "requirements": req, "host": "h",
                                                   "category": None, "message": f"{req} {outcome}"}
    return t


def test_the_catalogue_loads_checks_advisories_yml():
    cat = load_catalogue()
    assert cat.advisories
    assert all(a.advisory and a.source for a in cat.advisories)
    assert not any(r.advisory for r in cat.requirements)
    assert set(cat.sections) >= {a.section for a in cat.advisories}


def test_an_advisory_needs_a_source_and_an_adv_id_belongs_in_advisories():
    with pytest.raises(ValueError, match="source"):
        Catalogue(guide="g", sections=SECTIONS, requirements=[],
                  advisories=[{"id": "ADV-X", "section": "s", "statement": "x", "severity": "minor"}])
    with pytest.raises(ValueError, match="advisories"):
        Catalogue(guide="g", sections=SECTIONS, requirements=[
            {"id": "ADV-X", "section": "s", "statement": "x", "severity": "minor", "source": "x"}])


@pytest.mark.parametrize("gate", [None, "nightly", "pre-release"])
def test_advisory_findings_do_not_change_the_guide_gates(gate):
    cat = _catalogue()
    result = verdict(_tally({"REQ-A": "passed", "ADV-B": "failed"}), gate, cat, {"REQ-A": "audited"})
    assert result.code == COMPLIANT
    assert "advisories: 0 passed, 1 findings" in result.text
    assert "(counted by --gate=hardened only)" in result.text
    assert "check_1[h] (ADV-B): failed" in result.text
    errors = verdict(_tally({"REQ-A": "passed", "ADV-B": "error"}), gate, cat, {"REQ-A": "audited"})
    assert errors.code == COMPLIANT  # an advisory that could not be audited does not count either


def test_the_hardened_gate_counts_advisories_and_requirements():
    cat = _catalogue()
    coverage = {"REQ-A": "audited"}
    assert verdict(_tally({"REQ-A": "passed", "ADV-B": "failed"}), "hardened", cat, coverage).code == NON_COMPLIANT
    assert verdict(_tally({"REQ-A": "passed", "ADV-B": "error"}), "hardened", cat, coverage).code == COULD_NOT_AUDIT
    assert verdict(_tally({"REQ-A": "failed", "ADV-B": "passed"}), "hardened", cat, coverage).code == NON_COMPLIANT
    green = verdict(_tally({"REQ-A": "passed", "ADV-B": "passed"}), "hardened", cat, coverage)
    assert green.code == COMPLIANT
    assert "advisories: 1 passed, 0 findings" in green.text
    assert "counted by --gate=hardened only" not in green.text


def test_the_matrix_lists_advisories_apart_and_counts_only_the_guide(tmp_path):
    cat = _catalogue()
    (tmp_path / "x.py").write_text('import pytest\n@pytest.mark.requirement("REQ-A")\ndef check_a(): pass\n'
                                   '@pytest.mark.requirement("ADV-B")\ndef check_b(): pass\n')
    by_test = {"checks/x.py::check_a[h]": {"outcome": "passed", "requirements": "REQ-A", "host": "h"},
               "checks/x.py::check_b[h]": {"outcome": "failed", "requirements": "ADV-B", "host": "h",
                                           "message": "sshd allows passwords"}}
    rows = matrix.build(cat, by_test, tmp_path)
    kinds = {r["id"]: (r["kind"], r["status"], r["source"]) for r in rows}
    assert kinds == {"REQ-A": ("requirement", "passed", None), "ADV-B": ("advisory", "failed", "baseline: SSH")}
    assert matrix.summary(rows)["total"] == 1
    assert matrix.summary(rows)["failed"] == 0
    assert matrix.attention(rows) == []
    md = matrix.to_markdown(rows)
    every, advisories = md.split("## Advisories beyond the guide")
    assert "ADV-B" not in every
    assert "| ADV-B | blocker | failed | h=failed | baseline: SSH |" in advisories
    assert 'id="advisories"' in matrix.to_html(rows)
    assert "ADV-B" not in matrix.coverage(cat, by_test, tmp_path)
