#!/usr/bin/env bash
# Builds every WebAssembly plugin of the repository for wasm32-wasip2, in release mode:
# the bundled plugins (plugins/), the plugin template (examples/plugin-template/) and the
# test-only hostile guest (tests/guests/hostile/), into one shared target directory:
#
#   target/wasm/wasm32-wasip2/release/<crate>.wasm
#
# Usage: plugins/build.sh [extra cargo build args, e.g. --locked]   (from any directory)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target=wasm32-wasip2
target_dir="$root/target/wasm"
out="$target_dir/$target/release"

if ! rustup target list --installed | grep -qx "$target"; then
    echo "installing the $target target" >&2
    rustup target add "$target"
fi

# The guest workspace (bundled plugins, SDK, hostile guest) and the standalone template: the same
# release profile and target directory, so their shared dependencies compile once.
manifests=(
    "$root/plugins/Cargo.toml"
    "$root/examples/plugin-template/Cargo.toml"
)
for manifest in "${manifests[@]}"; do
    echo "building ${manifest#"$root/"}" >&2
    cargo build --release --target "$target" --target-dir "$target_dir" \
        --manifest-path "$manifest" --workspace "$@"
done

modules=(event_filter json_map slack_notify redact route_by_field plugin_template hostile)
status=0
for module in "${modules[@]}"; do
    file="$out/$module.wasm"
    # A component starts with "\0asm" and version/layer 0d 00 01 00 (a core module: 01 00 00 00).
    if [[ ! -f "$file" ]]; then
        echo "missing: $file" >&2
        status=1
    elif [[ "$(head -c 8 "$file" | od -An -tx1 | tr -d ' \n')" != "0061736d0d000100" ]]; then
        echo "not a component: $file" >&2
        status=1
    else
        echo "$file"
    fi
done
exit "$status"
