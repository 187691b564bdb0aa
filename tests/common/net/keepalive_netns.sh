#!/bin/sh
# Runs the HTTP client's keepalive test (http_client_test.cpp, tag [.netns]) in a network
# namespace of its own, where iptables may drop loopback packets without touching the machine's.
# Needs root (unshare -n) and iptables: skipped without them (exit 77), failed under CI=true.
# Usage: keepalive_netns.sh <common_tests binary>
PATH="$PATH:/usr/sbin:/sbin"
missing=""
unshare -n true 2>/dev/null || missing="root (unshare -n)"
command -v iptables >/dev/null 2>&1 || missing="${missing:+$missing and }iptables"
if [ -n "$missing" ]; then
  if [ "${CI:-}" = true ]; then
    echo "cannot run: needs $missing (tools/install-deps.sh)" >&2
    exit 1
  fi
  echo "skipped: needs $missing (tools/install-deps.sh)"
  exit 77
fi
exec unshare -n sh -c 'ip link set lo up && DIRECTOR_TEST_NETNS=1 exec "$1" --warn NoTests "[.netns]"' sh "$1"
