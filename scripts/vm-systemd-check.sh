#!/usr/bin/env bash
# Run test/integration/systemd-units.test.ts in the ZFS VM, with systemd/
# shipped along with the project (after `npm run build`). The same test runs in
# `npm test` once scripts/test.mjs packs systemd/ too.
#
#   scripts/vm-systemd-check.sh            exit status: the test's
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[ -f dist/test/integration/systemd-units.test.js ] || { echo "vm-systemd-check: build first (npm run build)" >&2; exit 1; }
share=$(mktemp -d "${TMPDIR:-/tmp}/mistify-systemd-share-XXXXXX")
trap 'rm -rf "$share"' EXIT
tar -cf "$share/project.tar" --exclude=node_modules/typescript --exclude=node_modules/@typescript \
  package.json dist node_modules scripts systemd test/fixtures
bash scripts/vm/run.sh --share "$share" --timeout "${MISTIFY_VM_TIMEOUT:-600}" -- \
  'set -e; mkdir -p /tmp/p; tar -C /tmp/p -xf /mnt/host/project.tar; cd /tmp/p
MISTIFY_TEST_ZPOOL=1 node node_modules/tap/dist/esm/run.mjs --jobs=1 --reporter=tap dist/test/integration/systemd-units.test.js'
