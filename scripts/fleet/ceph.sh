#!/usr/bin/env bash
# A throwaway Ceph cluster with an S3 endpoint (RGW) on loopback, for the fleet tests:
# one mon, one memstore OSD, radosgw (beast), all plain background processes (no systemd).
#   ceph.sh install          apt-get the packages when missing (root)
#   ceph.sh up DIR           bootstrap under DIR, write DIR/ceph.env (S3_ENDPOINT, AWS_ACCESS_KEY_ID,
#                            AWS_SECRET_ACCESS_KEY), print it, return once S3 answers
#   ceph.sh down DIR         kill -9 every daemon and remove DIR (a clean teardown, ~0.1 s)
#   ceph.sh stop-rgw DIR     kill radosgw only (fault tests)
#   ceph.sh start-rgw DIR    start it again on the same port, return once S3 answers
# Measured recipe and pitfalls: shared/reference/fleet-engines.md.
set -euo pipefail

die() { echo "ceph.sh: $*" >&2; exit 1; }

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Running and not a zombie (an orphan's reaper may be slow; kill -0 succeeds on zombies).
alive() {
  [ -e "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]
}

install() {
  local need=()
  # curl: up and start-rgw poll the S3 port with it.
  for p in ceph-mon ceph-osd radosgw ceph-common curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "please install: ${need[*]}"
  echo "ceph.sh: installing ${need[*]}" >&2
  apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
  # Debian's maintainer scripts would start the daemons as services: the tests start their own.
  local added=''
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >&2
  [ -z "$added" ] || rm -f /usr/sbin/policy-rc.d
}

# S3 answers anything at all over HTTP (an anonymous GET / gives 200 with an empty bucket list).
wait_s3() {
  local url=$1 pidfile=$2 i
  for i in $(seq 1 300); do
    if curl -s -o /dev/null --max-time 1 "$url/"; then return 0; fi
    alive "$(cat "$pidfile")" || die "radosgw exited; see its log under $(dirname "$pidfile")/log"
    sleep 0.1
  done
  die "S3 at $url did not answer within 30 s"
}

start_rgw() {
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  radosgw -f -c "$dir/ceph.conf" -n client.rgw.gw >"$dir/log/radosgw.out" 2>&1 </dev/null &
  echo $! >"$dir/pids/rgw"
  wait_s3 "http://127.0.0.1:$RGW_PORT" "$dir/pids/rgw"
}

up() {
  local dir=$1
  command -v ceph-mon >/dev/null && command -v radosgw >/dev/null || install
  [ -e "$dir/ceph.conf" ] && die "$dir already holds a cluster (down it first)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/mon" "$dir/osd" "$dir/run" "$dir/log" "$dir/pids" "$dir/rgw"
  local fsid mon_port rgw_port
  fsid=$(uuidgen)
  mon_port=${CEPH_MON_PORT:-$(free_port)}
  rgw_port=${CEPH_RGW_PORT:-$(free_port)}
  printf 'MON_PORT=%s\nRGW_PORT=%s\n' "$mon_port" "$rgw_port" >"$dir/ports.env"
  cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/admin.keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
# One OSD: one copy, few placement groups, no complaints about it.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
# The one setting that matters for start-up time (default 1 s per proposal).
paxos propose interval = 0.1
osd objectstore = memstore
memstore device bytes = 4294967296
[mon]
keyring = $dir/mon/\$cluster-\$id/keyring
[osd]
keyring = $dir/osd/\$cluster-\$id/keyring
[client.rgw.gw]
keyring = $dir/rgw.keyring
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
# Memstore keeps objects in RAM; let RGW drop deleted ones soon, not 2 h later.
rgw gc obj min wait = 30
rgw gc processor period = 30
rgw gc processor max time = 30
EOF
  local conf=$dir/ceph.conf
  ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$dir/admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$dir/mon.keyring" --import-keyring "$dir/admin.keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring" >"$dir/log/mkfs-mon.out" 2>&1 \
    || die "ceph-mon --mkfs failed: $(tail -5 "$dir/log/mkfs-mon.out")"
  ceph-mon -f -c "$conf" -i a >"$dir/log/mon.out" 2>&1 </dev/null &
  echo $! >"$dir/pids/mon"

  local osd_uuid secret id
  osd_uuid=$(uuidgen)
  secret=$(ceph-authtool --gen-print-key)
  id=$(echo "{\"cephx_secret\": \"$secret\"}" | ceph -c "$conf" --connect-timeout 30 osd new "$osd_uuid" -i -) \
    || die "ceph osd new failed (mon log: $dir/log)"
  mkdir -p "$dir/osd/ceph-$id"
  ceph-authtool --create-keyring "$dir/osd/ceph-$id/keyring" --name "osd.$id" --add-key "$secret" >/dev/null
  ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$osd_uuid" >"$dir/log/mkfs-osd.out" 2>&1 \
    || die "ceph-osd --mkfs failed: $(tail -5 "$dir/log/mkfs-osd.out")"
  ceph-osd -f -c "$conf" -i "$id" >"$dir/log/osd.out" 2>&1 </dev/null &
  echo $! >"$dir/pids/osd"

  ceph -c "$conf" auth get-or-create client.rgw.gw mon 'allow rw' osd 'allow rwx' >"$dir/rgw.keyring"
  start_rgw "$dir"

  local ak sk
  ak=$(head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F | head -c 20)
  sk=$(head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 40)
  radosgw-admin -c "$conf" -n client.admin user create --uid=fleet --display-name=fleet \
    --access-key="$ak" --secret-key="$sk" >"$dir/log/user.out" 2>&1 \
    || die "radosgw-admin user create failed: $(tail -5 "$dir/log/user.out")"
  umask 077
  printf 'S3_ENDPOINT=http://127.0.0.1:%s\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nCEPH_DIR=%s\n' \
    "$rgw_port" "$ak" "$sk" "$dir" >"$dir/ceph.env"
  cat "$dir/ceph.env"
}

down() {
  local dir=$1 f
  [ -d "$dir" ] || return 0
  if [ -d "$dir/pids" ]; then
    for f in "$dir"/pids/*; do
      [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    done
  fi
  rm -rf "$dir"
}

stop_rgw() {
  local dir=$1 pid
  pid=$(cat "$dir/pids/rgw")
  kill -9 "$pid" 2>/dev/null || true
  # Gone means gone: the port refuses connections once this returns.
  local i
  for i in $(seq 1 100); do
    alive "$pid" || return 0
    sleep 0.05
  done
  die "radosgw $pid did not exit"
}

cmd=${1:-}
case "$cmd" in
  install) install ;;
  up) [ $# -eq 2 ] || die "usage: $0 up DIR"; up "$2" ;;
  down) [ $# -eq 2 ] || die "usage: $0 down DIR"; down "$2" ;;
  stop-rgw) [ $# -eq 2 ] || die "usage: $0 stop-rgw DIR"; stop_rgw "$2" ;;
  start-rgw) [ $# -eq 2 ] || die "usage: $0 start-rgw DIR"; start_rgw "$(cd "$2" && pwd)" ;;
  *) die "usage: $0 install | up DIR | down DIR | stop-rgw DIR | start-rgw DIR" ;;
esac
