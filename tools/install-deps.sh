#!/usr/bin/env bash
# Installs the Debian 12 packages the director needs to build, run and test, and the npm
# packages of tests/deploy. Idempotent: does nothing (and needs no network) when everything is
# already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev nlohmann-json3-dev libc-ares-dev prometheus-cpp-dev libssl-dev catch2
  haproxy dnsmasq-base python3 curl iproute2 procps
  iptables  # tests/common: the HTTP client's keepalive test drops packets in a network namespace of its own
  wrk prometheus clang libclang-rt-14-dev
  valgrind  # tests/bench: --instructions counts HAProxy's instructions per request (callgrind)
  docker-compose
  podman busybox-static runc uidmap
  chromium  # tests/e2e/test_browser_loading.py: the loading page in a real browser
  systemd   # systemd-analyze: tests/install verifies the units (systemd need not run)
  kubernetes-client  # kubectl: tests/tools drives tools/kube_api_standin.py with it
)
# node and npm: tests/deploy validates the Kubernetes manifests with an npm package. Debian's
# only where no node is installed (an image may bring NodeSource's, which includes npm).
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)

install_debian_packages() {
  [ ${#missing[@]} -eq 0 ] && return 0

  echo "installing: ${missing[*]}" >&2
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
}

# The npm packages of tests/deploy (the Kubernetes schemas it validates deploy/kubernetes
# against), exactly as its package-lock.json pins them, into $node_prefix: outside the clone, so
# that a fresh clone (CI) finds them installed, and not npm's global directory. tests/deploy
# reads them there and refuses an installation whose lock differs from the repository's.
node_prefix=/usr/local/lib/container-director/tests-deploy
install_npm_packages() {
  local lock=tests/deploy/package-lock.json
  if cmp -s "$lock" "$node_prefix/package-lock.json" && [ -d "$node_prefix/node_modules" ]; then
    return 0
  fi
  echo "installing npm packages of tests/deploy into $node_prefix" >&2
  "${sudo[@]}" rm -rf "$node_prefix"
  "${sudo[@]}" mkdir -p "$node_prefix"
  "${sudo[@]}" cp tests/deploy/package.json "$lock" "$node_prefix/"
  "${sudo[@]}" npm ci --prefix "$node_prefix" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
}

install_debian_packages
install_npm_packages
