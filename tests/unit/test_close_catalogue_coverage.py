"""The catalogue is closed: every automatable requirement is named by some check (read
statically, also through module-level id tuples: `per_requirement(*IDS)`), and no check names an
id the catalogue lacks."""

import textwrap

from audit.catalogue import load_catalogue
from audit.matrix import declared_requirements


def test_declared_requirements_follow_module_constants(tmp_path):
    (tmp_path / "test_x.py").write_text(textwrap.dedent('''
        import pytest
        from audit.marks import per_requirement
        IDS = ("A-ONE", "A-TWO")
        SETTINGS = {"B-ONE": 1}
        @per_requirement(*IDS)
        def test_a(req_id): pass
        @per_requirement(*SETTINGS)
        def test_b(req_id): pass
        @pytest.mark.requirement("C-ONE")
        def test_c(): pass
        @per_requirement(*unknown_name)
        def test_d(req_id): pass
    '''))
    found = declared_requirements(tmp_path)
    assert found == {"A-ONE": {"test_x::test_a"}, "A-TWO": {"test_x::test_a"},
                     "B-ONE": {"test_x::test_b"}, "C-ONE": {"test_x::test_c"}}


def test_every_automatable_requirement_has_a_check():
    catalogue = load_catalogue()
    declared = declared_requirements()
    uncovered = [r.id for r in catalogue.requirements if r.automatable and r.id not in declared]
    assert uncovered == []
    assert sorted(set(declared) - set(catalogue.by_id)) == []
