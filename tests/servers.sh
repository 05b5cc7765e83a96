#!/usr/bin/env bash
# Installs the servers and tools the tests use, from Debian packages, when they are missing:
# nats-server (the NATS JetStream backend's tests), prometheus (with promtool: the alert rules'
# unit tests and the live dashboard test), systemd-analyze (package systemd, for the check of
# examples/systemd/; only the tool is run, no service), chromium with chromium-driver (the
# admin console's browser tests drive it headless through /usr/bin/chromedriver), and openssl and
# curl (the TLS tests make their certificates with openssl at test time and call the router with
# curl). As root, or with `sudo -n`; otherwise it says what to install and fails. The tests start
# their own instance on a free port and stop it; nothing here starts a server.
set -euo pipefail

# Debian puts nats-server in /usr/sbin, which is not on every user's PATH.
have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

missing=()
have nats-server || missing+=(nats-server)
{ have prometheus && have promtool; } || missing+=(prometheus)
have systemd-analyze || missing+=(systemd)
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
have openssl || missing+=(openssl)
have curl || missing+=(curl)
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "tests/servers.sh: the tests need the Debian package(s) ${missing[*]}:" >&2
    echo "  install them as root (apt-get install ${missing[*]}), or run this script as root" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/servers.sh: no apt-get here; install ${missing[*]} and put it on PATH" >&2
    exit 1
fi
echo "tests/servers.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    "${as_root[@]}" apt-get update -qq >/dev/null 2>&1
    "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}
# The packages also enable system services; the tests run their own instances instead.
if command -v systemctl >/dev/null 2>&1; then
    for service in "${missing[@]}"; do
        "${as_root[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
    done
fi
