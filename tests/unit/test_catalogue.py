"""The requirement catalogue and the checks agree."""

import subprocess
import sys
from pathlib import Path

from audit.catalogue import load_catalogue
from audit.matrix import declared_requirements

ROOT = Path(__file__).resolve().parents[2]


def test_catalogue_loads_with_unique_ids_and_known_sections():
    cat = load_catalogue()
    assert len(cat.requirements) > 100
    assert len(cat.by_id) == len(cat.requirements) + len(cat.advisories)
    guide = (ROOT / cat.guide).read_text()
    assert all(s.title in guide for s in cat.sections.values())


def test_minimum_and_recommended_have_different_severities():
    cat = load_catalogue()
    pairs = [(r.id, r.id.replace("-MIN", "-RECOMMENDED")) for r in cat.requirements if r.id.endswith("-MIN")]
    assert pairs
    for low, high in pairs:
        if high in cat.by_id:
            assert cat[low].severity != cat[high].severity, (low, high)


def test_every_requirement_a_check_names_is_catalogued():
    cat = load_catalogue()
    unknown = {r: checks for r, checks in declared_requirements().items() if r not in cat.by_id}
    assert not unknown


def test_checks_collect_against_the_local_inventory():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--hosts=local", "--collect-only", "-q",
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "prerequisites.py::check_operating_system_is_a_supported_release[web1]" in proc.stdout
