#!/usr/bin/env bash
# build-deb.sh - build the Debian package of fifo-broker with dpkg-deb.
#
#   packaging/build-deb.sh [--binary PATH] [--out DIR]
#
# Uses the release binary (target/release/fifo-broker, built with
# `cargo build --release --locked` if missing), stages the files the package
# installs, writes DEBIAN/ (control with shlib dependencies from
# dpkg-shlibdeps, conffiles, md5sums, the maintainer scripts in
# packaging/debian/) and builds OUT/fifo-broker_VERSION_ARCH.deb (default
# OUT: target/debian). Prints the path of the .deb on stdout.
# Needs dpkg-dev (dpkg-shlibdeps, dpkg-parsechangelog), binutils (strip).
#
# No debhelper and no cargo-deb: nothing to compile or install but dpkg-dev,
# so CI stays fast; the maintainer scripts are what dh_installsystemd and
# dh_installsysusers would generate.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/fifo-broker
OUT=target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR]" >&2; exit 64 ;;
  esac
  shift
done
D=packaging/debian

if [ ! -x "$BIN" ]; then
  echo "build-deb: building $BIN" >&2
  cargo build --release --locked >&2
fi

VERSION=$(dpkg-parsechangelog -l "$D/changelog" -S Version)
UPSTREAM=${VERSION%-*}
CARGO_VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
BIN_VERSION=$("$BIN" --version | awk '{print $2}')
if [ "$UPSTREAM" != "$CARGO_VERSION" ] || [ "$BIN_VERSION" != "$CARGO_VERSION" ]; then
  echo "build-deb: version mismatch: debian/changelog $UPSTREAM, Cargo.toml $CARGO_VERSION, binary $BIN_VERSION" >&2
  exit 1
fi
ARCH=$(dpkg --print-architecture)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
S=$WORK/root
DOC=$S/usr/share/doc/fifo-broker

install -D -m 0755 "$BIN" "$S/usr/bin/fifo-broker"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$S/usr/bin/fifo-broker"
install -D -m 0644 config/fifo-broker.toml "$S/etc/fifo-broker/fifo-broker.toml"
install -D -m 0644 "$D/fifo-broker.logrotate" "$S/etc/logrotate.d/fifo-broker"
install -D -m 0644 systemd/fifo-broker.service "$S/lib/systemd/system/fifo-broker.service"
install -D -m 0644 systemd/fifo-broker@.service "$S/lib/systemd/system/fifo-broker@.service"
install -D -m 0644 systemd/fifo-broker.sysusers "$S/usr/lib/sysusers.d/fifo-broker.conf"
install -d -m 0755 "$S/usr/share/man/man8" "$S/usr/share/man/man5" "$DOC"
gzip -9n <man/fifo-broker.8 >"$S/usr/share/man/man8/fifo-broker.8.gz"
gzip -9n <man/fifo-broker.toml.5 >"$S/usr/share/man/man5/fifo-broker.toml.5.gz"
install -m 0644 "$D/copyright" "$DOC/copyright"
gzip -9n <"$D/changelog" >"$DOC/changelog.Debian.gz"
gzip -9n <README.md >"$DOC/README.md.gz"
gzip -9n <docs/operations.md >"$DOC/operations.md.gz"
gzip -9n <docs/semantics.md >"$DOC/semantics.md.gz"
install -D -m 0644 "$D/lintian-overrides" "$S/usr/share/lintian/overrides/fifo-broker"
find "$S" -type d -exec chmod 0755 {} +
find "$S" -type f -name '*.gz' -exec chmod 0644 {} +

# Shared-library dependencies, as dh_shlibdeps would compute them.
mkdir -p "$WORK/src/debian"
printf 'Source: fifo-broker\n\nPackage: fifo-broker\nArchitecture: any\n' >"$WORK/src/debian/control"
SHLIBS=$(cd "$WORK/src" && dpkg-shlibdeps -O "$S/usr/bin/fifo-broker" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -d -m 0755 "$S/DEBIAN"
(cd "$S" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$S/DEBIAN/md5sums"
(cd "$S" && find etc -type f -printf '/%p\n' | LC_ALL=C sort) >"$S/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$S" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" -e "s/@SHLIBS@/$SHLIBS/" \
  "$D/control.in" >"$S/DEBIAN/control"
install -m 0755 "$D/postinst" "$D/prerm" "$D/postrm" "$S/DEBIAN/"
chmod 0644 "$S/DEBIAN/md5sums" "$S/DEBIAN/conffiles" "$S/DEBIAN/control"

mkdir -p "$OUT"
DEB="$OUT/fifo-broker_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$S" "$DEB" >&2
echo "$DEB"
