#!/usr/bin/env bash
# Builds corral's cargo-fuzz targets (fuzz/) and runs each for a bounded time, then prints the executions
# per target from libFuzzer's final stats line. A crash stops that target; its input is in
# fuzz/artifacts/<target>/ and the panic in fuzz/logs/<target>.log. Exits non-zero if any target crashed.
#
#   scripts/fuzz.sh                    every target, FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=30 scripts/fuzz.sh result cni_args
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...). On a stable toolchain RUSTC_BOOTSTRAP=1
# lets it through; set FUZZ_SANITIZER=none to build without AddressSanitizer (faster; corral has no unsafe
# code of its own). Needs `cargo install cargo-fuzz` (installed here if missing) and a C++ compiler.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-address}
all=(netconf conflist result cni_args ipam_store)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s "$sanitizer"

mkdir -p logs
crashed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Seeds are inputs worth keeping: valid configs and results of every version, store files.
  cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
  echo "== $t: ${seconds}s"
  status=0
  cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -dict=json.dict -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
    >"logs/$t.log" 2>&1 || status=$?
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "logs/$t.log" | grep -oE '[0-9]+$' || true)
  [ -n "$runs" ] || runs=$(grep -oE '^Done [0-9]+ runs' "logs/$t.log" | grep -oE '[0-9]+' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' "logs/$t.log" | tail -1 || true)
  corpus=$(find "corpus/$t" -type f | wc -l)
  if [ "$status" -ne 0 ]; then
    crashed+=("$t")
    summary+=("$(printf '%-11s %12s execs  %-10s corpus %5s  CRASH (fuzz/logs/%s.log, fuzz/artifacts/%s/)' \
      "$t" "$runs" "$cov" "$corpus" "$t" "$t")")
    grep -E "panicked at|^Error|SUMMARY" "logs/$t.log" | head -3 || true
  else
    summary+=("$(printf '%-11s %12s execs  %-10s corpus %5s  ok' "$t" "$runs" "$cov" "$corpus")")
  fi
done

echo
echo "== fuzz summary (${seconds}s per target, sanitizer: $sanitizer)"
printf '%s\n' "${summary[@]}"
if [ ${#crashed[@]} -gt 0 ]; then
  echo "crashed: ${crashed[*]}"
  exit 1
fi
