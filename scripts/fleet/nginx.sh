#!/usr/bin/env bash
# nginx as a caching proxy in front of image-service replicas, for the fleet tests.
#   nginx.sh install                   apt-get nginx-light when missing (root)
#   nginx.sh up DIR PORT UPSTREAM...   serve 127.0.0.1:PORT, proxying to the upstreams (host:port),
#                                      caching immutable /blobs/ answers under DIR; returns once it answers
#   nginx.sh down DIR                  kill -9 and remove DIR
# One request per URL reaches a replica while others wait on the cache lock (proxy_cache_lock);
# a replica that refuses connections or times out is skipped (proxy_next_upstream).
set -euo pipefail

die() { echo "nginx.sh: $*" >&2; exit 1; }

alive() {
  [ -e "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]
}

install() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx-light)
  # curl: up polls the port with it.
  command -v curl >/dev/null || need+=(curl)
  [ ${#need[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "please install: ${need[*]}"
  echo "nginx.sh: installing ${need[*]}" >&2
  apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
  # Debian's maintainer scripts would start the daemons as services: the tests start their own.
  local added=''
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >&2
  [ -z "$added" ] || rm -f /usr/sbin/policy-rc.d
}

up() {
  local dir=$1 port=$2
  shift 2
  [ $# -ge 1 ] || die "usage: $0 up DIR PORT UPSTREAM..."
  command -v nginx >/dev/null || install
  [ -e "$dir/nginx.conf" ] && die "$dir already holds an nginx (down it first)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/cache" "$dir/tmp" "$dir/logs"
  # Run as root, nginx's workers drop to nobody: they must reach DIR (which may sit in a private
  # temporary directory) and write the cache and temp files.
  local user_line=''
  if [ "$(id -u)" = 0 ]; then
    user_line="user nobody $(id -gn nobody);"
    chown -R nobody "$dir/cache" "$dir/tmp"
    chmod o+x "$dir" "$(dirname "$dir")"
  fi
  local servers='' u
  for u in "$@"; do servers+="    server $u max_fails=0;"$'\n'; done
  cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
$user_line
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log $dir/logs/access.log;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  proxy_cache_path $dir/cache levels=1:2 keys_zone=blobs:10m max_size=10g inactive=7d use_temp_path=off;
  upstream replicas {
$servers    keepalive 8;
  }
  server {
    listen 127.0.0.1:$port;
    client_max_body_size 0;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_next_upstream error timeout;
    proxy_connect_timeout 2s;
    # Content-addressed, immutable: cache them, one fetch per URL however many clients ask at once.
    # In slices: a client waiting on the cache lock gets bytes slice by slice as they arrive,
    # not only once a whole image (gigabytes) is in the cache, which would outlast its idle timeout.
    location /blobs/ {
      slice 8m;
      proxy_pass http://replicas;
      proxy_cache blobs;
      proxy_cache_key \$uri\$slice_range;
      proxy_set_header Range \$slice_range;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 600s;
      proxy_cache_lock_age 600s;
      proxy_cache_valid 200 206 365d;
      # Tests slow the cache fill (NGINX_PROXY_LIMIT_RATE, bytes/s) to kill a replica mid-body.
      proxy_limit_rate ${NGINX_PROXY_LIMIT_RATE:-0};
      add_header X-Cache-Status \$upstream_cache_status always;
    }
    # Everything else (metadata, uploads, mutable downloads) goes through uncached and unbuffered.
    location / {
      proxy_pass http://replicas;
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
EOF
  # A session (and process group) of its own: down kills exactly the master and its workers.
  setsid nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/stdout" 2>&1 </dev/null &
  echo $! >"$dir/master.pid"
  local i
  for i in $(seq 1 100); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
      echo "NGINX_URL=http://127.0.0.1:$port"
      return 0
    fi
    alive "$(cat "$dir/master.pid")" || die "nginx exited: $(tail -5 "$dir/logs/error.log" "$dir/logs/stdout" 2>/dev/null)"
    sleep 0.05
  done
  die "nginx on 127.0.0.1:$port did not answer within 5 s"
}

down() {
  local dir=$1
  [ -d "$dir" ] || return 0
  # The master and its workers share the process group setsid gave the master.
  if [ -f "$dir/master.pid" ]; then
    kill -9 -- "-$(cat "$dir/master.pid")" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

cmd=${1:-}
case "$cmd" in
  install) install ;;
  up) [ $# -ge 4 ] || die "usage: $0 up DIR PORT UPSTREAM..."; shift; up "$@" ;;
  down) [ $# -eq 2 ] || die "usage: $0 down DIR"; down "$2" ;;
  *) die "usage: $0 install | up DIR PORT UPSTREAM... | down DIR" ;;
esac
