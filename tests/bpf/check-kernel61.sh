#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# check-kernel61.sh SRC.bpf.c -- CFLAGS...
#
# Does the datapath load on Debian 12's own kernel 6.1? Builds the object with clang-14, 15
# and 16 (the flags of bpf/meson.build, passed after --) and runs the kernel-matrix tool on
# the three with --rodata unknown (every config-dependent branch verified). The tool boots
# 6.1 under qemu; its first run downloads the kernel package from the Debian mirror.
#
# The tool is $XP_KERNEL_MATRIX, else <repo>/../shared/tools/kernel-matrix/kernel-matrix.sh,
# else /work/shared/tools/kernel-matrix/kernel-matrix.sh; exit 77 when there is none.
set -euo pipefail

src=$1
shift
[[ ${1:-} == -- ]] && shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

km=
for c in "${XP_KERNEL_MATRIX:-}" "$repo/../shared/tools/kernel-matrix/kernel-matrix.sh" \
	/work/shared/tools/kernel-matrix/kernel-matrix.sh; do
	if [[ -n $c && -x $c ]]; then
		km=$c
		break
	fi
done
if [[ -z $km ]]; then
	echo "SKIP: kernel-matrix tool not found (set XP_KERNEL_MATRIX)"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xp-k61.$$.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
objs=()
for cc in clang-14 clang-15 clang-16; do
	if ! command -v "$cc" >/dev/null; then
		echo "FAIL: $cc not found (apt-get install $cc)"
		exit 1
	fi
	"$cc" "$@" -c "$src" -o "$tmp/xproxy-$cc.o"
	objs+=("$tmp/xproxy-$cc.o")
done
echo "# $km --rodata unknown ${objs[*]##*/}"
max=${XP_INSNS_MAX:-20000}
set +e
"$km" --rodata unknown "${objs[@]}" >"$tmp/out" 2>&1
rc=$?
set -e
sed "s|$tmp/||g" "$tmp/out"
case $rc in
0) ;;
1) echo "FAIL: a program does not load on Debian's 6.1" ;;
*) echo "FAIL: kernel-matrix harness error (exit $rc)" ;;
esac
over=$(awk -v max="$max" '{ for (i = 1; i <= NF; i++) if ($i ~ /^verified_insns=/) {
	n = substr($i, 16) + 0; if (n > max) print } }' "$tmp/out" | sed "s|$tmp/||g")
if [[ -n $over ]]; then
	echo "FAIL: over $max verified instructions on 6.1:"
	echo "$over"
	((rc == 0)) && rc=1
fi
exit "$rc"
