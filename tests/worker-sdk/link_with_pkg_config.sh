#!/bin/sh
# Builds tests/worker-sdk/uses_ev_and_msgpack.c, a plugin that calls ev_run
# and msgpack functions, with nothing but the flags of
# `pkg-config --cflags --libs plugd-worker` (the build tree's uninstalled
# .pc), then runs it. Args: BUILD_ROOT SOURCE SANITIZE (b_sanitize or none);
# $CC is the compiler.
set -eu
build_root=$1
source=$2
sanitize=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export PKG_CONFIG_PATH="$build_root/meson-uninstalled"
unset PKG_CONFIG_LIBDIR PKG_CONFIG_DISABLE_UNINSTALLED
flags=$(pkg-config --cflags --libs plugd-worker)
echo "pkg-config --cflags --libs plugd-worker: $flags"
# a sanitized build's library needs the sanitizer runtimes at the link
san=""
[ "$sanitize" = none ] || san="-fsanitize=$sanitize"
# shellcheck disable=SC2086
${CC:-cc} -std=c11 -Wall -Wextra -Werror $san -o "$work/plugin" "$source" $flags
out=$(LD_LIBRARY_PATH="$build_root/worker-sdk" PLUGD_FD= "$work/plugin" 3>&- 2>/dev/null)
if [ "$out" != linked ]; then
    echo "the plugin ran but printed: $out" >&2
    exit 1
fi
echo "linked and ran"
