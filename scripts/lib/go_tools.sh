# shellcheck shell=bash
# Go programs built from their modules through a throwaway tools module, at the lowest CPU priority.
# Sourced by scripts that build a pinned tool once and cache the binaries by version. Expects log and die.

# go_env COMMAND...: static binaries, the local toolchain only, modules resolved from go.mod.
go_env() { env CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" "$@"; }

# go_build_pinned DEST MODULE VERSION SIBLINGS SIBLING_VERSION LDFLAGS PACKAGE...   (GO_BUILD_TAGS: build tags)
# Builds PACKAGEs of MODULE@VERSION into DEST through a throwaway tools module. A tools module does not inherit
# its dependency's replace lines, so they are repeated:
# - a replace by another module version (github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0), or of one
#   version only (github.com/vmware-labs/yaml-jsonpath v0.3.2 => github.com/helm-unittest/yaml-jsonpath v0.4.0), is
#   copied as it is;
# - a module like k8s.io/kubernetes replaces its sibling modules by local paths (./staging/src/k8s.io/api): each
#   go.mod line matching the extended regex SIBLINGS (group 1 = the sibling's module path) becomes a replace by
#   its SIBLING_VERSION release. An empty SIBLINGS means the module has none.
go_build_pinned() {
  local dest=$1 module=$2 version=$3 siblings=$4 sibling_version=$5 ldflags=$6
  shift 6
  local src="$dest.src" started=$SECONDS
  command -v go >/dev/null || PATH="/usr/local/go/bin:$PATH"  # the toolchain's usual home when PATH lacks it
  command -v go >/dev/null || die "go is needed to build $module"
  rm -rf "$src" && mkdir -p "$src"
  log "building $* from $module@$version (module download + compile: minutes the first time)"
  (
    cd "$src"
    go_env go mod init flashsale.local/tools >/dev/null 2>&1
    local gomod edits=(-require="$module@$version") line pkg
    gomod=$(go_env go list -m -f '{{.GoMod}}' "$module@$version")
    while read -r line; do
      edits+=(-replace="$line")
    done < <(sed -En \
      -e 's#^(replace)?[[:space:]]*([^[:space:]]+) (v[^[:space:]]+) => ([^.[:space:]][^[:space:]]*) (v[^[:space:]]+)$#\2@\3=\4@\5#p' \
      -e 's#^(replace)?[[:space:]]*([^[:space:]]+) => ([^.[:space:]][^[:space:]]*) (v[^[:space:]]+)$#\2=\3@\4#p' "$gomod")
    if [ -n "$siblings" ]; then
      local found=0
      while read -r line; do
        edits+=(-replace="$line=$line@$sibling_version")
        found=1
      done < <(sed -En "s#$siblings#\1#p" "$gomod")
      [ $found = 1 ] || die "no sibling modules matched in $gomod"
    fi
    for pkg in "$@"; do edits+=(-tool="$pkg"); done
    go_env go mod edit "${edits[@]}"
    go_env go mod tidy
    log "modules ready after $((SECONDS - started)) s; compiling"
    mkdir bin
    go_env nice -n 19 go build -trimpath -tags "${GO_BUILD_TAGS:-}" -ldflags "$ldflags" -o bin/ "$@"
  )
  rm -rf "$dest" && mv "$src/bin" "$dest" && rm -rf "$src"
  log "built $module@$version in $((SECONDS - started)) s: $dest"
}
