#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for `walletpipe up` (no Docker needed):
# Java 17 and Maven (the Kafka broker runs from Maven Central jars), PostgreSQL's server
# binaries (a throw-away cluster is made with initdb), and the project's virtualenv.
# Idempotent and non-interactive: it installs only what is missing, so re-running is cheap.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

java_major() {
  # `java -version` prints e.g.: openjdk version "17.0.15" 2025-04-15
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

missing=()
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  missing+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null 2>&1 || missing+=(maven)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ! -x "$REPO/.venv/bin/python" ] && ! python3 -m venv --help >/dev/null 2>&1; then
  missing+=(python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]} ..."
  timeout 900 $SUDO apt-get update -q
  timeout 1800 $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "bootstrap: java 17, maven and postgresql are already installed"
fi

if [ ! -x "$REPO/.venv/bin/python" ]; then
  echo "bootstrap: creating $REPO/.venv ..."
  python3 -m venv "$REPO/.venv"
fi
# The analytics sink's native record decoder (Rust, native/sink_decoder), built with cargo
# through maturin; rebuilt only when its sources change (their hash is kept in the venv).
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "bootstrap: installing cargo (Rust, for the sink's native decoder) ..."
  timeout 900 $SUDO apt-get update -q
  timeout 1800 $SUDO apt-get install -y -q --no-install-recommends cargo rustc
fi
native="$REPO/native/sink_decoder"
native_hash="$(cd "$native" && cat Cargo.toml Cargo.lock pyproject.toml src/*.rs | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$REPO/.venv/.sink_decoder.hash" 2>/dev/null)" != "$native_hash" ]; then
  echo "bootstrap: building the sink's native decoder (cargo, about a minute) ..."
  timeout 1800 "$REPO/.venv/bin/pip" install -q --disable-pip-version-check "$native"
  echo "$native_hash" >"$REPO/.venv/.sink_decoder.hash"
fi

# Always: cheap when everything is installed, and it picks up dependencies added since.
echo "bootstrap: installing the project into $REPO/.venv ..."
timeout 1800 "$REPO/.venv/bin/pip" install -q --disable-pip-version-check -e "$REPO[dev]"

# Headless Chromium for the dashboard test (tests/e2e/test_dashboard.py screenshots it).
if [ ! -x /usr/bin/chromium ]; then
  echo "bootstrap: installing chromium (headless, for the dashboard test) ..."
  timeout 900 $SUDO apt-get update -q
  timeout 1800 $SUDO apt-get install -y -q --no-install-recommends chromium
fi

echo "bootstrap: done. Next: .venv/bin/walletpipe up   (or: .venv/bin/python -m infra.stack up)"
