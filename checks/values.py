"""The requirements that are one value to compare: the catalogue rows with a `fact` (which probe
reads the value, under which key, how it compares), judged on the hosts of their `roles` by one
generic check, running and on disk wherever the probe can read both.
"""

from __future__ import annotations

COMPARE = {
    "equal": lambda found, want: found == want,
    "at_least": lambda found, want: found >= want,
    "at_most": lambda found, want: found <= want,
    "set": lambda found, want: set(found) == set(want),
}


def check_catalogued_value(judge, row, audit_session, server):
    """The catalogue's value rows (parametrized by the plugin over each row and the hosts of its
    roles): the guide's literal value for one setting, as the service runs it and as its file
    sets it."""
    facts = audit_session.facts.get(row.fact.probe, server.name)
    want = facts.norm(row.fact.key, judge.expected)
    judge.sides(facts.sides(row.fact.key), lambda found: COMPARE[row.fact.compare](found, want),
                what=f"{row.fact.key} ({row.statement})")
