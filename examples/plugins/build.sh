#!/usr/bin/env bash
# Builds every other-language example plugin (examples/plugins/<language>/build.sh) into
# DIR (default target/languages/): bot_filter_<language>.wasm each. Their toolchains come from
# PyPI and npm and are cached under target/languages/; a module whose sources have not changed
# since it was built is not built again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$(cd "$here/../.." && pwd)/target/languages}
mkdir -p "$dir"
for script in "$here"/*/build.sh; do
    language=$(basename "$(dirname "$script")")
    out="$dir/bot_filter_$language.wasm"
    # Up to date when nothing it is built from (its directory, the WIT contract) is newer: the
    # toolchains' output differs from build to build, and a rebuilt module is compiled again.
    if [[ -f "$out" && -z "$(find "$(dirname "$script")" "$here/../../sdk/wit" -newer "$out" -print -quit)" ]]; then
        echo "up to date: $out"
        continue
    fi
    "$script" "$out"
done
