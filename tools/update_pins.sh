#!/usr/bin/env bash
# Move the test install's pins forward: resolve edgeseg's test install afresh (the newest releases
# its ranges allow), run the whole suite on it, and only when it passes write the resolved set to
# constraints.txt. Run it on a schedule (monthly, or when a dependency you care about ships) and
# commit the changed constraints.txt with what changed in the suite, if anything.
#
#   bash tools/update_pins.sh            # fresh venv in a temporary folder, suite, new constraints.txt
#   bash tools/update_pins.sh --no-tests # only re-resolve (to look at the diff)
set -euo pipefail
cd "$(dirname "$0")/.."
run_tests=1
[ "${1:-}" = "--no-tests" ] && run_tests=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# No -c here: this is the one install that may take new releases. The checkers keep their exact
# pins in setup.py's test extra; move those by hand, with the fixes their new findings need.
"$work/venv/bin/pip" install -q -e ".[opencv,convert,test]"
"$work/venv/bin/pip" install -q --no-deps tensorrt-stubs==10.13.0.35.1
if [ "$run_tests" = 1 ]; then
  "$work/venv/bin/python" -m pytest -q -p no:cacheprovider
fi
{
  echo "# The test install's pins (README's test command and .ci/run: pip install -c constraints.txt ...)."
  echo "# Written by tools/update_pins.sh on $(date -u +%Y-%m-%d) from a fresh resolve on which the suite passed;"
  echo "# users' installs do not read it (setup.py keeps ranges). Move it with: bash tools/update_pins.sh"
  "$work/venv/bin/pip" freeze --exclude-editable | grep -v -i -E '^(edgeseg|tensorrt-stubs)(=| @)' | LC_ALL=C sort -f
} > constraints.txt.tmp
mv constraints.txt.tmp constraints.txt
git --no-pager diff --stat -- constraints.txt || true
echo "constraints.txt updated"
