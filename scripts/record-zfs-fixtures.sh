#!/usr/bin/env bash
# Re-record the zfs output fixtures the unit tests parse (test/fixtures/zfs/<version>/)
# from the real zfs in the VM. Run after `npm run build`; commit the diff.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/vm/run.sh --share . --timeout 600 -- node scripts/record-zfs-fixtures.mjs test/fixtures/zfs
