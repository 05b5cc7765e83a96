#!/usr/bin/env bash
# The benchmark suite: builds the plugins (adding the wasm32-wasip2 target if missing), runs the
# plugin-overhead bench (criterion), then the load benchmarks (wrk, installed with apt-get if
# missing), and prints one table in which every row has a baseline measured in the same run.
# Loopback only; bounded in time and count. Extra arguments go to bench-suite (see --help).
# Results and how to read them: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=(cargo run --release -p webhook-router-tests --bin bench-suite --)
for arg in "$@"; do
    if [[ "$arg" == "-h" || "$arg" == "--help" ]]; then
        exec "${suite[@]}" --help
    fi
done

plugins/build.sh
# nats-server for the NATS rows (skipped, and said so, if it cannot be installed).
tests/servers.sh || true
mkdir -p target/bench
summary="$PWD/target/bench/plugin_overhead.tsv"
PLUGIN_OVERHEAD_SUMMARY="$summary" cargo bench -p webhook-router --bench plugin_overhead
"${suite[@]}" --plugin-overhead "$summary" "$@"
