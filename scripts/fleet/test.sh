#!/usr/bin/env bash
# The fleet tests (test/fleet, after `npm run build`) with Ceph RGW started once for the run,
# not once per file: the files see S3_ENDPOINT etc. in their environment and reuse it. One file
# at a time: the RGW fault test stops radosgw, which other files must not see.
#   bash scripts/fleet/test.sh [tap args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash scripts/fleet/ceph.sh install
bash scripts/fleet/nginx.sh install
state=$(mktemp -d /tmp/fleet-run-XXXXXX)
trap 'bash scripts/fleet/ceph.sh down "$state/ceph"; rm -rf "$state"' EXIT
bash scripts/fleet/ceph.sh up "$state/ceph" >/dev/null
set -a
# shellcheck disable=SC1091
. "$state/ceph/ceph.env"
set +a
node node_modules/tap/dist/esm/run.mjs --jobs=1 "${@:-dist/test/fleet}"
