#!/usr/bin/env bash
# Installs the Debian 12 packages the director needs to build, run and test. Idempotent: does
# nothing (and needs no network) when everything is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev nlohmann-json3-dev libc-ares-dev prometheus-cpp-dev libssl-dev catch2
  haproxy dnsmasq-base python3 curl iproute2 procps
  wrk prometheus clang libclang-rt-14-dev
  docker-compose
  podman busybox-static runc uidmap
  chromium  # tests/e2e/test_browser_loading.py: the loading page in a real browser
  systemd   # systemd-analyze: tests/install verifies the units (systemd need not run)
  kubernetes-client  # kubectl: tests/tools drives tools/kube_api_standin.py with it
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# kubernetes-client alone: on images with Google Cloud SDK's own "kubectl" package, that one owns
# /usr/bin/kubectl too and dpkg refuses the file; Debian's kubectl replaces it (--force-overwrite).
others=() kubectl=()
for p in "${missing[@]}"; do
  if [ "$p" = kubernetes-client ]; then kubectl=("$p"); else others+=("$p"); fi
done
if [ ${#others[@]} -gt 0 ]; then
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${others[@]}" >/dev/null
fi
if [ ${#kubectl[@]} -gt 0 ]; then
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-overwrite "${kubectl[@]}" >/dev/null
fi
