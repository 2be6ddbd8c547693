"""Probes: per guide area, what the suite reads from a deployment, how it parses it, and the
frozen facts object the checks judge. Each area's probes read through the access layer
(audit/access.py) in as few round trips as they can, and are registered with `audit.facts.probe`
so that every check can ask for them by name as a fixture; their parsers are pure functions,
unit-tested on captured outputs (tests/unit/)."""
