#!/usr/bin/env bash
# Builds a real kube-apiserver and kubectl from the Go module proxy, for the Kubernetes tests
# (test/kube/*, test/helpers/kube.ts) and for trying `portico controlplane --kubernetes` locally.
#
#   scripts/build-kube.sh [OUT_DIR]   (default: ${PORTICO_CACHE:-$HOME/.cache/portico}/kube/<version>/bin)
#
# Prints the bin directory on its last line. Idempotent: does nothing when both binaries exist and
# report the expected version. The cache lives outside the repo so a fresh CI clone reuses it.
# etcd is not built: tests use Debian's `etcd-server` package.
#
# Why it looks like this:
# - k8s.io/kubernetes is not meant to be used as a module: its go.mod requires its staging
#   modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and `replace`s them with
#   ./staging/src/... directories, which do not exist in the module zip. A throwaway module
#   requires k8s.io/kubernetes vX.Y.Z and replaces each of those staging modules with the
#   published vA.Y.Z (A = X-1, so v1.37.2 -> v0.37.2). The list is read from the exact go.mod
#   of the version being built, so it follows new staging modules.
# - Without -X ...gitVersion the binaries report v0.0.0-master and `kubectl version` complains
#   about the skew; the ldflags stamp the real version.
set -euo pipefail

GO="${GO:-$(command -v go || true)}"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
if [[ -z "$GO" ]]; then
  echo "build-kube: no Go toolchain found (set GO=/path/to/go or put go on PATH)" >&2
  exit 1
fi
export GOTOOLCHAIN=local

# Newest v1.37.x unless KUBE_VERSION is set (pinned default keeps CI repeatable and offline-cacheable).
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
if [[ "$KUBE_VERSION" == "latest-1.37" ]]; then
  KUBE_VERSION="$("$GO" list -m -versions k8s.io/kubernetes | tr ' ' '\n' | grep -E '^v1\.37\.[0-9]+$' | sort -V | tail -n1)"
fi
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"

CACHE="${PORTICO_CACHE:-$HOME/.cache/portico}/kube/$KUBE_VERSION"
OUT_DIR="${1:-$CACHE/bin}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

# The version outputs are read whole before matching: `cmd | grep -q` under pipefail fails when
# grep exits at its first match and the command then dies of SIGPIPE writing its next line
# (kubectl prints two), which made a cached build look missing at random.
built() {
  [[ -x "$OUT_DIR/kube-apiserver" && -x "$OUT_DIR/kubectl" ]] || return 1
  local server client
  server="$("$OUT_DIR/kube-apiserver" --version 2>/dev/null)" || return 1
  client="$("$OUT_DIR/kubectl" version --client 2>/dev/null)" || return 1
  [[ "$server" == *"$KUBE_VERSION"* && "$client" == *"$KUBE_VERSION"* ]]
}
if built; then
  echo "build-kube: already built ($("$OUT_DIR/kube-apiserver" --version))" >&2
  echo "$OUT_DIR"
  exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/portico-kube-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# k8s.io/kubernetes's own go.mod, from the module proxy (the .mod file alone, not the 60 MB zip).
KMOD="$("$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
if [[ ! -f "$KMOD" ]]; then
  echo "build-kube: could not download k8s.io/kubernetes@$KUBE_VERSION's go.mod" >&2
  exit 1
fi
# Staging modules: replaced with ./staging/src/... AND required (sample-* are replaced but not required,
# and some of those are not published, so replacing them would fail the build).
mapfile -t STAGING < <(
  comm -12 \
    <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$KMOD" | sort -u) \
    <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) v0\.0\.0$#\1#p' "$KMOD" | sort -u)
)
if ((${#STAGING[@]} < 10)); then
  echo "build-kube: found only ${#STAGING[@]} staging modules in $KMOD; its layout changed?" >&2
  exit 1
fi
GO_DIRECTIVE="$(sed -n 's/^go \(.*\)$/\1/p' "$KMOD")"

{
  echo "module portico.local/kubebuild"
  echo
  echo "go $GO_DIRECTIVE"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  echo "replace ("
  for m in "${STAGING[@]}"; do echo "	$m => $m $STAGING_VERSION"; done
  echo ")"
} >go.mod
cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF

echo "build-kube: building kube-apiserver and kubectl $KUBE_VERSION (${#STAGING[@]} staging modules at $STAGING_VERSION) with $("$GO" version) ..." >&2
start=$SECONDS
export GOFLAGS=-mod=mod CGO_ENABLED=0
"$GO" mod tidy -e >/dev/null 2>&1 || true
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
  LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for cmd in kube-apiserver kubectl; do
  "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$OUT_DIR/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
  mv -f "$OUT_DIR/$cmd.tmp" "$OUT_DIR/$cmd"
done
if ! built; then
  echo "build-kube: built binaries do not report $KUBE_VERSION:" >&2
  "$OUT_DIR/kube-apiserver" --version >&2 || true
  "$OUT_DIR/kubectl" version --client >&2 || true
  exit 1
fi
echo "build-kube: built in $((SECONDS - start))s ($("$OUT_DIR/kube-apiserver" --version))" >&2
echo "$OUT_DIR"
