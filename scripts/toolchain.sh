#!/usr/bin/env bash
# The Pulumi toolchain, built offline from the Go module proxy and cached outside the clone.
#
#   scripts/toolchain.sh ensure [--strict]  build what is missing; the bin dir is the last line of
#                                           stdout, progress and timings go to stderr
#   scripts/toolchain.sh env                print `export ...` lines for eval
#   scripts/toolchain.sh status             what is in the bin dir and what could not be built
#
# A `pulumi` already on PATH (a user's install) is used as is; only missing plugins are built.
# Otherwise every tool is compiled with the machine's Go from the module proxy, release style
# (CGO_ENABLED=0, -trimpath, version ldflags). The cache lives under
# ${XDG_CACHE_HOME:-$HOME/.cache}/realtime-fly/toolchain/<key>/bin where <key> names every
# version, so bumping one builds a new directory. GOMODCACHE and GOCACHE live beside it, so a
# second CI run on the same machine compiles nothing.
#
# Components the module proxy refuses ("403 This module version is not available") are recorded
# in <key>/unavailable/<name> with the exact error and not asked for again for that key (delete
# the file, or pass --retry, to ask again). `ensure` fails only when the engine itself cannot be
# had, or with --strict when anything is missing. See docs/LOCAL.md for what each part is for.
set -euo pipefail

# Versions. v3.272.0 (the version of the `pulumi` PyPI package in requirements.txt) is not served
# by the module proxy for pkg/v3 (403), v3.274.1 is: a newer engine runs an older Python SDK.
PULUMI_VERSION="${PULUMI_VERSION:-v3.274.1}"
# The Python language host module has no tags; `latest` or a pseudo-version / commit hash.
PULUMI_LANGUAGE_PYTHON_VERSION="${PULUMI_LANGUAGE_PYTHON_VERSION:-latest}"
# That module is refused by the module proxy here (403). Up to v3.78 the same host lived inside
# the sdk/v3 module, which is served: that build is the fallback. It predates RPCs the engine
# treats as optional (GetRequiredPackages: the engine falls back to GetRequiredPlugins) and it
# reads the interpreter from PULUMI_PYTHON_CMD rather than the runtime's `virtualenv` option, so
# the make targets set PULUMI_PYTHON_CMD to the project's .venv python.
PULUMI_LANGUAGE_PYTHON_SDK="${PULUMI_LANGUAGE_PYTHON_SDK:-v3.78.0}"
# pulumi-command is tagged at the repository root only; the provider module is reached by the
# pseudo-version of the tagged commit, derived below from the proxy's info for the root tag.
PULUMI_COMMAND_VERSION="${PULUMI_COMMAND_VERSION:-v1.2.1}"
FLYCTL_VERSION="${FLYCTL_VERSION:-v0.4.87}"
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"

GO="${GO:-}"
if [ -z "$GO" ]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/realtime-fly"
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$CACHE_ROOT/go/mod}"
export GOCACHE="${GOCACHE_OVERRIDE:-$CACHE_ROOT/go/build}"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
export GOPROXY="${GOPROXY:-https://proxy.golang.org}" GONOSUMDB="${GONOSUMDB:-}"

log() { printf '%s\n' "toolchain: $*" >&2; }
die() { log "error: $*"; exit 1; }

go_version() { "$GO" env GOVERSION 2>/dev/null || echo unknown-go; }

cache_key() {
  printf 'pulumi-%s_python-%s-or-sdk-%s_command-%s_flyctl-%s_actionlint-%s_%s' \
    "$PULUMI_VERSION" "$PULUMI_LANGUAGE_PYTHON_VERSION" "$PULUMI_LANGUAGE_PYTHON_SDK" \
    "$PULUMI_COMMAND_VERSION" \
    "$FLYCTL_VERSION" "$ACTIONLINT_VERSION" "$(go_version)"
}

KEY_DIR="$CACHE_ROOT/toolchain/$(cache_key)"
BIN="$KEY_DIR/bin"
UNAVAILABLE="$KEY_DIR/unavailable"
RETRY=0
STRICT=0

# A user's own pulumi (not ours) on PATH is used as is.
user_pulumi() {
  local found
  found="$(command -v pulumi 2>/dev/null || true)"
  if [ -n "$found" ] && [ "$(dirname "$found")" != "$BIN" ]; then printf '%s' "$found"; fi
}

# run_timed NAME CMD...: run a build step, print and record how long it took.
run_timed() {
  local name="$1" start end
  shift
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  log "built $name in $((end - start)) s"
  printf '%s %s\n' "$name" "$((end - start))" >>"$KEY_DIR/build-times.txt"
}

# mark_unavailable NAME ERRORFILE: remember that the proxy refused a component.
mark_unavailable() {
  mkdir -p "$UNAVAILABLE"
  cp "$2" "$UNAVAILABLE/$1"
  log "$1 cannot be built: $(grep -m1 -E 'go: |error|Forbidden' "$2" || head -n1 "$2")"
}

# skip_known_unavailable NAME: true when an earlier run recorded the component as refused.
skip_known_unavailable() {
  if [ "$RETRY" = 0 ] && [ -f "$UNAVAILABLE/$1" ]; then
    log "$1 skipped: refused earlier for this key (see $UNAVAILABLE/$1; --retry asks again)"
    return 0
  fi
  rm -f "$UNAVAILABLE/$1"
  return 1
}

# resolve MODULE@VERSION -> prints the canonical version, or fails with the proxy's error in $2.
resolve() {
  local out
  out="$(cd "$KEY_DIR" && "$GO" list -m -json "$1" 2>"$2")" || return 1
  printf '%s' "$out" | sed -n 's/^[[:space:]]*"Version": "\(.*\)",*$/\1/p' | head -n1
}

scratch_module() {
  # A throwaway main module outside the repository, one per component.
  local dir="$KEY_DIR/src/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  printf '%s' "$dir"
}

build_pulumi() {
  [ -x "$BIN/pulumi" ] && return 0
  local dir err mod
  dir="$(scratch_module pulumi)"
  err="$dir/error.log"
  if ! resolve "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION" "$err" >/dev/null; then
    cat "$err" >&2
    die "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION is not available from the module proxy"
  fi
  (cd "$dir" && "$GO" mod download "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION") >&2
  mod="$GOMODCACHE/cache/download/github.com/pulumi/pulumi/pkg/v3/@v/$PULUMI_VERSION.mod"
  {
    printf 'module realtime-fly/toolchain/pulumi\n\ngo %s\n\n' "$(sed -n 's/^go //p' "$mod")"
    printf 'require (\n\tgithub.com/pulumi/pulumi/pkg/v3 %s\n' "$PULUMI_VERSION"
    printf '\tgithub.com/pulumi/pulumi/sdk/v3 %s\n)\n\n' "$PULUMI_VERSION"
    # pkg/v3's replace directives, minus the ones pointing into its own repository checkout.
    grep -E '^replace ' "$mod" | grep -v '=> \.' || true
  } >"$dir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"\n' \
    >"$dir/tools.go"
  (cd "$dir" && "$GO" mod tidy) >&2
  run_timed pulumi bash -c "cd '$dir' && nice -n 10 '$GO' build -mod=mod -trimpath \
    -tags osusergo,grpcnotrace \
    -ldflags '-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION' \
    -o '$BIN/pulumi.tmp' github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
  mv "$BIN/pulumi.tmp" "$BIN/pulumi"
}

# The scripts the Python SDK's plugins run: shipped in the sdk/v3 module zip, without exec bits.
copy_sdk_scripts() {
  local sdk="$GOMODCACHE/github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION"
  if [ ! -d "$sdk" ]; then
    (cd "$KEY_DIR" && "$GO" mod download "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION") >&2
  fi
  local script
  for script in python/cmd/pulumi-language-python-exec python/dist/pulumi-resource-pulumi-python; do
    if [ ! -x "$BIN/$(basename "$script")" ]; then
      install -m 0755 "$sdk/$script" "$BIN/$(basename "$script")"
    fi
  done
}

build_language_python() {
  local name=pulumi-language-python
  local module=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
  [ -x "$BIN/$name" ] && return 0
  local dir err
  dir="$(scratch_module "$name")"
  err="$dir/error.log"
  if resolve "$module@$PULUMI_LANGUAGE_PYTHON_VERSION" "$err" >/dev/null; then
    go_install "$name" "$module" "$module" "$PULUMI_LANGUAGE_PYTHON_VERSION" \
      "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"
    return 0
  fi
  log "$name: $module is refused ($(grep -m1 -o '[0-9]\{3\} [A-Za-z]*' "$err" || echo error));" \
    "building the host embedded in sdk/v3@$PULUMI_LANGUAGE_PYTHON_SDK instead"
  local package=github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
  printf 'module realtime-fly/toolchain/langhost\n\ngo 1.21\n\nrequire github.com/pulumi/pulumi/sdk/v3 %s\n' \
    "$PULUMI_LANGUAGE_PYTHON_SDK" >"$dir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$package" >"$dir/tools.go"
  if ! (cd "$dir" && "$GO" mod tidy) 2>"$err" >&2; then
    mark_unavailable "$name" "$err"
    return 0
  fi
  run_timed "$name" bash -c "cd '$dir' && nice -n 10 '$GO' build -mod=mod -trimpath \
    -ldflags '-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_LANGUAGE_PYTHON_SDK' \
    -o '$BIN/$name' '$package' 2>'$err'" || mark_unavailable "$name" "$err"
}

# The provider module's pseudo-version: the root tag's commit hash and commit time (UTC).
command_provider_pseudo_version() {
  local info hash time
  info="$(cd "$KEY_DIR" && "$GO" mod download -json "github.com/pulumi/pulumi-command@$PULUMI_COMMAND_VERSION")"
  hash="$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Hash": "\(.*\)",*$/\1/p' | head -n1)"
  time="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' \
    "$GOMODCACHE/cache/download/github.com/pulumi/pulumi-command/@v/$PULUMI_COMMAND_VERSION.info")"
  [ -n "$hash" ] && [ -n "$time" ] || return 1
  printf 'v0.0.0-%s-%s' "$(date -u -d "$time" +%Y%m%d%H%M%S)" "${hash:0:12}"
}

build_command_provider() {
  local name=pulumi-resource-command module=github.com/pulumi/pulumi-command/provider
  [ -x "$BIN/$name" ] && return 0
  skip_known_unavailable "$name" && return 0
  local err pseudo
  err="$(scratch_module "$name")/error.log"
  if ! pseudo="$(command_provider_pseudo_version 2>"$err")"; then
    mark_unavailable "$name" "$err"
    return 0
  fi
  log "$name: $module@$pseudo (the commit of pulumi-command $PULUMI_COMMAND_VERSION)"
  go_install "$name" "$module" "$module/cmd/$name" "$pseudo" \
    "-X github.com/pulumi/pulumi-command/provider/pkg/version.Version=$PULUMI_COMMAND_VERSION"
}

# go_install NAME MODULE PACKAGE VERSION LDFLAGS: a tool whose module `go install` accepts as is.
go_install() {
  local name="$1" module="$2" package="$3" version="$4" ldflags="$5"
  [ -x "$BIN/$name" ] && return 0
  skip_known_unavailable "$name" && return 0
  local dir err
  dir="$(scratch_module "$name")"
  err="$dir/error.log"
  if ! resolve "$module@$version" "$err" >/dev/null; then
    mark_unavailable "$name" "$err"
    return 0
  fi
  run_timed "$name" bash -c "cd '$dir' && GOBIN='$BIN' nice -n 10 '$GO' install -trimpath \
    -ldflags '-s -w $ldflags' '$package@$version' 2>'$err'" || mark_unavailable "$name" "$err"
}

build_flyctl() {
  go_install flyctl github.com/superfly/flyctl github.com/superfly/flyctl "$FLYCTL_VERSION" \
    "-X github.com/superfly/flyctl/internal/buildinfo.buildVersion=${FLYCTL_VERSION#v}"
  if [ -x "$BIN/flyctl" ] && [ ! -e "$BIN/fly" ]; then ln -s flyctl "$BIN/fly"; fi
}

build_actionlint() {
  go_install actionlint github.com/rhysd/actionlint github.com/rhysd/actionlint/cmd/actionlint \
    "$ACTIONLINT_VERSION" "-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
}

summary() {
  local name missing=0
  for name in pulumi pulumi-language-python pulumi-language-python-exec \
    pulumi-resource-pulumi-python pulumi-resource-command flyctl actionlint; do
    if [ -x "$BIN/$name" ]; then
      log "  ok       $name"
    elif [ "$name" != pulumi-resource-pulumi-python ] && [ "$name" != pulumi-language-python-exec ] \
      && command -v "$name" >/dev/null 2>&1; then
      log "  on PATH  $name ($(command -v "$name"))"
    elif [ -f "$UNAVAILABLE/$name" ]; then
      log "  MISSING  $name (refused by the module proxy: $UNAVAILABLE/$name)"
      missing=1
    else
      log "  MISSING  $name (not built)"
      missing=1
    fi
  done
  return "$missing"
}

ensure() {
  [ -x "$GO" ] || die "go not found (looked for \$GO, go on PATH, /usr/local/go/bin/go)"
  mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"
  exec 9>"$KEY_DIR/.lock"
  flock 9
  local start user
  start=$(date +%s)
  user="$(user_pulumi)"
  if [ -n "$user" ]; then
    log "using the pulumi on PATH: $user ($("$user" version 2>/dev/null || echo unknown version))"
    [ -n "$(command -v pulumi-language-python 2>/dev/null)" ] || build_language_python
    if ! "$user" plugin ls 2>/dev/null | grep -qE "^command +resource +${PULUMI_COMMAND_VERSION#v}"; then
      build_command_provider
    fi
  else
    build_pulumi
    copy_sdk_scripts
    build_language_python
    build_command_provider
  fi
  build_flyctl
  build_actionlint
  log "toolchain ready in $(($(date +%s) - start)) s: $BIN"
  local complete=0
  summary || complete=1
  if [ "$STRICT" = 1 ] && [ "$complete" = 1 ]; then die "toolchain incomplete (--strict)"; fi
  printf '%s\n' "$BIN"
}

print_env() {
  ensure >/dev/null
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
  printf 'export PULUMI_SKIP_UPDATE_CHECK=true\n'
  printf 'export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true\n'
}

main() {
  local cmd="${1:-ensure}"
  shift || true
  local arg
  for arg in "$@"; do
    case "$arg" in
      --retry) RETRY=1 ;;
      --strict) STRICT=1 ;;
      *) die "unknown option: $arg" ;;
    esac
  done
  case "$cmd" in
    ensure) ensure ;;
    env) print_env ;;
    status)
      log "key: $(cache_key)"
      summary || true
      [ -f "$KEY_DIR/build-times.txt" ] && cat "$KEY_DIR/build-times.txt" >&2
      printf '%s\n' "$BIN"
      ;;
    *) die "unknown command: $cmd (ensure, env, status)" ;;
  esac
}

main "$@"
