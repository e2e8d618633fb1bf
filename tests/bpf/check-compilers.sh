#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# check-compilers.sh XP_BPFLOAD SRC.bpf.c -- CFLAGS...
#
# Build the datapath object with clang-14, clang-15 and clang-16 using exactly the flags of
# bpf/meson.build (meson passes them after --), load each on the running kernel and print
# verified_insns per program and compiler, for the config the daemon sets and for an
# unknown (non-constant) config. Fails when a compiler is missing, an object does not build,
# a program does not load, or any program needs more than XP_INSNS_MAX (20000) instructions.
# Exit 77 only without the privileges to load BPF.
set -euo pipefail

loader=$1 src=$2
shift 2
[[ ${1:-} == -- ]] && shift
max=${XP_INSNS_MAX:-20000}
compilers=(clang-14 clang-15 clang-16)

if ((EUID != 0)); then
	echo "SKIP: loading BPF needs root (CAP_BPF, CAP_NET_ADMIN)"
	exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/xp-compilers.$$.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail=0
for cc in "${compilers[@]}"; do
	if ! command -v "$cc" >/dev/null; then
		echo "FAIL: $cc not found (apt-get install $cc)"
		fail=1
		continue
	fi
	if ! "$cc" "$@" -c "$src" -o "$tmp/$cc.o" 2>"$tmp/$cc.err"; then
		echo "FAIL: $cc cannot build $src:"
		cat "$tmp/$cc.err"
		fail=1
		continue
	fi
	for mode in daemon unknown; do
		if ! "$loader" -m "$max" -r "$mode" -l "$cc/$mode" "$tmp/$cc.o" >"$tmp/$cc.$mode" \
			2>"$tmp/$cc.$mode.err"; then
			rc=$?
			cat "$tmp/$cc.$mode" "$tmp/$cc.$mode.err"
			((rc == 77)) && exit 77
			echo "FAIL: $cc ($mode config) on $(uname -r)"
			fail=1
		fi
	done
done

# table: program x compiler/config
echo "verified_insns on $(uname -r) (limit $max)"
{
	printf 'program'
	for cc in "${compilers[@]}"; do printf ' %s %s' "${cc#clang-}/daemon" "${cc#clang-}/unknown"; done
	echo
	progs=$(cat "$tmp"/*.daemon "$tmp"/*.unknown 2>/dev/null | awk '{print $2}' | awk '!s[$0]++')
	for p in $progs; do
		printf '%s' "$p"
		for cc in "${compilers[@]}"; do
			for mode in daemon unknown; do
				v=$(awk -v p="$p" '$2 == p { sub(/verified_insns=/, "", $3); print $3 }' \
					"$tmp/$cc.$mode" 2>/dev/null)
				printf ' %s' "${v:-FAILED}"
			done
		done
		echo
	done
} | column -t
exit $fail
