#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# run.sh - every test xproxy has, on a fresh Debian 12 machine, as root:
#   installs the Debian packages, builds, and runs the unit, bpf, netns and fuzz suites
#   (the bpf suite includes the clang 14/15/16 build-and-load check and the kernel 6.1 check).
# Usage: sudo tests/run.sh [meson test args...]     (e.g. --suite unit)
# Env:   XP_BUILD=build-test  build directory
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source tests/deps.sh
# shellcheck disable=SC2086
xp_install_deps $XP_BUILD_PKGS $XP_TEST_PKGS || exit 1

BUILD=${XP_BUILD:-build-test}
if [ -d "$BUILD" ]; then
	meson setup --reconfigure "$BUILD" >/dev/null || exit 1
else
	meson setup "$BUILD" >/dev/null || exit 1
fi
ninja -C "$BUILD" || exit 1

# CI: each libFuzzer target runs 10 s from its seeds (developers get 20 s by default); with
# ~15 targets run one after another this keeps the whole run inside CI's time budget
[ "${CI:-}" = true ] && export XP_FUZZ_SECONDS=${XP_FUZZ_SECONDS:-10}

args=("$@")
[ ${#args[@]} = 0 ] && args=(--suite unit --suite bpf --suite netns --suite fuzz)
out=$(mktemp)
meson test -C "$BUILD" --print-errorlogs --num-processes 2 "${args[@]}" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}

# Skipped is not passed: say loudly what did not run.
if grep -qE '^ *[0-9]+/[0-9]+ .* SKIP ' "$out"; then
	echo
	echo "== SKIPPED (these did NOT pass; $BUILD/meson-logs/testlog.txt says why):"
	grep -E '^ *[0-9]+/[0-9]+ .* SKIP ' "$out"
fi
rm -f "$out"
exit $rc
