#!/usr/bin/env bash
# run-all.sh - every test against both builds: the C unit tests (meson
# test) and the end-to-end suite (pytest on the real binary), first with
# the plain build, then with AddressSanitizer and UBSan; then the fuzz
# targets for FUZZ_SECONDS (20) each, one test a target.  Ends with one
# line "N passed, N failed" and exits non-zero if anything failed.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
results=$(mktemp -d /tmp/dstack-tests.XXXXXX)
trap 'rm -rf "$results"' EXIT
# A small quarantine keeps the sanitized binary's memory near the plain
# one's, so the end-to-end memory bound holds for both builds.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:quarantine_size_mb=16}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

for build in build build-asan; do
	echo "== unit tests ($build)"
	meson test -C "$build" --print-errorlogs || true
	cp "$build/meson-logs/testlog.json" "$results/unit-$build.json"
	echo "== end-to-end tests ($build)"
	DSTACK_BIN="$top/$build/cli/dstack" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		--junitxml="$results/e2e-$build.xml" tests/e2e || true
done

echo "== fuzz targets"
tests/fuzz/run.sh "${FUZZ_SECONDS:-20}" | tee "$results/fuzz.txt" || true

/usr/bin/python3 - "$results" <<'PY'
import glob, json, os, re, sys
import xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in glob.glob(os.path.join(sys.argv[1], "unit-*.json")):
    for line in open(path):
        result = json.loads(line)["result"]
        if result == "OK":
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
for path in glob.glob(os.path.join(sys.argv[1], "e2e-*.xml")):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        total = int(suite.get("tests", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skip = int(suite.get("skipped", 0))
        passed += total - bad - skip
        failed += bad
        skipped += skip
fuzz_targets = 0
for line in open(os.path.join(sys.argv[1], "fuzz.txt")):
    match = re.match(r"fuzz-[\w-]+: \d+ executions, (.*)", line)
    if match:
        fuzz_targets += 1
        if match.group(1) == "ok":
            passed += 1
        else:
            failed += 1
if not fuzz_targets:
    print("tests: the fuzz targets did not run", file=sys.stderr)
    failed += 1
for name in ("unit-build.json", "unit-build-asan.json", "e2e-build.xml", "e2e-build-asan.xml"):
    if not os.path.exists(os.path.join(sys.argv[1], name)):
        print("tests: %s did not run" % name, file=sys.stderr)
        failed += 1
line = "%d passed, %d failed" % (passed, failed)
if skipped:
    line += ", %d skipped" % skipped
print(line)
sys.exit(1 if failed or passed == 0 else 0)
PY
