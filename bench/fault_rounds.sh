#!/usr/bin/env bash
# The engine fault tests N rounds in a row under `stress-ng --cpu 2` (Debian package stress-ng).
#   ROUNDS=10 OUT=/tmp/fault-rounds bench/fault_rounds.sh [pytest node ids...]
# One line per run in $OUT/results.txt: time, round, exit code, seconds, test, the test's own summary line.
# Touch $OUT/STOP to end after the current test. The default tests are the ones issue 14 names.
set -u
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-10}
OUT=${OUT:-/tmp/fault-rounds}
mkdir -p "$OUT"
if [ $# -gt 0 ]; then TESTS=("$@"); else TESTS=(
  "tests/integration/engine_faults/test_outages.py::test_one_ehrbase_down_for_30_s_under_load_loses_nothing"
  "tests/integration/engine_faults/test_outages.py::test_hapi_down_for_30_s_under_load_waits_and_continues"
  "tests/integration/engine_faults/test_poison.py::test_a_worker_killed_three_times_in_the_same_step_dead_letters_the_run_as_crash_loop"
  "tests/integration/engine_faults/test_outages.py::test_hapi_down_past_the_schedule_makes_runs_wait_not_dead_letter"
); fi
stress-ng --cpu 2 --timeout 0 > "$OUT/stress-ng.log" 2>&1 &
STRESS=$!
trap 'kill $STRESS 2>/dev/null' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TESTS[@]}"; do
    [ -f "$OUT/STOP" ] && exit 0
    name=${t##*::}
    log="$OUT/r${r}-${name:0:40}.log"
    start=$(date +%s)
    timeout 900 .venv/bin/pytest -q "$t" -p no:warnings -p no:cacheprovider -s > "$log" 2>&1
    rc=$?
    echo "$(date -u +%H:%M:%S) round $r rc=$rc $(( $(date +%s) - start ))s $name $(grep -E 'largest start lag|observed retry|versions under' "$log" | tail -1)" >> "$OUT/results.txt"
  done
done
