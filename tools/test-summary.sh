#!/usr/bin/env bash
# Run a test command, pass its output through, and end with one line totalling every
# libtest summary: "total: N passed, M failed". Exits with the command's status.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } } END { print p + 0, f + 0 }' "$log")
echo
echo "total: $passed passed, $failed failed"
exit "$status"
