#!/usr/bin/env bash
# Builds the C example (bot_filter.c) into a component: zig from PyPI (package `ziglang`, in a
# virtualenv under target/languages/) compiles it with the bindings in bindings/ for
# wasm32-wasi, and jco from npm (under target/languages/jco) adapts the module to the component
# model (WASI preview 1 → 0.2, reactor). Both are installed the first time. Writes OUT (default
# target/languages/bot_filter_c.wasm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/target/languages/bot_filter_c.wasm}
zig_version=0.17.1
jco_version=1.35.0
tools=$root/target/languages
venv=$tools/zig-venv
if ! "$venv/bin/python" -m ziglang version 2>/dev/null | grep -qx "$zig_version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$zig_version"
fi
jco=$tools/jco/node_modules/.bin/jco
if ! "$jco" --version 2>/dev/null | grep -qx "$jco_version"; then
    npm install --silent --no-audit --no-fund --prefix "$tools/jco" "@bytecodealliance/jco@$jco_version"
fi
mkdir -p "$(dirname "$out")"
core=$(mktemp --suffix=.wasm)
trap 'rm -f "$core"' EXIT
# A 256 KiB stack (zig's default is 16 MiB, over a plugin's default memory limit); stripped.
"$venv/bin/python" -m ziglang cc --target=wasm32-wasi -mexec-model=reactor -O2 -s -Wall -Werror \
    -Wl,-z,stack-size=262144 -o "$core" \
    "$here/bot_filter.c" "$here/bindings/filter.c" "$here/bindings/filter_component_type.o"
"$jco" new "$core" --wasi-reactor -o "$out" >/dev/null
echo "built $out"
