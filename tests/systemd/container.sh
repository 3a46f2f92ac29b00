# shellcheck shell=bash
# container.sh - boot a throwaway Debian container whose PID 1 is a real
# systemd, for the end-to-end tests of fifo-broker's units and package.
# Sourced by tests/systemd/e2e.sh; needs root.
#
#   ct_tools            apt-get install systemd-container debootstrap (once)
#   ct_rootfs           debootstrap a minimal rootfs into $CT_CACHE (once per
#                       package set; cached, never written to afterwards)
#   ct_boot ARGS...     systemd-nspawn --boot --volatile=overlay ARGS (the
#                       rootfs stays pristine, the container writes to tmpfs);
#                       returns when `systemctl is-system-running` says
#                       running/degraded
#   ct_exec CMD...      run CMD inside the container (root, clean env)
#   ct_halt             shut it down, remove its cgroups (also on EXIT)
#
# This host's PID 1 is not systemd and its cgroups are v1-hybrid, so nothing
# gives nspawn a cgroup of its own: we create one under every systemd-managed
# hierarchy and start nspawn inside it with --keep-unit --register=no. We never
# bind a host directory onto the container's /, /tmp, /run or /var: its
# systemd-tmpfiles would empty it at boot. Test files are bound read-only
# under /srv.
#
# Env: CT_CACHE (default /var/cache/fifo-broker-e2e), CT_SUITE (bookworm),
#      CT_MIRROR (default: the Debian mirror in /etc/apt/sources.list*),
#      CT_BOOT_TIMEOUT (60 s).

CT_CACHE=${CT_CACHE:-/var/cache/fifo-broker-e2e}
CT_SUITE=${CT_SUITE:-bookworm}
# What the tests need inside: systemd as PID 1, dbus for systemctl, procps
# for pgrep, logrotate and man-db to exercise the package's logrotate snippet
# and man pages (systemd-analyze verify also checks Documentation=man:).
CT_PACKAGES=${CT_PACKAGES:-systemd,systemd-sysv,dbus,procps,logrotate,man-db}
CT_BOOT_TIMEOUT=${CT_BOOT_TIMEOUT:-60}
CT_RECIPE=1   # bump when the post-debootstrap tweaks in ct_rootfs change
CT_ROOT="" CT_NAME="" CT_NSPID="" CT_LEADER="" CT_LOG="" CT_CGDIRS=()

ct_say() { echo "container: $*" >&2; }
ct_die() { echo "container: ERROR: $*" >&2; exit 125; }

ct_tools() {
  local need=()
  command -v systemd-nspawn >/dev/null || need+=(systemd-container)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v nsenter >/dev/null || need+=(util-linux)
  [ ${#need[@]} -eq 0 ] && return 0
  ct_say "installing ${need[*]} ..."
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
}

ct_mirror() {
  local m
  m=$(grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk '{for (i = 2; i <= NF; i++) print $i}' | grep -E '/debian/?$' | head -n1 || true)
  [ -n "$m" ] || m=$(grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '{for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break }}' |
      grep -E '/debian/?$' | head -n1 || true)
  [ -n "$m" ] || ct_die "no Debian mirror in /etc/apt/sources.list*; set CT_MIRROR"
  echo "$m"
}

ct_rootfs() {
  local stamp="$CT_SUITE $CT_PACKAGES recipe=$CT_RECIPE" mirror t0
  CT_ROOT="$CT_CACHE/$CT_SUITE-$(echo "$stamp" | md5sum | cut -c1-10)"
  mkdir -p "$CT_CACHE"
  exec 8>"$CT_CACHE/.lock"
  flock 8
  if [ "$(cat "$CT_ROOT/.stamp" 2>/dev/null)" != "$stamp" ]; then
    mirror=${CT_MIRROR:-$(ct_mirror)}
    ct_say "building $CT_ROOT ($CT_SUITE from $mirror, +$CT_PACKAGES) ..."
    t0=$SECONDS
    rm -rf "$CT_ROOT.tmp" "$CT_ROOT"
    if ! debootstrap --variant=minbase --include="$CT_PACKAGES" "$CT_SUITE" "$CT_ROOT.tmp" "$mirror" \
        >"$CT_CACHE/debootstrap.log" 2>&1; then
      tail -n 20 "$CT_CACHE/debootstrap.log" >&2
      ct_die "debootstrap failed (log: $CT_CACHE/debootstrap.log)"
    fi
    chroot "$CT_ROOT.tmp" apt-get clean >/dev/null 2>&1 || true
    # Quieter, faster boot; never clean /tmp (see the header).
    ln -sf /dev/null "$CT_ROOT.tmp/etc/systemd/system/console-getty.service"
    ln -sf /dev/null "$CT_ROOT.tmp/etc/systemd/system/systemd-tmpfiles-clean.timer"
    printf 'd /tmp 1777 root root -\nd /var/tmp 1777 root root -\n' >"$CT_ROOT.tmp/etc/tmpfiles.d/tmp.conf"
    echo fbe2e >"$CT_ROOT.tmp/etc/hostname"
    : >"$CT_ROOT.tmp/etc/machine-id"
    echo "$stamp" >"$CT_ROOT.tmp/.stamp"
    mv "$CT_ROOT.tmp" "$CT_ROOT"
    ct_say "rootfs ready in $((SECONDS - t0)) s ($(du -sh "$CT_ROOT" | cut -f1))"
  fi
  flock -u 8
  exec 8>&-
}

ct_cgroup_roots() {
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    echo /sys/fs/cgroup
  else
    [ -d /sys/fs/cgroup/unified ] && echo /sys/fs/cgroup/unified
    [ -d /sys/fs/cgroup/systemd ] && echo /sys/fs/cgroup/systemd
  fi
  return 0
}

ct_halt() {
  local d
  if [ -n "$CT_NSPID" ] && kill -0 "$CT_NSPID" 2>/dev/null; then
    kill -TERM "$CT_NSPID" 2>/dev/null || true   # nspawn: clean poweroff of the container
    for _ in $(seq 300); do kill -0 "$CT_NSPID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$CT_NSPID" 2>/dev/null; then
      kill -TERM "$CT_NSPID" 2>/dev/null || true # second TERM: immediate
      for _ in $(seq 50); do kill -0 "$CT_NSPID" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$CT_NSPID" 2>/dev/null || true
      [ -n "$CT_LEADER" ] && kill -KILL "$CT_LEADER" 2>/dev/null || true
    fi
    wait "$CT_NSPID" 2>/dev/null || true
  fi
  for d in "${CT_CGDIRS[@]}"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  [ -n "$CT_NAME" ] && rm -rf "/run/systemd/nspawn/propagate/$CT_NAME" 2>/dev/null || true
  [ -n "$CT_LOG" ] && [ "${CT_KEEP_LOG:-0}" != 1 ] && rm -f "$CT_LOG"
  CT_NSPID="" CT_LEADER="" CT_CGDIRS=()
}

ct_boot() {
  local own_cg=1 c st="" t0 deadline
  CT_NAME="fbe2e-$$-$RANDOM"
  CT_LOG=$(mktemp -p /var/tmp --suffix=.fifo-broker-e2e-console)
  [ "$(cat /proc/1/comm)" = systemd ] && own_cg=0
  if [ $own_cg = 1 ]; then for c in $(ct_cgroup_roots); do CT_CGDIRS+=("$c/$CT_NAME"); done; fi
  t0=$(date +%s%N)
  (
    for c in "${CT_CGDIRS[@]}"; do mkdir -p "$c"; echo "$BASHPID" >"$c/cgroup.procs"; done
    if [ $own_cg = 1 ]; then set -- --keep-unit "$@"; fi
    exec setsid systemd-nspawn -q -D "$CT_ROOT" -M "$CT_NAME" --boot --volatile=overlay \
      --register=no --console=passive "$@" </dev/null >"$CT_LOG" 2>&1
  ) &
  CT_NSPID=$!
  deadline=$((SECONDS + CT_BOOT_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$CT_NSPID" 2>/dev/null || { tail -n 30 "$CT_LOG" >&2; ct_die "systemd-nspawn exited early"; }
    if [ -z "$CT_LEADER" ]; then
      for c in $(pgrep -P "$CT_NSPID" || true); do
        [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && CT_LEADER=$c
      done
    fi
    if [ -n "$CT_LEADER" ]; then
      st=$(timeout 10 nsenter -t "$CT_LEADER" -a systemctl is-system-running --wait 2>/dev/null || true)
      case "$st" in running | degraded) break ;; esac
    fi
    sleep 0.1
  done
  case "$st" in
    running) ;;
    degraded) ct_say "booted degraded:"; ct_exec systemctl --failed --no-pager --plain >&2 || true ;;
    *) tail -n 30 "$CT_LOG" >&2; ct_die "container did not reach running (state '$st')" ;;
  esac
  ct_say "booted in $((($(date +%s%N) - t0) / 1000000)) ms"
}

ct_exec() {
  nsenter -t "$CT_LEADER" -a -- /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    TERM=dumb SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 "$@"
}
