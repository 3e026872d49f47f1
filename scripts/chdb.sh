#!/usr/bin/env bash
# Installs libchdb (embedded ClickHouse, used by internal/chembed when built
# with -tags chdb) from the npm package @chdb/lib-linux-x64-gnu into
# .cache/chdb, unless it is already there, then prints the environment a
# chdb-tagged build, test or binary needs.
#
#   scripts/chdb.sh            install if missing; print `export …` lines
#   eval "$(scripts/chdb.sh)"  install if missing and set them in this shell
#   scripts/chdb.sh --path     print only the path of libchdb.so
#
# chdb-go loads libchdb.so at run time (purego, no cgo linking, no header):
# only CHDB_LIB_PATH is needed, at run time. A chdb-tagged binary whose
# library cannot be found stops at start-up, before main. Messages go to
# stderr so that stdout stays eval-able.
set -euo pipefail

CHDB_NPM_PACKAGE="@chdb/lib-linux-x64-gnu"
CHDB_NPM_VERSION="26.5.3"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.cache/chdb"
pkgdir="$prefix/node_modules/$CHDB_NPM_PACKAGE"
lib="$pkgdir/libchdb.so"

installed_version() {
	[ -f "$pkgdir/package.json" ] || return 0
	sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkgdir/package.json" | head -n1
}

case "$(uname -s)/$(uname -m)" in
Linux/x86_64) ;;
*)
	echo "chdb.sh: $CHDB_NPM_PACKAGE is for linux/x86_64 (glibc); this is $(uname -s)/$(uname -m)" >&2
	exit 1
	;;
esac

if [ -s "$lib" ] && [ "$(installed_version)" = "$CHDB_NPM_VERSION" ]; then
	echo "chdb.sh: libchdb $CHDB_NPM_VERSION already in $pkgdir" >&2
else
	if ! command -v npm >/dev/null 2>&1; then
		echo "chdb.sh: npm is needed to install $CHDB_NPM_PACKAGE (apt-get install npm)" >&2
		exit 1
	fi
	echo "chdb.sh: installing $CHDB_NPM_PACKAGE@$CHDB_NPM_VERSION (libchdb.so, about 550 MB) into $prefix" >&2
	mkdir -p "$prefix"
	npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
		"$CHDB_NPM_PACKAGE@$CHDB_NPM_VERSION" >&2
	if [ ! -s "$lib" ]; then
		echo "chdb.sh: $CHDB_NPM_PACKAGE installed but $lib is missing" >&2
		exit 1
	fi
fi

if [ "${1:-}" = "--path" ]; then
	echo "$lib"
	exit 0
fi
echo "export CHDB_LIB_PATH='$lib'"
