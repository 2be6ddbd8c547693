"""Running vs on disk (issue 19): what `judge.sides` records per check, and the requirement
matrix's column that carries it per requirement, in both directions."""

from __future__ import annotations

import pytest

from audit import matrix
from audit.catalogue import load_catalogue
from audit.judge import ON_DISK, RUNNING, Judge, Reading, combine_sides
from audit.outcomes import NonCompliant

CATALOGUE = load_catalogue()


def judged(*calls) -> tuple[list[tuple[str, str]], list[str]]:
    """Run `judge.sides` for each readings dict of `calls` in one check: (recorded properties, findings)."""
    recorded, findings = [], []
    judge = Judge("db1", ["PG-WORK-MEM"], lambda _: "16MB", lambda k, v: recorded.append((k, v)))
    for readings in calls:
        try:
            judge.sides(readings, lambda v: v == 16, what="work_mem")
        except NonCompliant as exc:
            findings.append(str(exc))
    return recorded, findings


def both(running, on_disk) -> dict[str, Reading]:
    return {RUNNING: Reading(running, running, "pg_settings"), ON_DISK: Reading(on_disk, on_disk, "postgresql.conf")}


def test_one_call_records_agree_differ_or_one_side():
    assert judged(both(16, 16)) == ([("sides", "agree")], [])
    recorded, findings = judged(both(16, 4))
    assert recorded == [("sides", "differ")]
    assert "the file differs from what runs" in findings[0]
    assert "on disk 4 (postgresql.conf)" in findings[0]
    recorded, findings = judged(both(4, 16))
    assert "changed live and not persisted" in findings[0]
    assert judged({ON_DISK: Reading(16, 16)})[0] == [("sides", "on disk only")]
    assert judged({RUNNING: Reading(16, 16)})[0] == [("sides", "running only")]
    assert judged({"file": Reading("600", "600")})[0] == []  # a file's mode: neither side


def test_several_calls_of_one_check_combine_and_the_last_record_wins():
    recorded, _ = judged(both(16, 16), {ON_DISK: Reading(16, 16)})
    assert dict(recorded)["sides"] == "agree + on disk only"
    recorded, _ = judged(both(16, 16), both(16, 4), {RUNNING: Reading(16, 16)})
    assert dict(recorded)["sides"] == "differ"


def test_combine_sides():
    assert combine_sides([]) == ""
    assert combine_sides(["agree", "agree"]) == "agree"
    assert combine_sides(["on disk only", "agree"]) == "agree + on disk only"
    assert combine_sides(["agree + running only", "differ"]) == "differ"


def entry(req: str, host: str, sides: str | None, outcome: str = "passed") -> dict:
    e = {"outcome": outcome, "requirements": req, "host": host, "category": None}
    return e | ({"sides": sides} if sides else {})


def test_matrix_carries_sides_per_requirement_both_directions():
    by_test = {
        "checks/values.py::check_catalogued_value[PG-WORK-MEM-db1]": entry("PG-WORK-MEM", "db1", "agree"),
        "checks/values.py::check_catalogued_value[PG-WORK-MEM-db2]": entry("PG-WORK-MEM", "db2", "agree"),
        "checks/values.py::check_catalogued_value[PG-SHARED-BUFFERS-db1]":
            entry("PG-SHARED-BUFFERS", "db1", "differ", "failed"),
        "checks/values.py::check_catalogued_value[PG-SHARED-BUFFERS-db2]": entry("PG-SHARED-BUFFERS", "db2", "agree"),
        "checks/values.py::check_catalogued_value[NGINX-USER-web1]": entry("NGINX-USER", "web1", "on disk only"),
        "checks/nginx.py::check_server_tokens[web1]": entry("NGINX-KEEPALIVE-TIMEOUT", "web1", None),
    }
    rows = {r["id"]: r for r in matrix.build(CATALOGUE, by_test)}
    assert rows["PG-WORK-MEM"]["sides"] == "agree"
    assert rows["PG-SHARED-BUFFERS"]["sides"] == "differ"
    assert rows["NGINX-USER"]["sides"] == "on disk only"
    assert rows["NGINX-KEEPALIVE-TIMEOUT"]["sides"] == ""  # no check of it judged two sides
    assert rows["PG-WAL-LEVEL"]["sides"] == ""  # did not run

    md = matrix.to_markdown(list(rows.values()))
    assert "| requirement | severity | status | per host | running vs on disk | checks | note |" in md
    assert "| PG-SHARED-BUFFERS | normal | failed | db1=failed db2=passed | differ |" in md
    assert "| PG-WORK-MEM | normal | passed | db1=passed db2=passed | agree |" in md
    assert "| PG-WAL-LEVEL | critical | not run | - | - |" in md

    page = matrix.to_html(list(rows.values()))
    assert "<th title=" in page
    assert "running vs on disk</th>" in page
    assert '<td class="sides">differ</td>' in page
    assert '<td class="sides">on disk only</td>' in page


@pytest.mark.parametrize(("kinds", "word"), [(["agree", "running only"], "agree + running only"),
                                         (["on disk only", "running only"], "running only + on disk only")])
def test_mixed_kinds_are_listed(kinds, word):
    assert combine_sides(kinds) == word


def test_mappings_agree_on_the_keys_both_sides_read():
    from audit.judge import same

    assert same({"maxretry": "3", "logpath": "/var/log/auth.log"}, {"maxretry": "3", "port": "ssh"})
    assert not same({"maxretry": "10"}, {"maxretry": "3", "port": "ssh"})
    assert not same({"a": 1}, {"b": 1})  # nothing in common: nothing agrees
    assert same([1, 2], [1, 2])
    assert not same([1, 2], [2, 1])
