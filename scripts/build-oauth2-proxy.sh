#!/usr/bin/env bash
# Builds oauth2-proxy from the Go module proxy, for the benchmark's comparison stack
# (bench/scenarios/oauth2-proxy.ts: nginx auth_request → oauth2-proxy → Dex).
#
#   scripts/build-oauth2-proxy.sh [OUT_DIR]   (default: ${PORTICO_CACHE:-$HOME/.cache/portico}/oauth2-proxy/<version>)
#
# Prints the binary's path on its last line. Idempotent: does nothing when the binary exists
# and `oauth2-proxy --version` runs. The build cache lives outside the repo, so it builds once
# per machine.
set -euo pipefail

VERSION="${OAUTH2_PROXY_VERSION:-v7.15.6}"
CACHE="${PORTICO_CACHE:-$HOME/.cache/portico}"
OUT_DIR="${1:-$CACHE/oauth2-proxy/$VERSION}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
BIN="$OUT_DIR/oauth2-proxy"

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
  echo "oauth2-proxy already built: $("$BIN" --version 2>&1 | head -n1)" >&2
  echo "$BIN"
  exit 0
fi

GO="${GO:-$(command -v go || true)}"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
if [[ -z "$GO" ]]; then
  echo "build-oauth2-proxy: no Go toolchain found (set GO=/path/to/go or put go on PATH)" >&2
  exit 1
fi

echo "build-oauth2-proxy: go install github.com/oauth2-proxy/oauth2-proxy/v7@$VERSION with $("$GO" version) ..." >&2
start=$SECONDS
# GOTOOLCHAIN=auto would download a toolchain if the module asked for a newer Go; local refuses loudly instead.
GOBIN="$OUT_DIR" GOTOOLCHAIN=local CGO_ENABLED=0 "$GO" install -trimpath -ldflags "-s -w -X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$VERSION" \
  "github.com/oauth2-proxy/oauth2-proxy/v7@$VERSION" >&2
echo "build-oauth2-proxy: built in $((SECONDS - start))s" >&2
echo "$BIN"
