#!/usr/bin/env bash
# A 3-member etcd cluster on loopback for tests that need a real shared metadata store.
#   etcd.sh install     apt-get install etcd (skipped when present)
#   etcd.sh up DIR      start 3 members (client ports 23790/23792/23794, peers 23791/23793/23795),
#                       state under DIR, wait until healthy; prints ETCD_ENDPOINTS=… and ETCD_DIR=… (also DIR/etcd.env)
#   etcd.sh leader DIR  pid of the current leader
#   etcd.sh revive DIR  restart members that died (kill -9 in a fault test); they rejoin the cluster
#   etcd.sh down DIR    kill -9 every member, remove DIR
# Ports can be moved with ETCD_BASE_PORT (default 23790).
set -euo pipefail

base=${ETCD_BASE_PORT:-23790}
names=(m0 m1 m2)
client_port() { echo $((base + 2 * $1)); }
peer_port() { echo $((base + 2 * $1 + 1)); }
cluster() { local i c=; for i in 0 1 2; do c+="${c:+,}${names[$i]}=http://127.0.0.1:$(peer_port "$i")"; done; echo "$c"; }
# start_member DIR I STATE: one member in the background, its pid in DIR/<name>.pid.
start_member() {
  local dir=$1 i=$2 state=$3 n=${names[$2]}
  # Short heartbeat/election: a killed leader is replaced in about a second.
  setsid etcd --name "$n" --data-dir "$dir/$n" \
    --listen-client-urls "http://127.0.0.1:$(client_port "$i")" --advertise-client-urls "http://127.0.0.1:$(client_port "$i")" \
    --listen-peer-urls "http://127.0.0.1:$(peer_port "$i")" --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
    --initial-cluster "$(cluster)" --initial-cluster-state "$state" --initial-cluster-token mis-test \
    --heartbeat-interval 100 --election-timeout 1000 --log-level error \
    </dev/null >>"$dir/$n.log" 2>&1 &
  echo $! > "$dir/$n.pid"
}
# alive PIDFILE: the process runs (a killed member may linger as a zombie when nobody reaps it).
alive() { local st; st=$(ps -o stat= -p "$(cat "$1")" 2>/dev/null) && [ "${st:0:1}" != Z ]; }
healthy() { ETCDCTL_API=3 etcdctl --endpoints="$1" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; }
endpoints() { local i out=(); for i in 0 1 2; do out+=("127.0.0.1:$(client_port "$i")"); done; (IFS=,; echo "${out[*]}"); }

cmd=${1:-}
case "$cmd" in
  install)
    if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then exit 0; fi
    # PID 1 is not systemd here, but make sure the package's maintainer scripts start nothing.
    created_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 etcd-server etcd-client || { apt-get update -o DPkg::Lock::Timeout=600 && DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 etcd-server etcd-client; }
    [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
    exit 0
    ;;
  up)
    dir=${2:?usage: etcd.sh up DIR}
    command -v etcd >/dev/null || "$0" install
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for i in 0 1 2; do start_member "$dir" "$i" new; done
    eps=$(endpoints)
    for _ in $(seq 1 100); do
      if healthy "$eps"; then
        # ETCD_DIR: fault tests find (and restart) members through this script.
        printf 'ETCD_ENDPOINTS=%s\nETCD_DIR=%s\n' "$eps" "$dir" | tee "$dir/etcd.env"
        exit 0
      fi
      for i in 0 1 2; do alive "$dir/${names[$i]}.pid" || { echo "etcd ${names[$i]} exited:" >&2; tail -5 "$dir/${names[$i]}.log" >&2; "$0" down "$dir"; exit 1; }; done
      sleep 0.1
    done
    echo "etcd cluster in $dir not healthy after 10 s" >&2
    "$0" down "$dir"
    exit 1
    ;;
  leader)
    dir=${2:?usage: etcd.sh leader DIR}
    for i in 0 1 2; do
      ep="127.0.0.1:$(client_port "$i")"
      # Columns of `endpoint status`: endpoint, id, version, db size, is leader, …
      if ETCDCTL_API=3 etcdctl --endpoints="$ep" --dial-timeout=1s --command-timeout=2s endpoint status -w simple 2>/dev/null | awk -F', ' '{print $5}' | grep -qx true; then
        cat "$dir/${names[$i]}.pid"
        exit 0
      fi
    done
    echo "no leader found" >&2
    exit 1
    ;;
  revive)
    dir=${2:?usage: etcd.sh revive DIR}
    dir=$(cd "$dir" && pwd)
    for i in 0 1 2; do
      alive "$dir/${names[$i]}.pid" && continue
      start_member "$dir" "$i" existing
      ep="127.0.0.1:$(client_port "$i")"
      for _ in $(seq 1 100); do healthy "$ep" && break; sleep 0.1; done
      healthy "$ep" || { echo "etcd ${names[$i]} did not rejoin" >&2; exit 1; }
    done
    ;;
  down)
    dir=${2:?usage: etcd.sh down DIR}
    for f in "$dir"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 install | up DIR | leader DIR | down DIR" >&2
    exit 2
    ;;
esac
