#!/usr/bin/env bash
# The test command: installs what is needed (scripts/setup.sh), then lint, type and
# dependency checks, then every test (unit tests beside the code, end-to-end tests in test/e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== lint"
npx biome check .
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
mapfile -t files < <(find src test -name '*.test.ts' | sort)
# One test file at a time: end-to-end tests share the host's network, mounts and cgroups. Every test has
# a deadline, so a hang fails with the test's name: node 20 applies --test-timeout to each test that sets
# no `timeout` of its own and also to each file as a whole, so it is 10 minutes (cli.test.ts, the longest
# file, takes about 5 on a busy 2-core machine); slow tests set a tighter `timeout` themselves.
exec node --import tsx --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec "${files[@]}"

