"""Waiver files: active, expired, host-scoped, malformed."""

import datetime as dt

import pytest

from audit.waivers import WaiverError, find_waiver, load_waivers

TODAY = dt.date.today()


def waiver_file(tmp_path, body: str):
    path = tmp_path / "waivers.yml"
    path.write_text(body)
    return path


def test_active_expired_and_scoped(tmp_path):
    future, past = TODAY + dt.timedelta(days=30), TODAY - dt.timedelta(days=1)
    waivers = load_waivers(waiver_file(tmp_path, f"""
waivers:
  - {{requirement: A, justification: "a good enough reason", expires: {future}}}
  - {{requirement: B, justification: "a good enough reason", expires: {past}}}
  - {{requirement: C, hosts: [web1], justification: "only web1 is special", expires: {future}}}
"""))
    assert find_waiver(waivers, ["A"], "any")[0]
    active, expired = find_waiver(waivers, ["B"], "any")
    assert not active
    assert expired[0].requirement == "B"
    assert find_waiver(waivers, ["C"], "web1")[0]
    assert find_waiver(waivers, ["C"], "db1") == ([], [])
    # a check of two requirements is waived only when both are
    assert find_waiver(waivers, ["A", "D"], "x") == ([], [])


def test_renewed_waiver_wins_over_expired_one(tmp_path):
    waivers = load_waivers(waiver_file(tmp_path, f"""
waivers:
  - {{requirement: A, justification: "first time around", expires: {TODAY - dt.timedelta(days=9)}}}
  - {{requirement: A, justification: "renewed with a plan", expires: {TODAY + dt.timedelta(days=9)}}}
"""))
    active, expired = find_waiver(waivers, ["A"], None)
    assert active
    assert not expired


@pytest.mark.parametrize(("body", "message"), [
    ("waivers: [{requirement: A, justification: short, expires: 2030-01-01}]", r"waivers.0.justification"),
    ("waivers: [{requirement: A, justification: long enough text, expires: someday}]", r"waivers.0.expires"),
    ("waivers: [{requirement: A, justification: long enough text}]", r"waivers.0.expires: Field required"),
    ("waivers: [{requirement: A, reason: x, justification: long enough text, expires: 2030-01-01}]",
     r"waivers.0.reason: Extra inputs"),
    ("[1, 2]", r"expected a mapping with a `waivers` list"),
    ("waivers: [{requirement: ZZZ, justification: long enough text, expires: 2030-01-01}]",
     r"waivers.0.requirement: unknown requirement id 'ZZZ'"),
])
def test_malformed_waiver_file_names_the_entry(tmp_path, body, message):
    with pytest.raises(WaiverError, match=message):
        load_waivers(waiver_file(tmp_path, body), known_ids={"A"})
