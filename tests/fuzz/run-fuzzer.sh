#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# run-fuzzer.sh FUZZER SEEDS ARTIFACTS [libFuzzer options...]
#
# The `fuzz` suite's test body: fuzz for a bounded time (XP_FUZZ_SECONDS, default 20) starting
# from the committed seed corpus. New inputs go to a scratch corpus that is removed on exit, so
# the seeds in the tree never change; crash, leak and timeout reproducers go to ARTIFACTS (in
# the build tree) and stay. Any finding fails the test: libFuzzer's own exit codes (77 = error,
# 70 = timeout) would read as "skipped" or be ambiguous to meson, so every failure becomes 1.
set -eu

fuzzer=$1
seeds=$2
artifacts=$3
shift 3
name=$(basename "$fuzzer")

work=$(mktemp -d "${TMPDIR:-/tmp}/xp-fuzz-$name-$$-XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
mkdir -p "$artifacts"

rc=0
"$fuzzer" -max_total_time="${XP_FUZZ_SECONDS:-20}" -rss_limit_mb=2048 -timeout=10 \
	-error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
	-artifact_prefix="$artifacts/$name-" "$@" "$work" "$seeds" || rc=$?
if [ "$rc" -ne 0 ]; then
	echo "$name: finding (exit $rc); reproduce with: $fuzzer $artifacts/$name-<file>" >&2
	exit 1
fi
