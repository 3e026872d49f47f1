#!/bin/sh
# Regenerates schemas/proto/lpnet from lp_rpc.proto with pinned generators.
# Usage: schemas/proto/gen.sh [outdir]   (default: schemas/proto/lpnet)
# Needs protoc (Debian: apt-get install -y protobuf-compiler) and Go.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/lpnet}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
# Pinned so the committed code only changes when we bump these on purpose.
GOBIN=$bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN=$bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.1
mkdir -p "$out"
PATH=$bin:$PATH protoc -I "$here" \
  --go_out="$out" --go_opt=paths=source_relative \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
  "$here/lp_rpc.proto"
