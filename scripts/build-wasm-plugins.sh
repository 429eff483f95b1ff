#!/usr/bin/env bash
# Builds the Wasm test plugins from real SDKs, and the OCI tools the tests push them with.
#
#   scripts/build-wasm-plugins.sh            (outputs under ${PORTICO_CACHE:-$HOME/.cache/portico}/wasm)
#
# Outputs (never inside the repo):
#   wasm/plugins/as-header.wasm, as-basic-auth.wasm, as-body.wasm  AssemblyScript 0.14 + @solo-io/proxy-runtime (npm)
#   wasm/plugins/go-header.wasm, go-misbehave.wasm, go-stateful.wasm
#                                                  Go (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared)
#   wasm/bin/registry, wasm/bin/oras               distribution v3 registry and oras (go install)
# Sources: test/wasm-plugins/assemblyscript/*.ts and test/wasm-plugins/go/.
#
# Idempotent: each group is rebuilt only when its sources or pinned versions change (a stamp file
# holds their hash). Safe to run concurrently (flock). Set PORTICO_WASM_SKIP_TOOLS=1 to skip the
# registry/oras build (the OCI tests then skip).
#
# Why it looks like this:
# - The AssemblyScript SDK pairs with assemblyscript 0.14.x (it uses the 0.14 runtime's
#   __retain/__release), so both are installed into the cache folder, not the repo's package.json.
# - TinyGo is not available; the Go plugins implement the ABI directly with //go:wasmexport and
#   //go:wasmimport (Go >= 1.24). The proxy-wasm Go SDK compiles against its mock host without
#   TinyGo, so each module's exports are checked here rather than trusting the build.
set -euo pipefail

ASC_VERSION="${ASC_VERSION:-0.14.13}"
PROXY_RUNTIME_VERSION="${PROXY_RUNTIME_VERSION:-0.1.8}"
REGISTRY_VERSION="${REGISTRY_VERSION:-latest}"
ORAS_VERSION="${ORAS_VERSION:-latest}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PORTICO_CACHE:-$HOME/.cache/portico}/wasm"
SRC="$REPO_ROOT/test/wasm-plugins"
OUT="$CACHE/plugins"
BIN="$CACHE/bin"
mkdir -p "$OUT" "$BIN" "$CACHE/npm"

exec 9>"$CACHE/.lock"
flock 9

GO="${GO:-$(command -v go || true)}"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi

hash_of() { (cd "$SRC" && find "$@" -type f | LC_ALL=C sort | xargs sha256sum; echo "$ASC_VERSION $PROXY_RUNTIME_VERSION $("${GO:-true}" version 2>/dev/null || true)") | sha256sum | cut -c1-16; }

# Fails unless the module exports every name given (WebAssembly.Module.exports).
check_exports() {
  node -e '
    const [file, ...want] = process.argv.slice(1);
    const m = new WebAssembly.Module(require("fs").readFileSync(file));
    const have = new Set(WebAssembly.Module.exports(m).map((e) => e.name));
    const miss = want.filter((w) => !have.has(w));
    if (miss.length) { console.error(`${file}: missing exports ${miss.join(", ")}`); process.exit(1); }
  ' "$@"
}

# --- AssemblyScript ----------------------------------------------------------------------------
as_plugins=(header basic-auth body)
# The stamp covers the sources, the pinned versions and the list of plugins built from them.
as_hash="$(echo "$(hash_of assemblyscript) ${as_plugins[*]}" | sha256sum | cut -c1-16)"
if [[ "$(cat "$OUT/.as.stamp" 2>/dev/null)" != "$as_hash" ]]; then
  echo "build-wasm-plugins: AssemblyScript $ASC_VERSION + @solo-io/proxy-runtime $PROXY_RUNTIME_VERSION"
  (
    cd "$CACHE/npm"
    [[ -f package.json ]] || echo '{"name":"portico-wasm-plugins","private":true}' >package.json
    if [[ ! -f node_modules/assemblyscript/package.json ]] ||
      ! grep -q "\"version\": \"$ASC_VERSION\"" node_modules/assemblyscript/package.json ||
      ! grep -q "\"version\": \"$PROXY_RUNTIME_VERSION\"" node_modules/@solo-io/proxy-runtime/package.json 2>/dev/null; then
      npm install --no-audit --no-fund --no-save --loglevel=error \
        "assemblyscript@$ASC_VERSION" "@solo-io/proxy-runtime@$PROXY_RUNTIME_VERSION"
    fi
    rm -rf src && mkdir src && cp "$SRC"/assemblyscript/*.ts src/
    for p in "${as_plugins[@]}"; do
      # --use abort=abort_proc_exit: the SDK's abort logs and exits through WASI (its README).
      # (asc 0.14 warns AS201 about the SDK's own usize->u32 conversions; shown only on failure.)
      if ! node node_modules/assemblyscript/bin/asc "src/$p.ts" -b "$OUT/as-$p.wasm.tmp" \
        --use abort=abort_proc_exit -O3 2>"$CACHE/asc-$p.log"; then
        cat "$CACHE/asc-$p.log" >&2
        exit 1
      fi
      mv -f "$OUT/as-$p.wasm.tmp" "$OUT/as-$p.wasm"
      check_exports "$OUT/as-$p.wasm" proxy_abi_version_0_2_0 proxy_on_context_create proxy_on_request_headers malloc memory
    done
    check_exports "$OUT/as-body.wasm" proxy_on_request_body proxy_on_request_trailers proxy_on_response_body proxy_on_response_trailers
  )
  echo "$as_hash" >"$OUT/.as.stamp"
fi

# --- Go ------------------------------------------------------------------------------------------
go_plugins=(header misbehave stateful)
if [[ -z "$GO" ]]; then
  echo "build-wasm-plugins: no Go toolchain (set GO=... or put go on PATH); Go plugins and OCI tools not built" >&2
  exit 1
fi
go_hash="$(hash_of go)"
if [[ "$(cat "$OUT/.go.stamp" 2>/dev/null)" != "$go_hash" ]]; then
  echo "build-wasm-plugins: Go plugins with $("$GO" version)"
  for p in "${go_plugins[@]}"; do
    (cd "$SRC/go" && GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOFLAGS=-mod=mod \
      "$GO" build -buildmode=c-shared -trimpath -o "$OUT/go-$p.wasm.tmp" "./$p")
    mv -f "$OUT/go-$p.wasm.tmp" "$OUT/go-$p.wasm"
    check_exports "$OUT/go-$p.wasm" _initialize proxy_abi_version_0_2_1 proxy_on_memory_allocate \
      proxy_on_context_create proxy_on_request_headers proxy_on_configure memory
  done
  echo "$go_hash" >"$OUT/.go.stamp"
fi

# --- OCI registry and oras -----------------------------------------------------------------------
if [[ "${PORTICO_WASM_SKIP_TOOLS:-}" != 1 ]]; then
  if [[ ! -x "$BIN/registry" ]]; then
    echo "build-wasm-plugins: go install distribution/v3 registry@$REGISTRY_VERSION"
    GOBIN="$BIN" GOTOOLCHAIN=local "$GO" install "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
  fi
  if [[ ! -x "$BIN/oras" ]]; then
    echo "build-wasm-plugins: go install oras@$ORAS_VERSION"
    GOBIN="$BIN" GOTOOLCHAIN=local "$GO" install "oras.land/oras/cmd/oras@$ORAS_VERSION"
  fi
fi

echo "wasm plugins: $OUT ($(cd "$OUT" && ls -- *.wasm | tr '\n' ' '))"
[[ "${PORTICO_WASM_SKIP_TOOLS:-}" == 1 ]] || echo "oci tools:    $BIN/registry $BIN/oras"
