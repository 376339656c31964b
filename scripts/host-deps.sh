#!/usr/bin/env bash
# Debian packages the test suite needs on the host, installed when missing
# (root only). The VM's own packages are installed by scripts/vm/build.sh.
#   glance (python3-glanceclient): the real OpenStack client the image service is tested with
#   curl: the download route is exercised the way operators use it
set -euo pipefail
need=()
command -v glance >/dev/null || need+=(python3-glanceclient)
command -v curl >/dev/null || need+=(curl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then echo "host-deps: please install: ${need[*]}" >&2; exit 1; fi
echo "host-deps: installing ${need[*]}" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
