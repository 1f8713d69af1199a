#!/usr/bin/env bash
# Run a test command, pass its output through, and end with one line totalling every
# libtest summary ("total: N passed, M failed") and the list of the tests that failed,
# each with the test binary it belongs to. Exits with the command's status.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } } END { print p + 0, f + 0 }' "$log")
echo
echo "total: $passed passed, $failed failed"
# "Running tests/files.rs (...)" names the binary of the "test X ... FAILED" lines after it.
awk '/^ *Running / { bin = $2 } / \.\.\. FAILED$/ { sub(/^test /, ""); sub(/ \.\.\. FAILED$/, ""); print "  FAILED " bin ": " $0 }' "$log"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "  (the command failed with status $status outside any test: see the output above)"
fi
exit "$status"
