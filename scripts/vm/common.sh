# Shared by build.sh and run.sh: where the VM image lives and what it is keyed on.
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=recipe.env
. "$VM_DIR/recipe.env"
VM_CACHE_ROOT=${MISTIFY_VM_CACHE:-/var/cache/mistify-zfs-vm}

vm_die() { echo "zfs-vm: $*" >&2; exit 1; }

# The cache key is the content of the recipe: change any of these files, or the
# host's node (copied into the image), and a new image is built.
vm_key() {
  { cat "$VM_DIR/recipe.env" "$VM_DIR/guest-init.sh" "$VM_DIR/build.sh"; node --version; } | sha256sum | cut -c1-16
}
vm_image_dir() { echo "$VM_CACHE_ROOT/$(vm_key)"; }
