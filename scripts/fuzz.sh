#!/usr/bin/env bash
# Runs every fuzz target briefly (Go fuzzes one target per invocation).
# FUZZTIME=10s by default; the whole run stays near 2 minutes on 2 cores.
# A failure leaves its input under the package's testdata/fuzz/FuzzXxx/:
# commit it as a regression test with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-10s}"
GO="${GO:-go}"

# package  target
targets=(
  "./leaderboard/api        FuzzQueryParams"
  "./leaderboard/api        FuzzPostStats"
  "./gateway/pm             FuzzDecodeHeader"
  "./orchestrator/payment   FuzzGateCheck"
  "./orchestrator/aimodels  FuzzParseAIModels"
  "./orchestrator           FuzzShapeResult"
  "./orchestrator           FuzzDecodeRequest"
  "./tester/probe           FuzzValidateImages"
  "./tester/probe           FuzzDecodeMedia"
  "./media/mp4              FuzzParseMP4"
  "./media/livets           FuzzDecode"
  "./media/pngfile          FuzzCheckPNG"
)

start=$(date +%s)
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "fuzz: $name ($pkg, $FUZZTIME)"
  "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -parallel=2 "$pkg" >/tmp/lpgauge-fuzz-$$.log 2>&1 || {
    cat /tmp/lpgauge-fuzz-$$.log
    rm -f /tmp/lpgauge-fuzz-$$.log
    echo "fuzz: $name FAILED"
    exit 1
  }
done
rm -f /tmp/lpgauge-fuzz-$$.log
echo "fuzz: ${#targets[@]} targets passed in $(( $(date +%s) - start ))s"
