#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# sdk-example: install the SDK from the build dir into a temporary root, build the hello
# example out of tree with its own Makefile against that SDK (pkg-config only), and load the
# result with the plugin manager (plug_check).
#
# usage: sdk-example.sh BUILD_DIR EXAMPLE_SRC_DIR PLUG_CHECK MESON
set -eu

build=$1 example=$2 plug_check=$3 meson=$4

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xp-sdk-example.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() {
	echo "sdk-example: $*" >&2
	exit 1
}

# only the SDK (header + .pc carry the "devel" tag), nothing else from the build
"$meson" install -C "$build" --no-rebuild --quiet --tags devel --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log" >&2; fail "meson install failed"; }

pc=$(find "$tmp/root" -name xproxy-plugin.pc)
[ -n "$pc" ] || fail "xproxy-plugin.pc was not installed"
[ "$(find "$tmp/root" -path '*/xproxy/plugin.h' | wc -l)" = 1 ] || fail "xproxy/plugin.h was not installed"

# that SDK and nothing else: the .pc's absolute paths are re-rooted under the install root
PKG_CONFIG_PATH=
PKG_CONFIG_LIBDIR=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$tmp/root
PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1
export PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_ALLOW_SYSTEM_CFLAGS

cflags=$(pkg-config --cflags xproxy-plugin)
case $cflags in
*"-I$tmp/root/"*) ;;
*) fail "pkg-config --cflags gives '$cflags', not the installed include dir" ;;
esac
abi=$(pkg-config --variable=pluginabi xproxy-plugin)
want_abi=$("$plug_check" --abi)
[ "$abi" = "$want_abi" ] || fail "xproxy-plugin.pc says pluginabi=$abi, plugin.h says $want_abi"
[ -n "$(pkg-config --variable=plugindir xproxy-plugin)" ] || fail "no plugindir in xproxy-plugin.pc"
pkg-config --modversion xproxy-plugin >/dev/null || fail "no version in xproxy-plugin.pc"

# out of tree: a copy of the example, nothing from the source tree on the include path
mkdir "$tmp/src"
cp "$example/hello.c" "$example/Makefile" "$tmp/src/"
make -s -C "$tmp/src" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log" >&2; fail "make failed"; }
cat "$tmp/make.log"
[ -f "$tmp/src/hello.so" ] || fail "make did not produce hello.so"

"$plug_check" "$tmp/src/hello.so" hello outbound greeting log_every connect_timeout show_client

# and `make install` puts it where the SDK says plugins go: inside the install root, because
# pkg-config re-roots variables too (checked first: never write to the real system)
plugindir=$(pkg-config --variable=plugindir xproxy-plugin)
case $plugindir in
"$tmp/root/"*) ;;
*) fail "plugindir '$plugindir' is outside the install root" ;;
esac
make -s -C "$tmp/src" install >/dev/null
[ -f "$plugindir/hello.so" ] || fail "make install did not put hello.so into $plugindir"
echo "sdk-example: ok"
