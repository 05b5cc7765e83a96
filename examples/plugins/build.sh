#!/usr/bin/env bash
# Builds every other-language example plugin (examples/plugins/<language>/build.sh) into
# DIR (default target/languages/): bot_filter_<language>.wasm each. Their toolchains come from
# PyPI and npm and are cached under target/languages/, so a second run only rebuilds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$(cd "$here/../.." && pwd)/target/languages}
mkdir -p "$dir"
for script in "$here"/*/build.sh; do
    language=$(basename "$(dirname "$script")")
    "$script" "$dir/bot_filter_$language.wasm"
done
