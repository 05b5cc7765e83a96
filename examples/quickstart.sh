#!/usr/bin/env bash
# Builds webhook-router, the echo sink and the bundled plugins (installing the wasm32-wasip2
# target if needed), starts the sink on 127.0.0.1:9000 (it prints every webhook it receives),
# then runs the router on examples/quickstart.toml until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

plugins/build.sh --quiet >/dev/null
cargo build --quiet -p webhook-router -p echo-sink

target/debug/echo-sink 127.0.0.1:9000 &
sink_pid=$!
trap 'kill "$sink_pid" 2>/dev/null || true' EXIT

target/debug/webhook-router serve --config examples/quickstart.toml
