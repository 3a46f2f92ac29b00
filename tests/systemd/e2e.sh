#!/usr/bin/env bash
# e2e.sh - fifo-broker under a REAL systemd: boots a throwaway Debian
# container (systemd-nspawn --boot --volatile=overlay on a cached debootstrap
# rootfs), installs the Debian package into it and runs
# tests/systemd/in-container.sh there: start/READY, data, reload, broken
# reload, logrotate, stop, bad config (78, no restart), watchdog, template
# instance, group + SupplementaryGroups=, dpkg -r/--purge.
#
#   tests/systemd/e2e.sh [--deb PATH]     (root; default: build it with packaging/build-deb.sh)
#
# The first run installs systemd-container + debootstrap and builds the rootfs
# under /var/cache/fifo-broker-e2e (about 75 s); later runs boot in under 1 s.
# Ends with `systemd e2e: N passed, M failed`; exit 0 only if all passed
# (125: the container could not be set up).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
DEB=""
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) DEB=$(realpath "$2"); shift ;;
    *) echo "usage: $0 [--deb PATH]" >&2; exit 64 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "e2e: must run as root" >&2; exit 125; }
T0=$SECONDS

# shellcheck source=tests/systemd/container.sh
source tests/systemd/container.sh
[ -n "$DEB" ] || DEB=$(bash packaging/build-deb.sh)
ct_tools
ct_rootfs

# Everything the container needs, bound read-only under /srv (never onto its
# /, /tmp, /run or /var).
STAGE=$(mktemp -d -p /var/tmp --suffix=.fifo-broker-e2e)
cleanup() { local rc=$?; ct_halt; rm -rf "$STAGE"; exit $rc; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$STAGE/systemd"
cp "$DEB" "$STAGE/fifo-broker.deb"
cp "$REPO/tests/systemd/in-container.sh" "$STAGE/"
cp "$REPO"/systemd/*.service "$STAGE/systemd/"
chmod -R a+rX "$STAGE"

ct_boot --bind-ro="$STAGE:/srv/e2e"
set +e
ct_exec /bin/bash /srv/e2e/in-container.sh
rc=$?
set -e
echo "e2e: took $((SECONDS - T0)) s" >&2
exit $rc
