#!/usr/bin/env bash
# check-units.sh - static checks of systemd/ (no root, no container needed):
#  - `systemd-analyze security --offline=true` rates both units at an overall
#    exposure <= MAX_EXPOSURE (default 1.0);
#  - the template's [Service] is the main unit's, except for the lines that
#    must differ (--instance %i instead of the config path, and the two
#    directories);
#  - the sysusers file declares the User= of both units.
# (`systemd-analyze verify`, which needs the binary and man pages installed,
# runs in the container: tests/systemd/in-container.sh.)
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX_EXPOSURE=${MAX_EXPOSURE:-1.0}
fails=0
for unit in systemd/fifo-broker.service systemd/fifo-broker@.service; do
  line=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1 | grep 'Overall exposure level' || true)
  score=$(echo "$line" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')
  if [ -n "$score" ] && awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
    echo "check-units: $unit: exposure $score (<= $MAX_EXPOSURE)"
  else
    echo "check-units: FAIL $unit: exposure '${score:-?}' > $MAX_EXPOSURE: $line"
    systemd-analyze security --offline=true --no-pager "$unit" 2>&1 | grep '✗' || true
    fails=$((fails + 1))
  fi
done

service_lines() { sed -n '/^\[Service\]/,/^\[/p' "$1" | grep -Ev '^(#|$|\[)' ; }
diff_out=$(diff <(service_lines systemd/fifo-broker.service) \
  <(service_lines systemd/fifo-broker@.service | sed -e 's,--instance %i$,--config /etc/fifo-broker/fifo-broker.toml,' \
    -e 's,^RuntimeDirectory=fifo-broker-%i$,RuntimeDirectory=fifo-broker,' -e 's,^LogsDirectory=fifo-broker/%i$,LogsDirectory=fifo-broker,') || true)
if [ -z "$diff_out" ]; then echo "check-units: template [Service] matches fifo-broker.service"
else echo "check-units: FAIL template [Service] differs from fifo-broker.service:"; echo "$diff_out"; fails=$((fails + 1)); fi
if grep -q '^RuntimeDirectory=fifo-broker-%i$' systemd/fifo-broker@.service &&
  grep -q '^LogsDirectory=fifo-broker/%i$' systemd/fifo-broker@.service; then
  echo "check-units: template: RuntimeDirectory=fifo-broker-%i, LogsDirectory=fifo-broker/%i"
else
  echo "check-units: FAIL template directories"; fails=$((fails + 1))
fi

for unit in systemd/fifo-broker.service systemd/fifo-broker@.service; do
  user=$(sed -n 's/^User=//p' "$unit")
  if grep -Eq "^u[[:space:]]+${user}[[:space:]]" systemd/fifo-broker.sysusers; then echo "check-units: $unit: User=$user is in fifo-broker.sysusers"
  else echo "check-units: FAIL $unit: User=$user not declared in fifo-broker.sysusers"; fails=$((fails + 1)); fi
done
exit $((fails > 0))
