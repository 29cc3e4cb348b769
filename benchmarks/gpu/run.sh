#!/usr/bin/env bash
# The GPU measurement kit in one call: bash benchmarks/gpu/run.sh [--dry-run] OUTDIR
# Installs the package from this tree without downloading (pip --no-deps --no-index into a
# scratch folder; the source tree on PYTHONPATH if that fails), then runs every phase of
# simvos_trt.bench.gpukit within KIT_SECONDS (540 = 9 min; 120 for --dry-run), install included.
set -uo pipefail
start=$SECONDS
dry=()
if [[ "${1:-}" == "--dry-run" ]]; then dry=(--dry-run); shift; fi
out=${1:?usage: bash benchmarks/gpu/run.sh [--dry-run] OUTDIR}
total=${KIT_SECONDS:-$([[ ${#dry[@]} -gt 0 ]] && echo 120 || echo 540)}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
py=${PYTHON:-python3}
mkdir -p "$out"
exec > >(tee "$out/run.log") 2>&1
site=$(mktemp -d "${TMPDIR:-/tmp}/simvos-kit.XXXXXX")
trap 'rm -rf "$site"' EXIT
if "$py" -m pip install -q --no-deps --no-build-isolation --no-index --target "$site" "$repo" 2>&1 \
        | grep -v "^WARNING: Location"; [[ ${PIPESTATUS[0]} -eq 0 ]]; then
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    echo "run.sh: installed simvos_trt (no dependencies, nothing downloaded) in $((SECONDS - start)) s"
else
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
    echo "run.sh: pip could not install offline; running simvos_trt from the source tree"
fi
left=$((total - (SECONDS - start) - 10))
echo "run.sh: $left s for the kit (of $total s)"
guard=(timeout -k 10 "$left")
command -v timeout > /dev/null || guard=()
"${guard[@]}" "$py" "$repo/benchmarks/gpu/kit.py" "${dry[@]}" --seconds "$((left - 5))" \
    --golden "$repo/tests/data/golden" "$out"
rc=$?
echo "run.sh: exit $rc after $((SECONDS - start)) s; files in $out:"
ls -l "$out"
exit $rc
