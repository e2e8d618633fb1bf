#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# run.sh BENCH PLUGIN_DIR CAPTURE_SCRIPT [bench options...]
# Record real clients' ClientHellos and HTTP requests (tests/unit/capture_hellos.py) into a
# scratch directory, then bench the tls and http_sniff plugins on them.
set -eu
bench=$1 plugins=$2 capture=$3
shift 3
work=$(mktemp -d "${TMPDIR:-/tmp}/xp-bench-sniff-XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$capture" "$work"
files() { awk -F'\t' -v k="$1" -v d="$work" '$2 == k { print d "/" $1 }' "$work/manifest.tsv"; }
# shellcheck disable=SC2046 # one argument per sample file; the names have no blanks
"$bench" "$@" "$plugins/tls.so" $(files tls)
echo
# shellcheck disable=SC2046
"$bench" "$@" -p 80 "$plugins/http_sniff.so" $(files http)
echo
# QUIC: the RFC 9001 and RFC 9369 client Initials (one 1200-byte datagram each), kept next to
# the quic unit test's data (tests/unit/data/quic, beside the capture script)
quic_data=$(dirname "$capture")/data/quic
"$bench" "$@" -u "$plugins/quic.so" "$quic_data/rfc9001_client_initial.bin" \
	"$quic_data/rfc9369_client_initial.bin"
