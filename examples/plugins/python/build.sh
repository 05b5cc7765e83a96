#!/usr/bin/env bash
# Builds the Python example (bot_filter.py) into a component: installs componentize-py from
# PyPI into a virtualenv under target/languages/ the first time, then runs it on the WIT
# contract (sdk/wit). Writes OUT (default target/languages/bot_filter_python.wasm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/target/languages/bot_filter_python.wasm}
version=0.25.1
venv=$root/target/languages/python-venv
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
fi
mkdir -p "$(dirname "$out")"
"$venv/bin/componentize-py" -d "$root/sdk/wit" -w filter componentize -p "$here" bot_filter \
    -o "$out" >/dev/null
echo "built $out"
