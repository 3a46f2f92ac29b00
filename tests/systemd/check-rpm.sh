#!/usr/bin/env bash
# check-rpm.sh - parse packaging/rpm/fifo-broker.spec (rpmspec -P) and build
# a binary RPM from the release binary with Debian's rpm/rpmbuild, then check
# that it carries the same files as the Debian package.
#
#   tests/systemd/check-rpm.sh [BINARY] [DEB]
#
# Debian has no systemd-rpm-macros: packaging/rpm/macros.debian stands in.
# BuildRequires are not installed here (--nodeps) and cargo is not run
# (fifo_broker_binary points at the already built binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-target/release/fifo-broker}")
DEB=${2:-}
SPEC=packaging/rpm/fifo-broker.spec
MACROS=packaging/rpm/macros.debian
command -v rpmbuild >/dev/null || { apt-get update -q >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -q rpm >&2; }

VERSION=$(rpmspec -q --qf '%{VERSION}\n' --load "$MACROS" "$SPEC" 2>/dev/null | head -n1)
CARGO_VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
[ "$VERSION" = "$CARGO_VERSION" ] || { echo "check-rpm: spec Version $VERSION != Cargo.toml $CARGO_VERSION" >&2; exit 1; }

TOP=$(mktemp -d)
trap 'rm -rf "$TOP"' EXIT
mkdir -p "$TOP/SOURCES"
cp systemd/fifo-broker.sysusers "$TOP/SOURCES/"
rpmspec -P --load "$MACROS" --define "_topdir $TOP" "$SPEC" >"$TOP/parsed.spec"
echo "check-rpm: rpmspec -P ok ($(grep -c . "$TOP/parsed.spec") lines)"

# Source0: the files the spec uses, under fifo-broker-VERSION/
tar -czf "$TOP/SOURCES/fifo-broker-$VERSION.tar.gz" --transform "s,^,fifo-broker-$VERSION/," \
  Cargo.toml Cargo.lock src config systemd man packaging docs README.md
rpmbuild -bb --nodeps --load "$MACROS" --define "_topdir $TOP" \
  --define "fifo_broker_binary $BIN" "$SPEC" >"$TOP/rpmbuild.log" 2>&1 ||
  { tail -n 30 "$TOP/rpmbuild.log" >&2; echo "check-rpm: rpmbuild failed" >&2; exit 1; }
RPM=$(find "$TOP/RPMS" -name '*.rpm' | head -n1)
echo "check-rpm: rpmbuild ok: $(basename "$RPM")"
rpm -qp --scripts "$RPM" 2>/dev/null | grep -q 'systemd-sysusers' || { echo "check-rpm: no sysusers scriptlet" >&2; exit 1; }

if [ -n "$DEB" ]; then
  # Same files as the .deb, modulo /lib vs /usr/lib, zsh's vendor-completions
  # (Debian) vs site-functions (RPM), compression and docs.
  norm() { sed -E 's,^\./,/,; s,^/lib/,/usr/lib/,; s,\.gz$,,; s,/zsh/vendor-completions/,/zsh/site-functions/,; /^\/usr\/share\/(doc|lintian)\//d; /\/$/d'; }
  dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {print $6}' | norm | sort >"$TOP/deb.files"
  rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" 2>/dev/null | awk '$1 ~ /^-/ {print $2}' |
    grep -v '^/usr/lib/.build-id/' | norm | sort >"$TOP/rpm.files"
  if ! diff -u "$TOP/deb.files" "$TOP/rpm.files"; then echo "check-rpm: file lists differ (-deb +rpm)" >&2; exit 1; fi
  echo "check-rpm: same $(wc -l <"$TOP/rpm.files") files as the .deb"
fi
