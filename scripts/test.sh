#!/usr/bin/env bash
# Every check and every test of corral: formatting, lints, unit tests and the root integration tests in
# throwaway network namespaces. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the integration tests create network namespaces"; exit 1; }
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace
