#!/usr/bin/env bash
# CI: systemd units, man pages, Debian package, RPM spec, and the daemon
# under a real systemd. Run by tests/systemd.rs (cargo test); runs as root with CI=true on a
# Debian 12 machine and installs what it needs itself. Outside CI it skips
# (it installs packages and boots containers).
#
#   1. tests/systemd/check-units.sh   systemd-analyze security exposure <= 1.0, template in sync
#   2. tests/systemd/check-man.py     man pages vs --help, config keys and defaults; groff/man warnings
#   3. packaging/build-deb.sh + lintian --fail-on error
#   4. tests/systemd/check-rpm.sh     rpmspec -P, rpmbuild -bb, same files as the .deb
#   5. tests/systemd/e2e.sh           install the .deb in a booted Debian container, exercise
#                                     the units for real, dpkg --purge leaves nothing
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CI:-}" != true ]; then
  echo "systemd-and-packaging: skipped: CI is not 'true' (this needs root, installs Debian packages and boots a container)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "systemd-and-packaging: FAIL: must run as root" >&2
  exit 1
fi

T0=$SECONDS
step() { echo; echo "=== systemd-and-packaging: $* ($((SECONDS - T0)) s)"; }

step "tools"
need=()
for tool in systemd-analyze:systemd systemd-nspawn:systemd-container debootstrap:debootstrap \
  lintian:lintian rpmbuild:rpm man:man-db groff:groff-base dpkg-shlibdeps:dpkg-dev strip:binutils \
  python3:python3 nsenter:util-linux; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

step "release binary"
cargo build --release --locked
BIN=target/release/fifo-broker

step "unit files"
bash tests/systemd/check-units.sh

step "man pages"
python3 tests/systemd/check-man.py "$BIN"

step "Debian package"
DEB=$(bash packaging/build-deb.sh --binary "$BIN")
dpkg-deb --info "$DEB" | sed -n 's/^ \(Package\|Version\|Depends\):/  \1:/p'
# lintian refuses nothing as root but says so on stderr; errors fail the build.
lintian --fail-on error --display-level '>=warning' "$DEB" 2>&1 | grep -v 'running with root privileges' || true
lintian --fail-on error "$DEB" >/dev/null 2>&1 || { echo "systemd-and-packaging: FAIL: lintian reports errors" >&2; exit 1; }
echo "lintian: no errors"

step "RPM spec"
bash tests/systemd/check-rpm.sh "$BIN" "$DEB"

step "real systemd (container)"
bash tests/systemd/e2e.sh --deb "$DEB"

step "done"
