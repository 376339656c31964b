#!/usr/bin/env bash
# Boot the ZFS test VM, run one command as root inside it, print its output
# (stdout and stderr merged) and exit with its exit status.
#
#   scripts/vm/run.sh [--share DIR] [--timeout SEC] [--mem MB] [--cpus N]
#                     [--fwd HOSTPORT:GUESTPORT]... [--disk IMG]... [--pidfile F] -- COMMAND...
#
# --share DIR  is mounted read-write at /mnt/host (also the command's cwd).
# --disk IMG   attaches a raw image as the next virtio disk (/dev/vdb, ...); writes are thrown away.
# --fwd        forwards 127.0.0.1:HOSTPORT on the host to GUESTPORT in the VM.
# --pidfile F  writes qemu's pid (for serve.sh/stop.sh).
# The root disk is a throw-away overlay: every boot starts from the pristine image.
# Exit codes: the command's own; 124 when the VM ran past --timeout; 125 when
# the VM died or never reported a status (its console log is printed).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

share="" timeout=600 mem=${MISTIFY_VM_MEM:-4096} cpus=${MISTIFY_VM_CPUS:-2} pidfile="" fwds=() disks=()
while [ $# -gt 0 ]; do
  case $1 in
    --share) share=$(cd "$2" && pwd); shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --fwd) fwds+=("$2"); shift 2 ;;
    --disk) disks+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"); shift 2 ;;
    --pidfile) pidfile=$2; shift 2 ;;
    --) shift; break ;;
    *) vm_die "unknown option $1 (usage: run.sh [--share DIR] [--timeout SEC] [--fwd H:G] -- COMMAND)" ;;
  esac
done
[ $# -gt 0 ] || vm_die "no command given (usage: run.sh [options] -- COMMAND)"
cmd="$*"

img=$(bash "$VM_DIR/build.sh") || vm_die "could not build the VM image"
command -v qemu-system-x86_64 >/dev/null || vm_die "qemu-system-x86_64 missing (build.sh installs it)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zfs-vm.XXXXXX")
qpid=""
cleanup() {
  [ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null || true
  [ -n "$share" ] && rm -f "$share/.vmcmd"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

append="console=ttyS0 root=/dev/vda rw init=/usr/local/sbin/vm-init net.ifnames=0 panic=-1 quiet loglevel=3"
b64=$(printf '%s' "$cmd" | base64 -w0)
[ -n "$share" ] && append="$append vmshare=1"
if [ $(( ${#append} + ${#b64} )) -lt 1900 ]; then
  append="$append vmcmd=$b64"
else
  # The kernel command line holds 2048 bytes; longer commands travel in the share.
  [ -n "$share" ] || vm_die "command too long for the kernel command line; use --share"
  printf '%s' "$cmd" >"$share/.vmcmd"
fi

net="user,id=n0,ipv6=off"
for f in "${fwds[@]+"${fwds[@]}"}"; do net="$net,hostfwd=tcp:127.0.0.1:${f%%:*}-:${f##*:}"; done

args=(
  -machine q35 -accel tcg,thread=multi,tb-size=512 -cpu max -smp "$cpus" -m "$mem"
  -nographic -no-reboot -nodefaults
  -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$append"
  -drive "file=$img/root.img,format=raw,if=virtio,snapshot=on,cache=unsafe"
  -netdev "$net" -device virtio-net-pci,netdev=n0
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
  -serial "file:$tmp/console.log" -serial stdio
)
for d in "${disks[@]+"${disks[@]}"}"; do args+=(-drive "file=$d,format=raw,if=virtio,snapshot=on,cache=unsafe"); done
[ -n "$share" ] && args+=(-fsdev "local,id=fs0,path=$share,security_model=none" -device virtio-9p-pci,fsdev=fs0,mount_tag=host)

# qemu is our direct child (no -daemonize) so a kill really ends it.
qemu-system-x86_64 "${args[@]}" </dev/null 2>"$tmp/qemu.err" &
qpid=$!
[ -n "$pidfile" ] && echo "$qpid" >"$pidfile"
# The watchdog holds no stdio (a reader of our output would wait on it) and
# takes its sleep with it when it is stopped.
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$timeout" & sp=$!
  wait "$sp" && kill -9 "$qpid" 2>/dev/null && touch "$tmp/timedout"
) </dev/null >/dev/null 2>&1 &
watchdog=$!
set +e
{ wait "$qpid"; } 2>/dev/null; qrc=$?
set -e
qpid=""
kill "$watchdog" 2>/dev/null || true
[ -n "$pidfile" ] && rm -f "$pidfile"

if [ -e "$tmp/timedout" ]; then
  echo "zfs-vm: the VM ran past the ${timeout}s timeout and was killed" >&2
  exit 124
fi
# isa-debug-exit: qemu exits with (status << 1) | 1, so an odd code is a real status.
# A qemu that failed to start also exits 1, but says why on its stderr.
if [ $(( qrc & 1 )) -eq 1 ] && ! [ "$qrc" -eq 1 -a -s "$tmp/qemu.err" ]; then
  rc=$(( qrc >> 1 ))
  if [ "$rc" -eq 126 ]; then echo "zfs-vm: the VM came up broken (see above); console:" >&2; tail -n 40 "$tmp/console.log" >&2; fi
  exit "$rc"
fi
echo "zfs-vm: the VM stopped without reporting a status (qemu exit $qrc); last console lines:" >&2
cat "$tmp/qemu.err" >&2 || true
tail -n 40 "$tmp/console.log" >&2 || true
exit 125
