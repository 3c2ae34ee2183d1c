#!/usr/bin/env bash
# run.sh [SECONDS] - builds the libFuzzer targets (clang, ASan + UBSan, in
# build-fuzz) and runs each for SECONDS (30 by default) over a copy of its
# seed corpus, so what it finds stays out of the repository; first it runs
# each file of tests/fuzz/crashes/TARGET once, the inputs that crashed
# before.  One line per target, "fuzz-NAME: N executions, ok" or
# "..., CRASH: FILE (log LOG)"; exits non-zero if any target crashed, and
# then keeps its scratch folder so FILE stays there to minimize.
set -uo pipefail

secs=${1:-30}
case $secs in
'' | *[!0-9]*)
	echo "usage: tests/fuzz/run.sh [SECONDS]" >&2
	exit 2
	;;
esac
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
fuzz=tests/fuzz
build="build-fuzz"
# UBSan only reports by default; a report must stop the target to count.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

targets=()
for source in "$fuzz"/fuzz_*.c; do
	name=${source#"$fuzz"/fuzz_}
	name=${name%.c}
	targets+=("${name//_/-}")
done

work=$(mktemp -d /tmp/dstack-fuzz.XXXXXX)
if [ ! -f "$build/build.ninja" ]; then
	# fuzzer-no-link: the module libraries report coverage to libFuzzer too.
	if ! CC=clang meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link >"$work/build.log" 2>&1; then
		cat "$work/build.log" >&2
		echo "fuzz: meson setup $build failed (log $work/build.log)" >&2
		exit 1
	fi
fi
if ! ninja -C "$build" "${targets[@]/#/tests/fuzz/fuzz-}" >"$work/build.log" 2>&1; then
	cat "$work/build.log" >&2
	echo "fuzz: building the targets failed (log $work/build.log)" >&2
	exit 1
fi

crashed=0
for name in "${targets[@]}"; do
	bin=$build/tests/fuzz/fuzz-$name
	out=$work/$name
	mkdir -p "$out/corpus"
	cp "$fuzz/corpus/$name"/* "$out/corpus/"
	options=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$out/")
	[ -f "$fuzz/$name.dict" ] && options+=(-dict="$fuzz/$name.dict")
	result=ok
	execs=0
	regressions=("$fuzz/crashes/$name"/*)
	if [ -e "${regressions[0]}" ] &&
		! "$bin" "${options[@]}" "${regressions[@]}" >"$out/regressions.log" 2>&1; then
		result="CRASH: an input of $fuzz/crashes/$name (log $out/regressions.log)"
		log=$out/regressions.log
	else
		log=$out/fuzz.log
		"$bin" "${options[@]}" -max_total_time="$secs" -print_final_stats=1 \
			"$out/corpus" >"$log" 2>&1
		rc=$?
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		if [ $rc -ne 0 ]; then
			file=$(sed -n 's/.*Test unit written to //p' "$log" | head -n 1)
			result="CRASH: ${file:-no input written, exit $rc} (log $log)"
			# Up to its crash, the runs libFuzzer last reported.
			[ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
		fi
	fi
	echo "fuzz-$name: ${execs:-0} executions, $result"
	if [ "$result" != ok ]; then
		crashed=1
		grep -m 3 -E '^==[0-9]+==ERROR|^SUMMARY|runtime error|^==[0-9]+== ERROR: libFuzzer' "$log" |
			sed 's/^/    /'
	fi
done
if [ $crashed -eq 0 ]; then
	rm -rf "$work"
fi
exit $crashed
