#!/usr/bin/env bash
# The engines the cluster-mode tests run against, once per test run:
#   engines.sh up DIR    3-member etcd and a one-OSD Ceph with RGW, in parallel, state under DIR;
#                        writes DIR/engines.env (ETCD_ENDPOINTS, S3_ENDPOINT, AWS_* keys)
#   engines.sh down DIR  kill -9 everything started under DIR, remove DIR
# nginx is started per test (its upstreams are that test's replicas): scripts/fleet/nginx.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: engines.sh up|down DIR}
dir=${2:?usage: engines.sh up|down DIR}
case "$cmd" in
  up)
    # A fresh machine has none of them: install first, one apt at a time (they share its lock).
    bash "$here/etcd.sh" install >&2
    bash "$here/ceph.sh" install >&2
    mkdir -p "$dir"
    bash "$here/etcd.sh" up "$dir/etcd" >"$dir/etcd.log" 2>&1 & e=$!
    bash "$here/ceph.sh" up "$dir/ceph" >"$dir/ceph.log" 2>&1 & c=$!
    ok=1
    wait $e || { echo "engines: etcd did not come up:" >&2; tail -20 "$dir/etcd.log" >&2; ok=0; }
    wait $c || { echo "engines: ceph did not come up:" >&2; tail -20 "$dir/ceph.log" >&2; ok=0; }
    if [ $ok = 0 ]; then bash "$0" down "$dir"; exit 1; fi
    cat "$dir/etcd/etcd.env" "$dir/ceph/ceph.env" >"$dir/engines.env"
    ;;
  down)
    [ -d "$dir/etcd" ] && bash "$here/etcd.sh" down "$dir/etcd" || true
    [ -d "$dir/ceph" ] && bash "$here/ceph.sh" down "$dir/ceph" || true
    rm -rf "$dir"
    ;;
  *) echo "usage: engines.sh up|down DIR" >&2; exit 2 ;;
esac
