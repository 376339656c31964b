#!/usr/bin/env bash
# npm run reliability: the reliability suites with their long settings, in the
# ZFS VM against real ZFS (never part of npm test, which runs the same files
# with their fast settings). Prints one summary line per suite at the end.
#   npm run reliability [-- corpus load disconnect crash increments]   (default: all five)
#   MISTIFY_RELIABILITY=long   corpus: all of it + 3000 mutants; load: 200 RPCs; disconnects: 80
#   MISTIFY_CRASH_ROUNDS=20    kill -9 rounds
#   increments: a 1 GiB image published in three versions (MISTIFY_INCREMENT_MIB), in a 14 GiB VM
# Any knob can be overridden from the environment (see test/helpers/reliability.ts
# and the head of each test file).
set -euo pipefail
cd "$(dirname "$0")/.."
export MISTIFY_RELIABILITY=long
export MISTIFY_CRASH_ROUNDS=${MISTIFY_CRASH_ROUNDS:-20}
export MISTIFY_VM_TIMEOUT=${MISTIFY_VM_TIMEOUT:-5400}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
npm run build >/dev/null
start=$(date +%s)
set +e
# Suites to run: arguments (corpus load disconnect crash increments), all five by default.
files=()
for s in "${@:-corpus load disconnect crash increments}"; do
  for n in $s; do
    case $n in
      crash) files+=(dist/test/integration/crash.test.js) ;;
      corpus|load|disconnect) files+=("dist/test/integration/reliability-$n.test.js") ;;
      # Three agents' pools, the service's blobs and the publisher's disk live in the VM's /tmp (RAM).
      increments) files+=(dist/test/integration/publish-increments.test.js); export MISTIFY_VM_MEM=${MISTIFY_VM_MEM:-14336} ;;
      *) echo "unknown suite $n (corpus, load, disconnect, crash, increments)" >&2; exit 2 ;;
    esac
  done
done
# tap's per-file limit (600 s in package.json) is too short for 20 kill -9 rounds.
node scripts/test.mjs --vm -- --timeout=3600 "${files[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo
echo "== reliability figures ($(date -u +%F), $(( $(date +%s) - start )) s with the VM boot) =="
grep -o 'RELIABILITY .*' "$log" || echo "(no summary line: no suite got that far)"
# Each file's wall time as tap reports it.
grep -E '^(not )?ok [0-9]+ - dist/test/integration/.* # time=' "$log" | sed -E 's/^(not ok|ok) [0-9]+ - dist\/test\/integration\/(.*)\.js # time=([0-9.]+)ms.*/\2: \1, \3 ms/' || true
exit "$rc"
