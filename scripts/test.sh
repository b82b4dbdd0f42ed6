#!/usr/bin/env bash
# The test command: installs what is needed (scripts/setup.sh), then lint, type and
# dependency checks, then every test (unit tests beside the code, end-to-end tests in test/e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== lint"
npx biome check .
# The build compiles src/ only (tests and the bench run through tsx); this checks the types of all of it.
echo "== types"
npx tsc -p tsconfig.json --noEmit
echo "== import cycles"
npx madge --circular --extensions ts --ts-config tsconfig.json src
echo "== layer rules (.dependency-cruiser.cjs)"
npm run --silent deps:rules

# The benchmark must keep running (issue #8); its numbers are reported, never asserted.
echo "== benchmark smoke run (npm run bench -- --quick)"
results=$(mktemp -d)
BERTH_BENCH_RESULTS="$results" bash scripts/bench.sh --quick
rm -rf "$results"

echo "== tests"
# Two passes. Every test has a deadline, so a hang fails with the test's name: node 20 applies --test-timeout
# to each test that sets no `timeout` of its own and also to each file as a whole, so it is 10 minutes
# (cli.test.ts, the longest file, takes about 5 on a busy 2-core machine); slow tests set a tighter one.
# 1. Unit tests, two files at a time: those beside the code under src/ that need no root. They start no berthd
#    and touch no mounts, netns, cgroups or iptables (a test that does checks for root, STYLE.md 12, and so
#    goes to pass 2 by itself).
# 2. One file at a time, the tests that share the host's network, mounts and cgroups: the end-to-end tests and
#    fixture checks under test/, and the unit tests that need root.
mapfile -t all < <(find src test -name '*.test.ts' | sort)
mapfile -t needs_root < <(grep -lE 'getuid|rootSkipReason|isRoot' "${all[@]}")
# Unit tests that time the process itself (event-loop stalls of 100 ms) run alone too: a second test
# process on 2 cores makes such stalls.
timed=(src/daemon/loop-monitor.test.ts)
mapfile -t unit < <(printf '%s\n' "${all[@]}" | grep '^src/' | grep -vxF -f <(printf '%s\n' "${needs_root[@]}" "${timed[@]}"))
mapfile -t host < <(printf '%s\n' "${all[@]}" | grep -vxF -f <(printf '%s\n' "${unit[@]}"))
status=0
echo "== unit tests (${#unit[@]} files, two at a time)"
node --import tsx --test --test-concurrency=2 --test-timeout=600000 --test-reporter=spec "${unit[@]}" || status=1
echo "== host and end-to-end tests (${#host[@]} files, one at a time)"
node --import tsx --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec "${host[@]}" || status=1
exit "$status"
