#!/bin/sh
# Build the TwoKey vCenter simulator lab (lab/vcsim) offline, against the
# govmomi source shipped by Debian's golang-github-vmware-govmomi-dev.
#
# usage: scripts/build-vcsim.sh [OUT]     (default OUT: .cache/bin/twokey-vcsim)
#
# Rebuilds only when the launcher source, the Go toolchain or the govmomi
# source changed (a hash stamp is kept next to the binary in OUT.stamp).
# Environment: GOCODE (default /usr/share/gocode) is the GOPATH holding the
# Debian Go sources.
set -eu

ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
SRC="$ROOT/lab/vcsim"
OUT=${1:-"$ROOT/.cache/bin/twokey-vcsim"}
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
GOCODE=${GOCODE:-/usr/share/gocode}
GOVMOMI="$GOCODE/src/github.com/vmware/govmomi"

die() { echo "build-vcsim: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 ||
    die "the Go toolchain is missing (install the Debian package golang-go)"
[ -d "$GOVMOMI/simulator" ] ||
    die "govmomi source not found under $GOVMOMI (install the Debian package golang-github-vmware-govmomi-dev, or set GOCODE)"
[ -d "$GOCODE/src/github.com/google/uuid" ] ||
    die "github.com/google/uuid source not found under $GOCODE (install golang-github-google-uuid-dev)"
[ -f "$SRC/main.go" ] || die "launcher source $SRC/main.go is missing"

# What the binary depends on: our source, the toolchain, the govmomi tree.
stamp=$(
    {
        cat "$SRC"/*.go
        go version
        # file list + sizes + mtimes of the Debian sources (cheap, no content read)
        find "$GOVMOMI" "$GOCODE/src/github.com/google/uuid" -name '*.go' \
            -exec stat -c '%n %s %Y' {} + 2>/dev/null | sort
    } | sha256sum | cut -d' ' -f1
)

if [ -x "$OUT" ] && [ -f "$OUT.stamp" ] && [ "$(cat "$OUT.stamp")" = "$stamp" ]; then
    exit 0
fi

mkdir -p "$(dirname "$OUT")" "$ROOT/.cache/go-build"
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT INT TERM

echo "build-vcsim: building $OUT" >&2
(
    cd "$SRC"
    # GOPATH mode: resolve imports from the Debian source tree, never the network.
    GO111MODULE=off GOPATH="$GOCODE" GOFLAGS= GOPROXY=off \
        GOCACHE="${GOCACHE:-$ROOT/.cache/go-build}" CGO_ENABLED=0 \
        go build -o "$tmp" .
) || die "go build failed"

mv -f "$tmp" "$OUT"
printf '%s\n' "$stamp" >"$OUT.stamp"
echo "build-vcsim: built $OUT" >&2
