#!/bin/bash
# in-container.sh - the end-to-end checks, run by e2e.sh as root INSIDE a
# booted throwaway Debian container whose PID 1 is systemd. The package to
# test is /srv/e2e/fifo-broker.deb; /srv/e2e/systemd/ holds the repository's
# unit files. Prints one line per check and, last,
# `systemd e2e: N passed, M failed`; exits 1 if anything failed.
set -u
E2E=/srv/e2e
U=fifo-broker.service
CONF=/etc/fifo-broker/fifo-broker.toml
RUN=/run/fifo-broker
LOG=/var/log/fifo-broker
PASSED=0 FAILED=0 FAILURES=()

pass() { PASSED=$((PASSED + 1)); echo "  ok    $1"; }
fail() {
  FAILED=$((FAILED + 1)); FAILURES+=("$1"); echo "  FAIL  $1"
  shift; [ $# -gt 0 ] && printf '        %s\n' "$@"
  return 0
}
# check NAME CMD...: pass if CMD succeeds
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name" "command: $*"; fi; }
prop() { systemctl show -P "$2" "$1"; }
# expect NAME UNIT PROPERTY VALUE
expect() {
  local got; got=$(prop "$2" "$3")
  if [ "$got" = "$4" ]; then pass "$1 ($3=$got)"; else fail "$1" "$2 $3='$got', expected '$4'"; fi
}
# until_ok SECONDS CMD...: poll every 0.1 s
until_ok() {
  local deadline=$(($(date +%s%N) + $1 * 1000000000)); shift
  until "$@"; do [ "$(date +%s%N)" -lt $deadline ] || return 1; sleep 0.1; done
}
mark() { date +%s.%N; }
section() { echo "--- $*"; }
is_fifo_set() { local d=$1 f; shift; for f in "$@"; do [ -p "$d/$f" ] || return 1; done; }
none_exist() { local d=$1 f; shift; for f in "$@"; do [ ! -e "$d/$f" ] || return 1; done; }
# deliver FIFO-DIR SINK-FILE TEXT: write TEXT into DIR/alerts, wait for it in SINK-FILE
deliver() { echo "$3" >"$1/alerts" && until_ok 3 grep -q -- " alerts $3\$" "$2"; }
dropin() { # dropin UNIT NAME CONTENT (empty CONTENT removes it)
  local d=/etc/systemd/system/$1.d
  if [ -n "$3" ]; then mkdir -p "$d"; printf '[Service]\n%s\n' "$3" >"$d/$2.conf"; else rm -f "$d/$2.conf"; rmdir "$d" 2>/dev/null; fi
  systemctl daemon-reload
}
FIFOS=(alerts events alerts.tail all)

snapshot() { # what the purge check compares: every path outside the volatile/bookkeeping places
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /var/tmp \
    -o -path /var/lib/dpkg -o -path /var/cache -o -path /var/log/journal -o -path /srv -o -path /root \
    -o -path /var/lib/systemd/timers -o -path /var/lib/systemd/catalog \) -prune -o -print |
    grep -vE '^/etc/(passwd|group|shadow|gshadow|subuid|subgid)-?$|^/var/log/(dpkg\.log|alternatives\.log|apt)|^/var/lib/logrotate/status$' |
    LC_ALL=C sort
}

# ---------------------------------------------------------------- install
section "package install"
snapshot >/root/before.list
dpkg -i "$E2E/fifo-broker.deb" >/root/dpkg-i.log 2>&1
check "dpkg -i fifo-broker.deb" grep -q "Setting up fifo-broker" /root/dpkg-i.log
check "postinst created the system user (systemd-sysusers)" sh -c "getent passwd fifo-broker >/dev/null"
check "postinst enabled $U" systemctl -q is-enabled $U
check "postinst started $U" systemctl -q is-active $U
check "installed units are the repository's" cmp -s /lib/systemd/system/$U "$E2E/systemd/$U"
check "installed template is the repository's" cmp -s /lib/systemd/system/fifo-broker@.service "$E2E/systemd/fifo-broker@.service"
check "config is a conffile" grep -qx "$CONF" /var/lib/dpkg/info/fifo-broker.conffiles
check "fifo-broker --check on the installed config" sh -c "fifo-broker --check --config $CONF >/dev/null"
check "man fifo-broker / man 5 fifo-broker.toml" sh -c 'man -P cat fifo-broker >/dev/null 2>&1 && man -P cat 5 fifo-broker.toml >/dev/null 2>&1'
out=$(systemd-analyze verify $U fifo-broker@e2e.service 2>&1)
if [ -z "$out" ]; then pass "systemd-analyze verify prints nothing"; else fail "systemd-analyze verify prints nothing" "$out"; fi
cp $CONF /root/orig.toml

# ---------------------------------------------------------------- start
section "start: READY=1 only when every FIFO exists"
systemctl stop $U
t=$(mark)
systemctl start $U; rc=$?
# Nothing may be awaited here: systemctl start must have waited for READY=1.
if [ $rc = 0 ] && is_fifo_set $RUN "${FIFOS[@]}"; then pass "systemctl start returned with every FIFO in place"
else fail "systemctl start returned with every FIFO in place" "rc=$rc; $(ls -la $RUN 2>&1)"; fi
expect "unit active after start" $U ActiveState active
check "fifo-broker status answers (control socket, 0600)" sh -c "fifo-broker status | grep -q '^alerts ' && [ \"\$(stat -c %a $RUN/.control)\" = 600 ]"
check "fifo-broker status --prometheus" sh -c "fifo-broker status --prometheus | grep -q '^fifo_broker_lines_total{direction=\"in\",kind=\"input\",name=\"alerts\"}'"
expect "unit running after start" $U SubState running
check "STATUS= set at READY" sh -c "systemctl show -P StatusText $U | grep -q '^2 inputs, '"
PID=$(prop $U MainPID)
check "runs as user fifo-broker" sh -c "[ \"\$(stat -c %U /proc/$PID)\" = fifo-broker ]"
check "$RUN is fifo-broker's, 0755" sh -c "[ \"\$(stat -c '%U %a' $RUN)\" = 'fifo-broker 755' ]"
check "input alerts is 0620, subscriber alerts.tail 0640" sh -c "[ \"\$(stat -c %a $RUN/alerts) \$(stat -c %a $RUN/alerts.tail)\" = '620 640' ]"
# LimitNOFILE=65536, unless the container itself is capped lower (systemd
# cannot give a service more than its own hard limit); the daemon raises
# its soft limit to the hard one.
cap=$(awk '/^Max open files/ {print $5}' /proc/1/limits)
want=65536; [ "$cap" -lt $want ] && want=$cap
lim=$(awk '/^Max open files/ {print $4, $5}' /proc/"$PID"/limits)
if [ "$lim" = "$want $want" ]; then pass "open files: soft = hard = $want (LimitNOFILE=65536, container cap $cap)"
else fail "open files: soft = hard = $want (LimitNOFILE=65536, container cap $cap)" "got soft/hard: $lim"; fi

# The daemon raises its soft limit to the hard one, even under
# SystemCallFilter=~@resources (prlimit64 is in @default, setrlimit is not).
dropin $U nofile "LimitNOFILE=1024:4096"
systemctl restart $U
lim=$(awk '/^Max open files/ {print $4, $5}' /proc/"$(prop $U MainPID)"/limits)
if [ "$lim" = "4096 4096" ]; then pass "soft RLIMIT_NOFILE raised to hard under the syscall filter"
else fail "soft RLIMIT_NOFILE raised to hard under the syscall filter" "LimitNOFILE=1024:4096 gave soft/hard $lim"; fi
dropin $U nofile ""
systemctl restart $U
PID=$(prop $U MainPID)

# ---------------------------------------------------------------- data
section "data: echo into an input reaches a subscriber and the sink"
timeout 5 head -n1 $RUN/alerts.tail >/tmp/sub.out 2>&1 &
reader=$!
sleep 0.3   # the reader waits in open(); the next routed line attaches it
echo "disk full" >$RUN/alerts
wait $reader
check "cat on alerts.tail got the line" grep -qx "disk full" /tmp/sub.out
check "the line reached $LOG/archive.log" until_ok 3 grep -q " alerts disk full$" $LOG/archive.log
check "sink created 0640 fifo-broker (the daemon ignores UMask=0077)" sh -c "[ \"\$(stat -c '%a %U' $LOG/archive.log)\" = '640 fifo-broker' ]"
t=$(mark)
systemctl kill -s USR1 --kill-who=main $U
check "SIGUSR1 counters in the journal" until_ok 3 sh -c "journalctl -q --no-pager -o cat -u $U --since @$t | grep -q '^counters: input alerts lines_in=1 '"

# ---------------------------------------------------------------- reload
section "reload"
printf '\n[inputs.extra]\n' >>$CONF
t=$(mark)
systemctl reload $U
check "reload: the new FIFO appears" until_ok 3 test -p $RUN/extra
check "reload: StatusText shows the new config" until_ok 3 sh -c "systemctl show -P StatusText $U | grep -q '^3 inputs, '"
expect "reload: same main PID" $U MainPID "$PID"
check "reload: logged by the daemon" sh -c "journalctl -q --no-pager -o cat -u $U --since @$t | grep -q 'SIGHUP: reloading'"

printf '\n[inputs.broken]\nmode = "rw"\n' >>$CONF
t=$(mark)
systemctl reload $U
check "broken reload: StatusText names the error" until_ok 3 sh -c "systemctl show -P StatusText $U | grep -q 'reload failed: $CONF:[0-9]*:[0-9]*: '"
expect "broken reload: unit stays active" $U ActiveState active
expect "broken reload: same main PID" $U MainPID "$PID"
check "broken reload: journal has FILE:LINE:COL" until_ok 3 sh -c "journalctl -q --no-pager -o cat -u $U --since @$t | grep -q '$CONF:[0-9]*:[0-9]*: inputs.broken.mode'"
check "broken reload: old FIFOs still work" deliver $RUN $LOG/archive.log "still here"
check "broken reload: extra still there" test -p $RUN/extra
echo "        StatusText: $(prop $U StatusText)"
cp /root/orig.toml $CONF
systemctl reload $U
check "fixed reload: status clean, extra removed" until_ok 3 sh -c "systemctl show -P StatusText $U | grep -q '^2 inputs, ' && [ ! -e $RUN/extra ] && ! systemctl show -P StatusText $U | grep -q 'reload failed'"

# ---------------------------------------------------------------- journal forward
section "journal forward"
printf '\n[forwards.journal]\nurl = "journal"\nfrom = ["alerts"]\nseverity = "crit"\n' >>$CONF
t=$(mark)
systemctl reload $U
check "journal forward: reload applies it" until_ok 3 sh -c "journalctl -q --no-pager -o cat -u $U --since @$t | grep -q '^reloaded: '"
echo "forwarded to the journal $t" >$RUN/alerts
check "journal forward: journalctl FIFO_BROKER_INPUT=alerts shows the line" until_ok 5 sh -c "journalctl -q --no-pager -o cat FIFO_BROKER_INPUT=alerts | grep -qx 'forwarded to the journal $t'"
check "journal forward: PRIORITY=2 (crit), SYSLOG_IDENTIFIER=alerts" sh -c "journalctl -q --no-pager -o export FIFO_BROKER_INPUT=alerts | grep -qx 'PRIORITY=2' && journalctl -q --no-pager -o export FIFO_BROKER_INPUT=alerts | grep -qx 'SYSLOG_IDENTIFIER=alerts'"
# A line too large for one datagram reaches journald in a sealed memfd,
# which the unit's sandbox (SystemCallFilter=, MemoryDenyWriteExecute=) allows.
sed -i 's/^max_line_bytes = .*/max_line_bytes = 1048576/' $CONF
t=$(mark)
systemctl reload $U
check "journal forward: reload raises max_line_bytes" until_ok 3 sh -c "journalctl -q --no-pager -o cat -u $U --since @$t | grep -q '^reloaded: '"
{ printf 'large %s ' "$t"; head -c 400000 /dev/zero | tr '\0' x; echo; } >/tmp/large.line
cat /tmp/large.line >$RUN/alerts
name="journal forward: a 400 kB line reaches journalctl whole (memfd)"
if until_ok 5 sh -c "journalctl -q --no-pager -a -o cat FIFO_BROKER_INPUT=alerts | grep -F 'large $t ' | cmp -s - /tmp/large.line"; then pass "$name"
else fail "$name" "journalctl shows $(journalctl -q --no-pager -a -o cat FIFO_BROKER_INPUT=alerts | grep -F "large $t " | wc -c) of its $(wc -c </tmp/large.line) bytes" \
  "daemon: $(journalctl -q --no-pager -o cat -u $U --since @$t | tail -n 3 | cut -c1-300)"; fi
cp /root/orig.toml $CONF
systemctl reload $U
check "journal forward: removed again" until_ok 3 sh -c "systemctl show -P StatusText $U | grep -q '^2 inputs, '"

# ---------------------------------------------------------------- logrotate
section "logrotate snippet"
logrotate -f /etc/logrotate.d/fifo-broker
check "logrotate renamed archive.log (dateext)" sh -c "ls $LOG | grep -q '^archive.log-[0-9]*$'"
check "after rotation new lines go to a fresh archive.log" deliver $RUN $LOG/archive.log "after rotate"
check "rotated file does not get them" sh -c "! grep -q 'after rotate' $LOG/archive.log-*"
check "fresh archive.log is 0640 fifo-broker" sh -c "[ \"\$(stat -c '%a %U' $LOG/archive.log)\" = '640 fifo-broker' ]"

# ---------------------------------------------------------------- stop
section "stop"
dropin $U preserve "RuntimeDirectoryPreserve=yes"   # to see what the daemon itself removes
systemctl restart $U
echo "last words" >$RUN/events
t=$(mark)
systemctl stop $U
check "stop: the daemon unlinked every FIFO itself" none_exist $RUN "${FIFOS[@]}"
check "stop: last line written before stop reached the sink" grep -q " events last words$" $LOG/archive.log
expect "stop: unit inactive" $U ActiveState inactive
expect "stop: exit status 0" $U ExecMainStatus 0
expect "stop: result success" $U Result success
check "stop: STOPPING=1 logged" sh -c "journalctl -q --no-pager -o cat -u $U --since @$t | grep -q 'SIGTERM: stopping'"
dropin $U preserve ""
rm -rf $RUN
systemctl start $U; systemctl stop $U
check "stop: RuntimeDirectory $RUN removed" test ! -e $RUN

# ---------------------------------------------------------------- bad config at start
section "bad config at start"
printf '[inputs.a]\nmode = 0o999\n' >$CONF
t=$(mark)
systemctl start $U 2>/dev/null; rc=$?
check "start with a bad config fails" test $rc != 0
sleep 2.5   # > RestartSec=1: a restart would have happened by now
expect "bad config: unit failed" $U ActiveState failed
expect "bad config: exit status 78" $U ExecMainStatus 78
expect "bad config: not restarted" $U NRestarts 0
check "bad config: journal names file:line:col" sh -c "journalctl -q --no-pager -o cat -u $U --since @$t | grep -q '$CONF:2:[0-9]*: '"
journalctl -q --no-pager -o cat -u $U --since @$t | grep "$CONF:" | head -n2 | sed 's/^/        journal: /'
cp /root/orig.toml $CONF
systemctl reset-failed $U

# ---------------------------------------------------------------- watchdog
section "watchdog"
dropin $U watchdog "WatchdogSec=2"
systemctl start $U
PID=$(prop $U MainPID)
t=$(mark)
kill -STOP "$PID"
check "watchdog: SIGSTOPped daemon killed and restarted" until_ok 12 sh -c "[ \"\$(systemctl show -P NRestarts $U)\" = 1 ] && [ \"\$(systemctl show -P ActiveState $U)\" = active ]"
check "watchdog: journal says watchdog timeout" sh -c "journalctl -q --no-pager -o cat -u $U --since @$t | grep -q 'Watchdog timeout'"
check "watchdog: new main PID" sh -c "[ \"\$(systemctl show -P MainPID $U)\" != $PID ] && ! kill -0 $PID 2>/dev/null"
check "watchdog: restarted daemon serves again" deliver $RUN $LOG/archive.log "after watchdog"
check "watchdog: healthy daemon is not killed (4 s with WatchdogSec=2)" sh -c "p=\$(systemctl show -P MainPID $U); sleep 4; [ \"\$(systemctl show -P MainPID $U)\" = \$p ]"
systemctl stop $U
dropin $U watchdog ""

# ---------------------------------------------------------------- template
section "template instance"
cp /root/orig.toml /etc/fifo-broker/second.toml
systemctl start $U fifo-broker@second.service
check "instance FIFOs in /run/fifo-broker-second" is_fifo_set /run/fifo-broker-second "${FIFOS[@]}"
check "instance sink in $LOG/second" deliver /run/fifo-broker-second $LOG/second/archive.log "to second"
check "status --instance second asks the instance" sh -c "fifo-broker status --instance second | grep -q 'dir /run/fifo-broker-second'"
check "--check --instance second, as the service user, passes" sh -c "runuser -u fifo-broker -- fifo-broker --check --instance second | grep -q '^dir: /run/fifo-broker-second'"
check "main unit does not see the instance's lines" sh -c "! grep -q 'to second' $LOG/archive.log"
systemctl stop $U
expect "stopping the main unit leaves the instance active" fifo-broker@second.service ActiveState active
check "... and its FIFOs in place" is_fifo_set /run/fifo-broker-second "${FIFOS[@]}"
check "... and working" deliver /run/fifo-broker-second $LOG/second/archive.log "still second"
systemctl start $U
systemctl stop fifo-broker@second.service
check "stopping the instance leaves the main unit's FIFOs" is_fifo_set $RUN "${FIFOS[@]}"
check "stopped instance: /run/fifo-broker-second removed" test ! -e /run/fifo-broker-second
out=$(systemd-analyze security fifo-broker@second.service --no-pager 2>&1 | tail -n1)
echo "        live $out"

# ---------------------------------------------------------------- group
section "group: FIFOs for a group's members"
groupadd --system fbwriters
useradd --no-create-home --groups fbwriters alice
useradd --no-create-home bob
sed -i 's/^# group = "adm"/group = "fbwriters"/' $CONF
systemctl stop $U
systemctl start $U 2>/dev/null; rc=$?
sleep 2.5
check "group without SupplementaryGroups=: refused, exit 73" sh -c "[ $rc != 0 ] && journalctl -q --no-pager -o cat -u $U -n 50 | grep -qi 'chown\\|group'"
journalctl -q --no-pager -o cat -u $U -n 30 | grep -i 'group' | tail -n1 | sed 's/^/        journal: /'
systemctl stop $U; systemctl reset-failed $U
dropin $U group "SupplementaryGroups=fbwriters"
systemctl start $U; rc=$?
check "group with SupplementaryGroups=fbwriters: started" test $rc = 0
check "FIFOs belong to group fbwriters" sh -c "[ \"\$(stat -c %G $RUN/alerts $RUN/alerts.tail | sort -u)\" = fbwriters ]"
check "a member of the group can write an input" sh -c "runuser -u alice -- sh -c 'echo from alice > $RUN/alerts' && grep -q ' alerts from alice\$' $LOG/archive.log || { sleep 1; grep -q ' alerts from alice\$' $LOG/archive.log; }"
check "a non-member cannot" sh -c "! runuser -u bob -- sh -c 'echo from bob > $RUN/alerts' 2>/dev/null"
# Why the unit keeps PrivateUsers= off: in a user namespace the
# supplementary group is unmapped and the chown must fail.
dropin $U privusers "PrivateUsers=yes"
t=$(mark)
systemctl restart $U 2>/dev/null; rc=$?
sleep 1
if [ $rc != 0 ]; then
  pass "PrivateUsers=yes breaks group (as the unit file says)"
  journalctl -q --no-pager -o cat -u $U -p err --since "@$t" | head -n1 | sed 's/^/        journal: /'
else
  fail "PrivateUsers=yes breaks group (as the unit file says)" "it started: PrivateUsers= could be turned on; FIFO groups: $(stat -c %G $RUN/alerts)"
fi
systemctl stop $U; systemctl reset-failed $U
dropin $U privusers ""
# Why @chown is allowed again after ~@privileged: without it the chown to
# the group is refused by the seccomp filter.
dropin $U nochown "SystemCallFilter=~@chown"
systemctl restart $U 2>/dev/null; rc=$?
sleep 1
if [ $rc != 0 ]; then pass "SystemCallFilter=~@chown breaks group (why the unit allows @chown)"
else fail "SystemCallFilter=~@chown breaks group (why the unit allows @chown)" "it started; FIFO group $(stat -c %G $RUN/alerts)"; fi
systemctl stop $U; systemctl reset-failed $U
dropin $U nochown ""
dropin $U group ""
cp /root/orig.toml $CONF
userdel alice; userdel bob; groupdel fbwriters

# ---------------------------------------------------------------- purge
section "package removal"
systemctl start $U fifo-broker@second.service
rm -f /etc/fifo-broker/second.toml
dpkg -r fifo-broker >/root/dpkg-r.log 2>&1
check "dpkg -r stopped the service" sh -c "! systemctl -q is-active $U && ! pgrep -x fifo-broker"
check "dpkg -r stopped the instance too" sh -c "! systemctl -q is-active fifo-broker@second.service"
check "dpkg -r kept the conffile" test -f $CONF
dpkg --purge fifo-broker >/root/dpkg-purge.log 2>&1
check "dpkg --purge succeeded" sh -c "! dpkg -s fifo-broker >/dev/null 2>&1"
snapshot >/root/after.list
leftover=$(LC_ALL=C comm -13 /root/before.list /root/after.list)
if [ -z "$leftover" ]; then pass "dpkg --purge left nothing behind"; else fail "dpkg --purge left nothing behind" $leftover; fi
check "the system user stays (Debian practice)" sh -c "getent passwd fifo-broker >/dev/null"

echo
if [ $FAILED -gt 0 ]; then
  echo "--- journal of the failures' units (last 60 lines)"
  journalctl -q --no-pager -o short-precise -u $U -u 'fifo-broker@*' | tail -n 60
  echo "--- failed: ${FAILURES[*]}"
fi
echo "systemd e2e: $PASSED passed, $FAILED failed"
[ $FAILED = 0 ]
