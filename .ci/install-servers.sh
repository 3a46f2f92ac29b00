#!/usr/bin/env bash
# Installs the throwaway servers the forward tests run (tests/util/servers.rs):
# rsyslog with its OpenSSL TLS driver, nats-server, and openssl for the test
# CA. Idempotent: installs only the packages that are missing, and only as
# root with apt-get; otherwise says what is missing and leaves it to the
# tests, which skip (or, under CI=true, fail) without them.
set -euo pipefail

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

need=()
for pkg in rsyslog rsyslog-openssl nats-server openssl; do
  installed "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-servers: not installing ${need[*]} (needs root and apt-get)" >&2
  exit 0
fi
echo "install-servers: installing ${need[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
