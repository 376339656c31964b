#!/usr/bin/env bash
# Benchmarks against the raw ZFS CLI, in the ZFS VM (never part of npm test).
# Prints the table; the JSON lands in bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build >/dev/null
share=$(mktemp -d)
trap 'rm -rf "$share"' EXIT
tar -cf "$share/project.tar" --exclude=node_modules/typescript --exclude=node_modules/@typescript package.json dist node_modules scripts
mkdir -p bench-results
bash scripts/vm/run.sh --share "$share" --timeout 1800 -- \
  "set -e; mkdir -p /tmp/p; tar -C /tmp/p -xf /mnt/host/project.tar; cd /tmp/p; BENCH_SIZE_MIB=${BENCH_SIZE_MIB:-256} BENCH_ROUNDS=${BENCH_ROUNDS:-3} node scripts/bench-import.mjs /mnt/host/bench-import.json"
cp "$share/bench-import.json" bench-results/
