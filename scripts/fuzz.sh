#!/usr/bin/env bash
# Runs every Go fuzz target of the module (func FuzzX(f *testing.F) in a _test.go file), one
# after another (go test fuzzes one target per run), each for FUZZTIME, and stops at the first
# failure. A failing input is written by go test to the package's testdata/fuzz/FuzzX/: commit
# it with the fix, and the plain `go test` runs it from then on as a regression seed.
#
#   scripts/fuzz.sh [FUZZTIME]      # default 1m per target; e.g. 10s (CI) or 10m
#   scripts/fuzz.sh --list          # the targets, "package target" per line
set -euo pipefail
cd "$(dirname "$0")/.."
go="bash scripts/go.sh"

# targets lists "import-path FuzzName" for every fuzz target in the main module's packages.
targets() {
  $go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
    ls "$dir"/*_test.go >/dev/null 2>&1 || continue
    sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$dir"/*_test.go | sort -u |
      while read -r name; do echo "$pkg $name"; done
  done
}

if [ "${1:-}" = --list ]; then
  targets
  exit 0
fi
fuzztime=${1:-1m}
list=$(targets)
[ -n "$list" ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
echo "fuzz: $(wc -l <<<"$list") targets, $fuzztime each"
while read -r pkg name; do
  echo "fuzz: $name ($pkg)"
  # -run '^$' skips the package's other tests; the seed corpus runs first, then new inputs.
  $go test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime"
done <<<"$list"
