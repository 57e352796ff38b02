#!/usr/bin/env bash
# Debian packages the tests and the local cluster need, installed only when missing (root).
#   openssl                 certificates of the local control plane
#   prometheus              the analysis tests scrape real servers with it; its promtool
#                           tests the chart's alert rules (tests/unit/test_alert_rules.py)
#   containerd runc containernetworking-plugins iptables conntrack iproute2
#                           the real node (tier 2)
#   docker.io debootstrap   images built without a registry
# Go (1.21 or newer; it fetches the toolchain the pinned Kubernetes needs) must already be there.
set -euo pipefail

want=(openssl prometheus containerd runc containernetworking-plugins iptables conntrack
      iproute2 docker.io debootstrap ca-certificates)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo ">> installing ${missing[*]}" >&2
  apt-get update -qq
  # policy-rc.d: install the packages, but do not start their services (we start our own).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
command -v go >/dev/null || { echo "Go (>= 1.21) is needed to build Kubernetes from source" >&2; exit 1; }
