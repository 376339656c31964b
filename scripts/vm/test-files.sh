#!/usr/bin/env bash
# Inside the ZFS VM: run test files one at a time, each with plain node, and
# after each print "# file: FILE exit=N seconds=S", which scripts/test.mjs counts.
#
#   scripts/vm/test-files.sh [NODE-OPTION...] FILE...
#
# Not tap's runner: under TCG it cost about 15 s of emulated CPU per file (its own
# process, then loader hooks and a loader thread in each test process); a tap test
# file run by node prints the same TAP and exits non-zero when a test fails.
# tap's root test takes its timeout from TAP_TIMEOUT (30 s unless set; the runner
# would have passed package.json's 600); `timeout` ends a file that hangs past that.
set -u
opts=() files=()
for a in "$@"; do case $a in -*) opts+=("$a") ;; *) files+=("$a") ;; esac; done
export TAP_TIMEOUT=${TAP_TIMEOUT:-600}
status=0
for f in "${files[@]}"; do
  echo "# Subtest: $f"
  start=$(date +%s)
  timeout -k 30 $((TAP_TIMEOUT + 120)) node --enable-source-maps "${opts[@]}" "$f" 2>&1
  rc=$?
  echo "# file: $f exit=$rc seconds=$(($(date +%s) - start))"
  [ "$rc" -eq 0 ] || status=1
done
exit "$status"
