#!/usr/bin/env bash
# Build (once) the Debian bookworm VM with OpenZFS that the integration tests,
# benchmarks and demo run in. Needs root and Debian's apt; reaches only Debian's
# mirror. The result (vmlinuz, initrd.img, root.img) is cached outside the repo
# under $MISTIFY_VM_CACHE (default /var/cache/mistify-zfs-vm)/<recipe hash>, so
# a second run returns at once. Prints the image directory on stdout.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ "$(id -u)" = 0 ] || vm_die "build needs root (debootstrap, chroot)"
out=$(vm_image_dir)
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi

mkdir -p "$VM_CACHE_ROOT"
exec 9>"$VM_CACHE_ROOT/.build.lock"
flock 9   # one build at a time; a second caller waits, then finds the result
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi

log() { echo "zfs-vm build: $*" >&2; }
start=$(date +%s)

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  log "installing host packages: ${need[*]}"
  apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >&2
fi

work=$(mktemp -d "$VM_CACHE_ROOT/build.XXXXXX")
root="$work/rootfs"
cleanup() {
  for m in dev/pts dev proc sys; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

log "debootstrap $VM_SUITE (main, contrib) into $root"
debootstrap --variant=minbase --components=main,contrib --include="$VM_BASE_PKGS" \
  "$VM_SUITE" "$root" "$VM_MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; vm_die "debootstrap failed"; }

# contrib carries zfs-dkms; debootstrap only writes main.
cat >"$root/etc/apt/sources.list" <<SRC
deb $VM_MIRROR $VM_SUITE main contrib
deb $VM_MIRROR $VM_SUITE-updates main contrib
deb http://deb.debian.org/debian-security $VM_SUITE-security main contrib
SRC

mount -t proc proc "$root/proc"; mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"; mount --bind /dev/pts "$root/dev/pts"
inchroot() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

log "installing kernel"
inchroot apt-get update -qq >&2
# shellcheck disable=SC2086
inchroot apt-get install -y -qq --no-install-recommends $VM_KERNEL_PKGS >"$work/kernel.log" 2>&1 \
  || { tail -n 30 "$work/kernel.log" >&2; vm_die "kernel install failed"; }
kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)
[ -n "$kver" ] || vm_die "no kernel in the image"
log "kernel $kver; installing ZFS (DKMS compile, several minutes)"
# shellcheck disable=SC2086
inchroot apt-get install -y -qq --no-install-recommends $VM_ZFS_PKGS $VM_EXTRA_PKGS >"$work/zfs.log" 2>&1 \
  || { tail -n 40 "$work/zfs.log" >&2; vm_die "zfs install failed"; }
# DKMS in a chroot builds for the installed headers, not the host kernel; make sure.
if ! ls "$root/lib/modules/$kver/updates/dkms/"zfs.ko* >/dev/null 2>&1; then
  zver=$(ls "$root/usr/src" | sed -n 's/^zfs-//p' | head -n 1)
  inchroot dkms install "zfs/$zver" -k "$kver" >&2 || vm_die "dkms build for $kver failed"
fi
ls "$root/lib/modules/$kver/updates/dkms/"zfs.ko* >/dev/null 2>&1 || vm_die "zfs.ko missing for $kver"

printf '%s\n' virtio_pci virtio_blk virtio_net ext4 9p 9pnet_virtio >>"$root/etc/initramfs-tools/modules"
inchroot update-initramfs -u -k "$kver" >/dev/null 2>&1 || vm_die "update-initramfs failed"

# Trim what the running VM never needs (compiler, headers, docs, apt lists).
inchroot apt-get clean
rm -rf "$root/var/lib/apt/lists/"* "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale"

install -m 0755 "$VM_DIR/guest-init.sh" "$root/usr/local/sbin/vm-init"
install -m 0755 "$(command -v node)" "$root/usr/local/bin/node"
echo "zfsvm" >"$root/etc/hostname"
printf '127.0.0.1 localhost zfsvm\n::1 localhost\n' >"$root/etc/hosts"
inchroot sh -c 'node --version && zfs version 2>/dev/null | head -n 2; true' >"$work/versions.txt" 2>&1 || true

for m in dev/pts dev proc sys; do umount -l "$root/$m"; done

stage="$work/image"
mkdir -p "$stage"
cp "$root/boot/vmlinuz-$kver" "$stage/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$stage/initrd.img"
zver=$(sed -n 's/^Version: //p' <(inchroot dpkg -s zfsutils-linux 2>/dev/null) || true)
echo "kernel=$kver zfs=${zver:-?} node=$(node --version)" >"$stage/versions"
log "making root.img ($VM_DISK_SIZE, sparse)"
mkfs.ext4 -q -F -L vmroot -d "$root" "$stage/root.img" "$VM_DISK_SIZE" >&2

rm -rf "$out"; mv "$stage" "$out"; touch "$out/.complete"
# Older recipes' images are dead weight.
for d in "$VM_CACHE_ROOT"/*/; do [ "${d%/}" = "$out" ] || rm -rf "$d"; done
log "done in $(( $(date +%s) - start )) s: $(cat "$out/versions")"
echo "$out"
