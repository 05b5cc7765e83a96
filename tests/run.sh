#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the WebAssembly guests, then every test.
#
# Each crate is compiled once per profile: clippy runs as the compiler's wrapper inside the builds
# (exactly what `cargo clippy` does, with `cargo build`/`cargo test --no-run` in place of
# `cargo check`), so lints cost no second pass over the dependencies. The guests are built for
# wasm32-wasip2 once, and the tests load them from $WEBHOOK_ROUTER_WASM_DIR instead of building
# them again. At the end: one line per stage with its seconds, and the plain total of tests.
# Stage times and why they are what they are: docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

logs="$root/target/test-logs"
mkdir -p "$logs"
passed=0
failed=0
summary=()
current=""
current_started=0

# Prints the stage table and the total; runs on every exit, so a red run says where it stopped.
finish() {
    local status=$?
    # A run that stops early does not leave the background build of the languages running.
    if [[ -n "${languages_pid:-}" ]] && kill -0 "$languages_pid" 2>/dev/null; then
        kill "$languages_pid" 2>/dev/null || true
    fi
    if [[ -n "${servers_pid:-}" ]] && kill -0 "$servers_pid" 2>/dev/null; then
        kill "$servers_pid" 2>/dev/null || true
    fi
    if [[ -n "${beside_pid:-}" ]] && kill -0 "$beside_pid" 2>/dev/null; then
        kill "$beside_pid" 2>/dev/null || true
    fi
    if [[ -n "$current" ]]; then
        summary+=("$(printf 'stage %-14s %4d s  FAILED' "$current" $((SECONDS - current_started)))")
    fi
    echo
    printf '%s\n' "${summary[@]}"
    printf 'stage %-14s %4d s\n' total "$SECONDS"
    echo "suite: $passed passed, $failed failed"
    exit "$status"
}
trap finish EXIT

stage() {
    current=$1
    current_started=$SECONDS
    echo "=== stage $current" >&2
}

end_stage() {
    summary+=("$(printf 'stage %-14s %4d s' "$current" $((SECONDS - current_started)))")
    current=""
}

# Adds up the `test result:` lines of a cargo test log.
count_tests() {
    local p f
    while read -r p f; do
        passed=$((passed + p))
        failed=$((failed + f))
    done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$1")
}

# cargo test, its output kept to count the results, even when some fail.
run_tests() {
    local log=$1
    shift
    local status=0
    cargo test --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
    count_tests "$log"
    return "$status"
}

# Clippy as the compiler wrapper of every build below: workspace members are linted while they are
# compiled, dependencies are compiled once. CLIPPY_ARGS is how cargo-clippy passes `-D warnings`.
rustup component add clippy rustfmt >/dev/null 2>&1 || true
clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

# The servers the tests start for themselves (nats-server, prometheus), installed from Debian
# packages when missing: downloads, so they run in the background from the start, beside every
# build, and host-test waits for them (stage servers).
servers_log="$logs/servers.log"
servers_took="$logs/servers.seconds"
rm -f "$servers_took"
(
    started=$(date +%s)
    tests/servers.sh
    echo $(($(date +%s) - started)) >"$servers_took"
) >"$servers_log" 2>&1 &
servers_pid=$!

stage fmt
cargo fmt --all -- --check
# The guest crates and the journal-store benchmark (their own workspaces) are formatted too.
guests=(plugins/Cargo.toml examples/plugin-template/Cargo.toml)
for manifest in "${guests[@]}" tests/journal-bench/Cargo.toml; do
    cargo fmt --manifest-path "$manifest" --all -- --check
done
end_stage

# The plugins, the template, the SDK and the hostile guest for wasm32-wasip2 (this installs the
# target), linted as they compile; the tests load them from here.
stage guests-wasm
plugins/build.sh --locked --quiet >/dev/null
export WEBHOOK_ROUTER_WASM_DIR="$root/target/wasm/wasm32-wasip2/release"
end_stage

# The example plugins in other languages (examples/plugins/<language>/build.sh), their
# toolchains from PyPI and npm, cached under target/languages/; the tests run them on the
# GitHub fixtures (router/tests/languages.rs). Mostly downloads and single-threaded tools, so
# they run in the background beside the Rust builds below, and host-test waits for them.
languages_log="$logs/languages.log"
languages_took="$logs/languages.seconds"
rm -f "$languages_took"
(
    started=$(date +%s)
    nice -n 10 examples/plugins/build.sh "$root/target/languages"
    echo $(($(date +%s) - started)) >"$languages_took"
) >"$languages_log" 2>&1 &
languages_pid=$!
export WEBHOOK_ROUTER_LANGUAGES_DIR="$root/target/languages"

# The guests' logic, natively: unit tests of every guest crate, linted as they compile.
stage guests-test
for manifest in "${guests[@]}"; do
    run_tests "$logs/guests-$(basename "$(dirname "$manifest")").log" \
        --manifest-path "$manifest" --target-dir target/guests-native --workspace --locked
done
end_stage

# The journal-store benchmark (its own workspace, run by hand): linted only, it has no tests.
stage bench-lint
cargo clippy --manifest-path tests/journal-bench/Cargo.toml --target-dir target/journal-bench \
    --locked --quiet -- -D warnings
end_stage

# The host workspace: every target built (and linted) once, then the tests run.
stage host-build
cargo test --workspace --all-targets --locked --no-run
end_stage

# Waits for a stage started in the background (its pid $1, its log $2, the file with its
# seconds $3, what it ran $4, the verb of its line $5) and shows its log; fails as it failed.
join_background() {
    local status=0
    wait "$1" || status=$?
    cat "$2" >&2
    if [[ $status -ne 0 ]]; then
        echo "$4 failed (exit $status); its output is above" >&2
        exit "$status"
    fi
    summary+=("$(printf 'stage %-14s %4d s  (%s beside the stages above in %s s)' "$current" \
        $((SECONDS - current_started)) "$5" "$(cat "$3")")")
    current=""
}

# The languages' build, started beside guests-test: how long host-test waited for it, and how
# long it took in the background.
stage languages
join_background "$languages_pid" "$languages_log" "$languages_took" examples/plugins/build.sh built
languages_pid=""

# The servers' install, started first: how long host-test waited for it, and how long it took.
stage servers
join_background "$servers_pid" "$servers_log" "$servers_took" tests/servers.sh installed
servers_pid=""

# Two lanes at once. The NATS binary spends most of its time waiting on the servers and
# routers it starts, at a fraction of a core, and the languages binary mostly compiles the
# Python and JavaScript components into the empty plugin cache: together about as long as
# every other test target, so they run beside them instead of after them. Each lane runs its
# binaries one after the other, as `cargo test` does; the doc tests go last.
stage host-test
beside=(nats languages)
rest=()
for target in router/tests/*.rs router/tests/*/main.rs tests/tests/*.rs tests/tests/*/main.rs; do
    [[ -e $target ]] || continue
    name=${target%/main.rs}
    name=$(basename "${name%.rs}")
    [[ " ${beside[*]} " == *" $name "* ]] || rest+=(--test "$name")
done
beside_status=0
cargo test --no-fail-fast --workspace --locked "${beside[@]/#/--test=}" \
    >"$logs/host-beside.log" 2>&1 &
beside_pid=$!
host_status=0
run_tests "$logs/host.log" --workspace --locked --lib --bins "${rest[@]}" || host_status=$?
wait "$beside_pid" || beside_status=$?
beside_pid=""
cat "$logs/host-beside.log"
count_tests "$logs/host-beside.log"
run_tests "$logs/host-doc.log" --workspace --locked --doc || host_status=$?
[[ $host_status -eq 0 && $beside_status -eq 0 ]] || exit 1
end_stage
