#!/usr/bin/env bash
# Benchmarks against the raw ZFS CLI, in the ZFS VM (never part of npm test).
# Builds, packs the project into a share, runs scripts/bench/run.mjs inside
# the VM, prints its table and detail, and copies the JSON (and, with
# BENCH_PROFILE=1, the agents' CPU profiles) to bench-results/.
# Every BENCH_* variable is passed on (see scripts/bench/run.mjs). Figures
# mean most on an otherwise idle machine: other VMs compete for the same cores.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build >/dev/null
share=$(mktemp -d)
trap 'rm -rf "$share"' EXIT
tar -cf "$share/project.tar" --exclude=node_modules/typescript --exclude=node_modules/@typescript package.json dist node_modules scripts
mkdir -p bench-results
vars=""
for v in $(compgen -e | grep '^BENCH_' || true); do
  [ "$v" = BENCH_PROFILE ] && continue
  vars="$vars $v=$(printf '%q' "${!v}")"
done
[ "${BENCH_PROFILE:-0}" != 0 ] && vars="$vars BENCH_PROFILE=/mnt/host/prof"
# The pool's own disk (/dev/vdb in the VM): sparse, so it costs the host only what is written.
# A file vdev on the VM's 4 GiB root filled it: ZFS got ENOSPC, suspended the pool, and every
# zfs command waited forever (the "stalls" of the startup benchmark).
truncate -s 48G "$share/pool.img"
set +e
bash scripts/vm/run.sh --share "$share" --disk "$share/pool.img" --timeout "${BENCH_VM_TIMEOUT:-4800}" -- \
  "set -e; mkdir -p /tmp/p; tar -C /tmp/p -xf /mnt/host/project.tar; cd /tmp/p; env$vars BENCH_POOL_DEVICE=/dev/vdb node scripts/bench/run.mjs /mnt/host/bench.json"
rc=$?
set -e
[ -f "$share/bench.json" ] && cp "$share/bench.json" bench-results/bench.json && echo "JSON: bench-results/bench.json"
[ -f "$share/bench.svg" ] && cp "$share/bench.svg" bench-results/bench.svg && echo "chart: bench-results/bench.svg"
if [ -d "$share/prof" ]; then rm -rf bench-results/prof; cp -r "$share/prof" bench-results/prof; echo "CPU profiles: bench-results/prof"; fi
exit $rc
