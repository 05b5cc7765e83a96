#!/usr/bin/env bash
# Regenerates bindings/ from the plugin contract (sdk/wit, world `filter`) with wit-bindgen's C
# generator. Run it after the contract changes; the suite does not (it builds from the committed
# bindings). Needs the wit-bindgen CLI: cargo install wit-bindgen-cli --version 0.63.0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$here/bindings"
wit-bindgen c "$here/../../../sdk/wit" --world filter --out-dir "$here/bindings"
