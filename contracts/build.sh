#!/bin/sh
# Rebuilds contracts/build/*.abi and *.bin from contracts/src with solcjs
# (npm package solc, pinned). Usage: contracts/build.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
SOLC_VERSION=0.8.28
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --silent --no-audit --no-fund "solc@$SOLC_VERSION" >/dev/null)
mkdir -p "$here/build"
cd "$here/src"
"$work/node_modules/.bin/solcjs" --optimize --abi --bin -o "$work/out" *.sol
for c in BondingManager ServiceRegistry RoundsManager TicketBroker; do
  cp "$work/out/${c}_sol_${c}.abi" "$here/build/$c.abi"
  cp "$work/out/${c}_sol_${c}.bin" "$here/build/$c.bin"
done
