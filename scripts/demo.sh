#!/usr/bin/env bash
# `npm run demo`: the agent and the image service end to end on real OpenZFS,
# inside the test VM (scripts/vm), printing every step's exact command and a
# short result:
#   make a sample image (zvol, snapshot, zfs send | gzip) → upload it to the
#   image service → RequestImage → ListImages → CloneImage → CreateSnapshot →
#   download the snapshot and `zfs receive` it → compare checksums of the
#   zvols → /healthz and /metrics → stop everything, destroy the pool.
# Exits non-zero, naming the step, if anything fails.
#
#   scripts/demo.sh              on the host (after `npm run build`): ships the
#                                project into the VM as scripts/test.mjs does
#   scripts/demo.sh --in-vm      the demo itself (root, ZFS); run by the above
# Environment: MISTIFY_DEMO_TIMEOUT (seconds for the VM, default 600).
set -euo pipefail

if [ "${1:-}" != "--in-vm" ]; then
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$root"
  [ -f dist/src/agent/main.js ] || { echo "demo: dist/ is missing; run npm run build first" >&2; exit 1; }
  start=$(date +%s)
  share=$(mktemp -d "${TMPDIR:-/tmp}/mistify-demo-share-XXXXXX")
  trap 'rm -rf "$share"' EXIT
  # One tar, as scripts/test.mjs ships it: 9p reads file by file are slow under TCG.
  tar -cf "$share/project.tar" --exclude=node_modules/typescript --exclude=node_modules/@typescript \
    package.json dist node_modules scripts
  echo "demo: booting the ZFS VM (the first run builds it, about 7 minutes; later boots take about 20 s)"
  set +e
  bash scripts/vm/run.sh --share "$share" --timeout "${MISTIFY_DEMO_TIMEOUT:-600}" -- \
    'set -e; mkdir -p /tmp/p; tar -C /tmp/p -xf /mnt/host/project.tar; cd /tmp/p; bash scripts/demo.sh --in-vm'
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  case $rc in
    0) echo "demo: OK (${secs}s)" ;;
    124) echo "demo: FAILED: the VM ran past ${MISTIFY_DEMO_TIMEOUT:-600}s (${secs}s)" >&2 ;;
    *) echo "demo: FAILED (exit $rc, ${secs}s); the step that failed is named above" >&2 ;;
  esac
  exit "$rc"
fi

# ---------------------------------------------------------------- in the VM --
cd "$(dirname "${BASH_SOURCE[0]}")/.."
POOL=demo
AGENT=http://127.0.0.1:19999
IMAGES=http://127.0.0.1:20000
work=/tmp/mistify-demo
CLI="node dist/src/cli/main.js"
agent_pid="" images_pid="" step_no=0 step_name="setup"

step() { step_no=$((step_no + 1)); step_name=$1; printf '\n== %d. %s\n' "$step_no" "$1"; }
# Print a command as typed, run it, show its output (at most $2 lines, default 12).
run() {
  printf '$ %s\n' "$1"
  local out rc=0
  out=$(eval "$1" 2>&1) || rc=$?
  if [ -n "$out" ]; then
    printf '%s\n' "$out" | head -n "${2:-12}" | sed 's/^/  /'
    [ "$(printf '%s\n' "$out" | wc -l)" -le "${2:-12}" ] || echo "  …"
  fi
  [ "$rc" -eq 0 ] || fail "exit $rc from: $1"
  LAST=$out
}
# One field of the JSON in $LAST (a JS expression on `j`).
field() { node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8")); const v=('"$1"'); if (v===undefined) process.exit(1); console.log(v)' <<<"$LAST"; }
fail() {
  trap - ERR
  echo
  echo "DEMO FAILED at step $step_no ($step_name): $*" >&2
  for f in agent image-service; do
    [ -s "$work/$f.log" ] && { echo "--- last lines of $work/$f.log:" >&2; tail -n 8 "$work/$f.log" >&2; }
  done
  cleanup
  exit 1
}
cleanup() {
  local p
  for p in $agent_pid $images_pid; do kill "$p" 2>/dev/null || true; done
  for p in $agent_pid $images_pid; do wait "$p" 2>/dev/null || true; done
  agent_pid="" images_pid=""
  if zpool list -H "$POOL" >/dev/null 2>&1; then zpool destroy -f "$POOL" || true; fi
}
trap 'fail "unexpected error (line $LINENO)"' ERR

wait_for() { # URL what
  local i
  for i in $(seq 1 120); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.5
  done
  fail "$2 did not answer $1 within 60 s"
}

rm -rf "$work"; mkdir -p "$work"

step "a throw-away pool (a sparse file)"
run "truncate -s 1G $work/pool.img && zpool create -f -O mountpoint=none $POOL $work/pool.img && zpool list -H -o name,size,health $POOL"

step "start the image service and the agent (background, loopback)"
echo "\$ node dist/src/image-service/main.js --data-dir $work/images --listen 127.0.0.1 --port 20000 --glance-port 0 &"
node dist/src/image-service/main.js --data-dir "$work/images" --listen 127.0.0.1 --port 20000 --glance-port 0 >"$work/image-service.log" 2>&1 &
images_pid=$!
echo "\$ node dist/src/agent/main.js --zpool $POOL --image-service $IMAGES --metadata-dir $work/agent-db &"
node dist/src/agent/main.js --zpool "$POOL" --image-service "$IMAGES" --metadata-dir "$work/agent-db" >"$work/agent.log" 2>&1 &
agent_pid=$!
t0=$(date +%s%N)
wait_for "$IMAGES/images" "the image service"
wait_for "$AGENT/healthz" "the agent"
echo "  both answer (after $(( ($(date +%s%N) - t0) / 1000000 )) ms)"

step "make a sample image: a zvol with data, a snapshot, zfs send | gzip"
run "zfs create -V 32M $POOL/sample && udevadm settle"
run "dd if=/dev/urandom of=/dev/zvol/$POOL/sample bs=1M count=8 conv=fsync status=none && echo 'mistify demo' | dd of=/dev/zvol/$POOL/sample bs=512 seek=20000 conv=fsync status=none"
run "zfs snapshot $POOL/sample@base && sha256sum /dev/zvol/$POOL/sample"
sample_sum=${LAST%% *}
run "zfs send $POOL/sample@base | gzip > $work/sample.zfs.gz && zfs destroy -r $POOL/sample && ls -l $work/sample.zfs.gz"

step "upload it to the image service (PUT /images)"
run "curl -sfS -X PUT -H 'X-Image-Type: kvm' -H 'X-Image-Comment: demo sample' --data-binary @$work/sample.zfs.gz $IMAGES/images"
ID=$(field j.id) || fail "no id in the upload's answer"
echo "  image id: $ID"

step "RequestImage: the agent fetches and imports it (CLI)"
run "$CLI images fetch $ID"
step "RequestImage again, as mistify-agent sends it (gorilla JSON-RPC 1.0; already here, answers at once)"
run "curl -sfS -H 'Content-Type: application/json' $AGENT/_mistify_RPC_ -d '{\"method\":\"ImageStore.RequestImage\",\"params\":[{\"id\":\"$ID\"}],\"id\":1}'"
[ "$(field j.result.images[0].status)" = complete ] || fail "the image is not complete"

step "ListImages"
run "$CLI images list"

step "CloneImage into guests/demo/disk-0"
run "$CLI clone $ID guests/demo/disk-0"

step "CreateSnapshot guests/demo@demo-1, recursive (JSON-RPC 2.0)"
run "curl -sfS -H 'Content-Type: application/json' $AGENT/_mistify_RPC_ -d '{\"jsonrpc\":\"2.0\",\"method\":\"CreateSnapshot\",\"params\":{\"id\":\"guests/demo\",\"dest\":\"demo-1\",\"recursive\":true},\"id\":2}'"
field 'j.result.snapshots.map(s => s.id).join(" ")' >/dev/null || fail "no snapshots in the answer"
echo "  created: $(field 'j.result.snapshots.map(s => s.id).join(" ")')"

step "download the disk's snapshot and zfs receive it"
run "curl -sfS '$AGENT/snapshots/download?id=guests/demo/disk-0@demo-1' | zfs receive $POOL/restored && udevadm settle"
run "zfs list -H -t all -o name,used,refer -r $POOL/restored $POOL/guests" 20

step "compare the zvols' contents (sha256)"
run "sha256sum /dev/zvol/$POOL/guests/demo/disk-0 /dev/zvol/$POOL/restored"
clone_sum=$(sed -n 1p <<<"$LAST" | cut -d' ' -f1)
restored_sum=$(sed -n 2p <<<"$LAST" | cut -d' ' -f1)
echo "  sample before upload: $sample_sum"
[ "$clone_sum" = "$sample_sum" ] || fail "the guest disk differs from the sample image"
[ "$restored_sum" = "$sample_sum" ] || fail "the restored copy differs from the guest disk"
echo "  all three identical"

step "health and metrics"
run "curl -sfS $AGENT/healthz"
run "curl -sfS $AGENT/metrics | grep -E '^mistify_(rpc_requests_total|import_bytes_total|download_bytes_total)'" 10

step "stop the services, destroy the pool"
echo "\$ kill -TERM $agent_pid $images_pid   # agent, image service"
kill -TERM "$agent_pid" "$images_pid"
arc=0 irc=0
wait "$agent_pid" || arc=$?
wait "$images_pid" || irc=$?
agent_pid="" images_pid=""
echo "  agent exited $arc, image service exited $irc"
[ "$arc" -eq 0 ] && [ "$irc" -eq 0 ] || fail "a service did not shut down cleanly"
run "zpool destroy $POOL && ! zpool list $POOL 2>/dev/null"
trap - ERR
echo
echo "demo: every step passed"
