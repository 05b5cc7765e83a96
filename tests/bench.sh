#!/usr/bin/env bash
# The benchmark suite: builds the plugins (adding the wasm32-wasip2 target if missing), runs the
# plugin-overhead bench (criterion), then the load benchmarks (wrk, installed with apt-get if
# missing; nginx for the relay row, installed as the servers are), and prints one table in which
# every row has a baseline measured in the same run.
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
# nginx for the relay row (skipped, and said so, if it cannot be installed). Debian enables its
# service on install; the suite runs its own instance on a free port instead.
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    if [[ $(id -u) -eq 0 ]]; then as_root=(); else as_root=(sudo -n); fi
    export DEBIAN_FRONTEND=noninteractive
    if "${as_root[@]}" apt-get install -y --no-install-recommends nginx >/dev/null 2>&1 ||
        { "${as_root[@]}" apt-get update -qq >/dev/null 2>&1 &&
            "${as_root[@]}" apt-get install -y --no-install-recommends nginx >/dev/null 2>&1; }; then
        "${as_root[@]}" systemctl disable --now nginx >/dev/null 2>&1 || true
    else
        echo "tests/bench.sh: cannot install nginx; the relay row is skipped" >&2
    fi
fi
# The router binary for the rows run in a router process (logging at info, the soak).
cargo build --release -p webhook-router --bin webhook-router
mkdir -p target/bench
summary="$PWD/target/bench/plugin_overhead.tsv"
PLUGIN_OVERHEAD_SUMMARY="$summary" cargo bench -p webhook-router --bench plugin_overhead
"${suite[@]}" --plugin-overhead "$summary" "$@"
