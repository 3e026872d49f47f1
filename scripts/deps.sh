#!/usr/bin/env bash
# Idempotent set-up of what the tests and the demo need on a fresh Debian
# machine. Says what it installs, skips what is already there.
#   scripts/deps.sh            everything the tests need
#   scripts/deps.sh demo       only what the demo needs (no browser, no protoc)
set -euo pipefail
cd "$(dirname "$0")/.."

want=(clickhouse-server clickhouse-client docker.io)
if [ "${1:-test}" = test ]; then
  want+=(protobuf-compiler chromium zookeeper prometheus ffmpeg)
fi

say() { printf '\033[1mdeps:\033[0m %s\n' "$*"; }

missing=()
for p in "${want[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    say "$p already installed"
  else
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  say "installing Debian packages: ${missing[*]} (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  say "installed ${missing[*]}"
fi

# The distribution package may start a system clickhouse-server; the project
# never uses it (tests and the demo run private servers on free ports).

# Docker engine: start dockerd when no engine answers.
if docker info >/dev/null 2>&1; then
  say "Docker engine answers"
else
  mkdir -p .cache
  say "no Docker engine answers: starting dockerd (log: .cache/dockerd.log)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # setsid: dockerd gets its own session, so Ctrl-C on `make demo` (which
  # signals the terminal's process group) leaves the engine running.
  $SUDO setsid nohup dockerd >.cache/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if docker info >/dev/null 2>&1; then
    say "dockerd is up"
  else
    say "dockerd did not come up; last log lines:"; tail -20 .cache/dockerd.log || true
    exit 1
  fi
fi

if [ -f go.mod ]; then
  say "downloading Go modules (go mod download)"
  go mod download
fi
say "ready"
