#!/bin/bash
# PID 1 of the test VM (no systemd): bring up just enough (udev, zfs module,
# network, host share), run the one command, hand its exit status to qemu
# through the isa-debug-exit port, and power off. Installed by build.sh.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

# The Debian initramfs has mounted some of these already.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs tmpfs /dev/shm
mount -o remount,rw /
mountpoint -q /run || mount -t tmpfs tmpfs /run
mountpoint -q /tmp || mount -t tmpfs -o size=75% tmpfs /tmp
ln -sf /proc/self/fd /dev/fd 2>/dev/null
hostname zfsvm

out=/dev/ttyS1
stty -F "$out" raw -echo 2>/dev/null

finish() {
  local rc=$1
  sync
  # qemu exits with (rc << 1) | 1; run.sh decodes it.
  printf "\\x$(printf %02x $((rc & 255)))" | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc status=none
  echo o > /proc/sysrq-trigger
  sleep 5
}

cmdline=$(cat /proc/cmdline)
arg() { local a; for a in $cmdline; do case $a in "$1="*) echo "${a#*=}";; esac; done; }

/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
udevadm trigger --action=add >/dev/null 2>&1
udevadm settle --timeout=30 >/dev/null 2>&1
if ! modprobe zfs; then
  echo "vm: modprobe zfs failed" >"$out"; finish 126
fi

ip link set lo up
nic=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
if [ -n "$nic" ]; then
  ip addr add 10.0.2.15/24 dev "$nic"; ip link set "$nic" up; ip route add default via 10.0.2.2
fi

mkdir -p /mnt/host
if [ "$(arg vmshare)" = 1 ]; then
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose host /mnt/host || { echo "vm: 9p mount failed" >"$out"; finish 126; }
fi
cd /mnt/host

# The command comes base64 on the kernel command line, or in the share when too long.
b64=$(arg vmcmd)
if [ -n "$b64" ]; then cmd=$(echo "$b64" | base64 -d); elif [ -f /mnt/host/.vmcmd ]; then cmd=$(cat /mnt/host/.vmcmd); else cmd=true; fi

bash -c "$cmd" </dev/null >"$out" 2>&1
finish $?
