#!/usr/bin/env bash
# Installs the client component of BUILD_DIR into a temporary prefix, then
# configures, builds and runs a consumer project that finds it with
# find_package(weightd) and links weightd::client.
#   install_consumer_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1; source=$2
work=$(mktemp -d /tmp/weightd-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" --component client >/dev/null
test -f "$work/prefix/lib/cmake/weightd/weightdConfig.cmake" \
  || { echo "no weightdConfig.cmake under $work/prefix/lib/cmake/weightd"; exit 1; }
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S "$source/tests/install/consumer" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" "${launcher[@]}" >"$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/build/consumer" "$work/no-daemon.sock"
