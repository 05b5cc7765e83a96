#!/usr/bin/env bash
# Builds the JavaScript example (bot_filter.js) into a component with componentize-js, installed
# from npm under target/languages/npm the first time. Writes OUT (default
# target/languages/bot_filter_javascript.wasm). The default build, as a plugin author gets it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/target/languages/bot_filter_javascript.wasm}
version=0.23.0
tools=$root/target/languages/componentize-js
componentize=$tools/node_modules/.bin/componentize-js
if ! grep -q "\"version\": \"$version\"" "$tools/node_modules/@bytecodealliance/componentize-js/package.json" 2>/dev/null; then
    npm install --silent --no-audit --no-fund --prefix "$tools" "@bytecodealliance/componentize-js@$version"
fi
mkdir -p "$(dirname "$out")"
"$componentize" --wit "$root/sdk/wit" --world-name filter --out "$out" "$here/bot_filter.js" >/dev/null
echo "built $out"
