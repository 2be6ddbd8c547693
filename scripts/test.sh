#!/usr/bin/env bash
# The project's tests, the two flavours side by side: the fleet's tests (`-m fleet`: its own
# deployment, its own drift lock) in one pytest, the reference deployment's and the unit tests
# in another, in this terminal; then the fleet run's output, and one exit code (the first
# failure's). Arguments go to both runs (e.g. -k, -x). A run that selects nothing (exit 5, e.g.
# PYNOMALY_FLAVOURS=reference) counts as passed.
set -uo pipefail
cd "$(dirname "$0")/.."
base=$(mktemp -d -t pynomaly-fleet-tests.XXXXXX)
.venv/bin/pytest tests -m fleet --basetemp="$base/tmp" --durations=20 "$@" > "$base/fleet.log" 2>&1 &
fleet=$!
.venv/bin/pytest tests -m "not fleet" --durations=40 "$@"
rest=$?
wait "$fleet"
fleet_code=$?
echo
echo "==================== the fleet flavour's tests (pytest tests -m fleet) ===================="
cat "$base/fleet.log"
rm -rf "$base"
for code in "$rest" "$fleet_code"; do
  if [ "$code" != 0 ] && [ "$code" != 5 ]; then
    echo "tests: failed (reference and unit: exit $rest; fleet: exit $fleet_code)" >&2
    exit "$code"
  fi
done
echo "tests: passed (reference and unit: exit $rest; fleet: exit $fleet_code)"
