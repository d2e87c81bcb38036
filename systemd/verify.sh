#!/usr/bin/env bash
# Checks what an operator installs from systemd/: the unit passes
# systemd-analyze verify, its sandbox stays hardened (exposure at most 2.5 of
# 10), and the example config passes check-config. Installs Debian's systemd
# package for systemd-analyze when it is missing (root only).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "systemd/verify.sh: systemd-analyze not found (apt-get install systemd)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/plivo-dlr" .
# verify insists that ExecStart's binary exists: point it at this build.
sed "s|/usr/local/bin/plivo-dlr|$tmp/plivo-dlr|g" systemd/plivo-dlr.service >"$tmp/plivo-dlr.service"

echo "systemd-analyze verify plivo-dlr.service"
# verify exits 0 on lines it ignores (a misspelt value): any output fails.
out=$(systemd-analyze verify --man=no "$tmp/plivo-dlr.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  exit 1
fi

echo "systemd-analyze security plivo-dlr.service"
# The threshold is on a 0-100 scale: 25 is an exposure of 2.5.
systemd-analyze security --offline=yes --no-pager --threshold=25 "$tmp/plivo-dlr.service" | tail -n 1

echo "check-config systemd/config.toml"
PLIVO_DLR_PLIVO_AUTH_TOKEN=example "$tmp/plivo-dlr" check-config -config systemd/config.toml >/dev/null
echo "systemd/ OK"
