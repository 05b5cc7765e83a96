#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
# The guest crates (their own workspaces, built for wasm32-wasip2) are formatted and linted too.
guests=(plugins/Cargo.toml sdk/Cargo.toml examples/plugin-template/Cargo.toml tests/guests/hostile/Cargo.toml)
for manifest in "${guests[@]}"; do
    cargo fmt --manifest-path "$manifest" --all -- --check
done
cargo clippy --workspace --all-targets --locked -- -D warnings

# The plugins the tests load, built from source (this installs the wasm32-wasip2 target).
plugins/build.sh --locked
for manifest in "${guests[@]}"; do
    cargo clippy --manifest-path "$manifest" --target wasm32-wasip2 --target-dir target/wasm \
        --all-targets --locked -- -D warnings
done

cargo test --workspace --locked
# The plugins' own logic, natively.
for manifest in plugins/Cargo.toml sdk/Cargo.toml; do
    cargo test --manifest-path "$manifest" --target-dir target/guests-native --workspace --locked
done
