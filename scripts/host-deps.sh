#!/usr/bin/env bash
# Debian packages the test suite needs on the host, installed when missing
# (root only). The VM's own packages are installed by scripts/vm/build.sh.
#   glance (python3-glanceclient): the real OpenStack client the image service is tested with
#   curl: the download route is exercised the way operators use it
#   etcd, Ceph (mon, osd, radosgw) and nginx: the image service's cluster mode is
#   tested against the real engines (scripts/fleet), as plain processes on loopback
set -euo pipefail
need=()
command -v glance >/dev/null || need+=(python3-glanceclient)
command -v curl >/dev/null || need+=(curl)
command -v etcd >/dev/null && command -v etcdctl >/dev/null || need+=(etcd-server etcd-client)
command -v radosgw >/dev/null && command -v ceph-osd >/dev/null && command -v ceph-mon >/dev/null || need+=(ceph-mon ceph-osd radosgw ceph-common)
command -v nginx >/dev/null || need+=(nginx-light)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then echo "host-deps: please install: ${need[*]}" >&2; exit 1; fi
echo "host-deps: installing ${need[*]}" >&2
apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
# Debian's maintainer scripts would start the daemons as services: the tests start their own.
[ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added_policy=1; }
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >&2
[ -z "${added_policy:-}" ] || rm -f /usr/sbin/policy-rc.d
