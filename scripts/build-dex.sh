#!/usr/bin/env bash
# Builds the real Dex OIDC provider from the Go module proxy, for the integration tests and for
# `npm start` when you want real Dex instead of the built-in dev IdP (demo/devidp).
#
#   scripts/build-dex.sh [OUT_DIR]      (default: <repo>/.dex/bin, git-ignored)
#
# Produces OUT_DIR/dex and copies Dex's web assets (templates, static, themes) to OUT_DIR/../web;
# point Dex's `frontend.dir` there (test/helpers/dex.ts does). Idempotent: does nothing when
# OUT_DIR/dex exists, `dex version` runs and the web assets are there.
#
# Why it looks like this:
# - Dex's module path is github.com/dexidp/dex (no /v2), so its v2.x tags that have a go.mod are
#   not valid module versions and `go install ...@v2.x` fails. The module proxy this project can
#   reach serves only v0.6.1 and v2.13.0+incompatible (the last tag before Dex had a go.mod);
#   tags and commits after that answer "403 This module version is not available".
# - v2.13.0 predates modules, so its dependencies are resolved by Go in a throwaway module. Three
#   of them moved on incompatibly since 2018 and are pinned with `replace`:
#     google.golang.org/grpc v1.26.0        etcd v3.3 clientv3 needs the old resolver/balancer API
#     prometheus/client_golang v0.8.0       Dex calls NewProcessCollector(pid, namespace)
#     cockroachdb/cockroach-go -> ./shim    only v2.0.1 is served; Dex calls the pre-context
#                                           crdb.ExecuteTx(db, fn), so a 15-line shim provides it
#   (only Dex's SQL storage reaches the shim; Portico uses `storage: memory`).
# - Needs a C compiler (cgo): Dex's SQL storage refers to go-sqlite3 symbols that only exist
#   with cgo, so CGO_ENABLED=0 does not compile. That sqlite3 compile is most of the build time.
set -euo pipefail

DEX_VERSION="${DEX_VERSION:-v2.13.0+incompatible}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$REPO_ROOT/.dex/bin}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WEB_DIR="$(dirname "$OUT_DIR")/web"
BIN="$OUT_DIR/dex"

if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1 && [[ -f "$WEB_DIR/templates/login.html" ]]; then
  echo "dex already built: $BIN ($("$BIN" version | head -n1))"
  echo "dex web assets:    $WEB_DIR"
  exit 0
fi

GO="${GO:-$(command -v go || true)}"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
if [[ -z "$GO" ]]; then
  echo "build-dex: no Go toolchain found (set GO=/path/to/go or put go on PATH)" >&2
  exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/portico-dex-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/shim/crdb"
cat >"$WORK/shim/go.mod" <<'EOF'
module github.com/cockroachdb/cockroach-go

go 1.22
EOF
cat >"$WORK/shim/crdb/tx.go" <<'EOF'
// Package crdb provides the pre-context ExecuteTx signature that Dex v2.13 calls.
// It runs fn in one transaction without CockroachDB's retry loop.
package crdb

import "database/sql"

// ExecuteTx runs fn in a transaction, committing on success and rolling back on error.
func ExecuteTx(db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
EOF

# Versions below are what Go resolved on 2026-11-25; pinning them keeps the build repeatable.
cat >"$WORK/go.mod" <<EOF
module portico.local/dexbuild

go 1.22

require github.com/dexidp/dex $DEX_VERSION

require (
	github.com/beevik/etree v1.8.1 // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cockroachdb/cockroach-go v2.0.1+incompatible // indirect
	github.com/coreos/etcd v3.3.27+incompatible // indirect
	github.com/coreos/go-oidc v2.5.0+incompatible // indirect
	github.com/coreos/go-semver v0.3.1 // indirect
	github.com/coreos/go-systemd v0.0.0-20191104093116-d3cd4ed1dbcf // indirect
	github.com/coreos/pkg v0.0.0-20240122114842-bbd7aa9bf6fb // indirect
	github.com/felixge/httpsnoop v1.1.0 // indirect
	github.com/ghodss/yaml v1.0.0 // indirect
	github.com/go-sql-driver/mysql v1.10.1 // indirect
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/golang/protobuf v1.5.4 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/gorilla/handlers v1.5.2 // indirect
	github.com/gorilla/mux v1.8.1 // indirect
	github.com/grpc-ecosystem/go-grpc-prometheus v1.2.0 // indirect
	github.com/gtank/cryptopasta v0.0.0-20170601214702-1f550f6f2f69 // indirect
	github.com/lib/pq v1.12.3 // indirect
	github.com/mattn/go-sqlite3 v1.14.53 // indirect
	github.com/pquerna/cachecontrol v0.2.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect (replaced below)
	github.com/prometheus/common v0.73.1 // indirect
	github.com/prometheus/procfs v0.23.0 // indirect
	github.com/russellhaering/goxmldsig v1.6.1 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/oauth2 v0.38.0 // indirect
	google.golang.org/grpc v1.85.0 // indirect (replaced below)
	gopkg.in/asn1-ber.v1 v1.0.0-20181015200546-f715ec2f112d // indirect
	gopkg.in/go-jose/go-jose.v2 v2.6.3 // indirect
	gopkg.in/ldap.v2 v2.5.1 // indirect
	gopkg.in/square/go-jose.v2 v2.6.0 // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
)

replace google.golang.org/grpc => google.golang.org/grpc v1.26.0

replace github.com/prometheus/client_golang => github.com/prometheus/client_golang v0.8.0

replace github.com/cockroachdb/cockroach-go => ./shim
EOF

plain_version="${DEX_VERSION%+incompatible}"
echo "build-dex: building github.com/dexidp/dex/cmd/dex@$DEX_VERSION with $("$GO" version) ..."
start=$SECONDS
(
  cd "$WORK"
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local
  "$GO" build -trimpath \
    -ldflags "-s -w -X github.com/dexidp/dex/version.Version=$plain_version" \
    -o "$BIN.tmp" github.com/dexidp/dex/cmd/dex
)
mv -f "$BIN.tmp" "$BIN"

# Dex renders its login form from frontend.dir; take the assets from the exact module version built.
MODDIR="$(cd "$WORK" && GOFLAGS=-mod=mod "$GO" list -m -f '{{.Dir}}' github.com/dexidp/dex)"
rm -rf "$WEB_DIR"
mkdir -p "$WEB_DIR"
cp -R "$MODDIR/web/." "$WEB_DIR/"
chmod -R u+w "$WEB_DIR" # the module cache is read-only

echo "build-dex: built in $((SECONDS - start))s"
echo "dex binary:        $BIN ($("$BIN" version | head -n1))"
echo "dex web assets:    $WEB_DIR"
