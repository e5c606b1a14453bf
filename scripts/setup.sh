#!/usr/bin/env bash
# Create .venv with this project, its test tools and the `tune-selcopy` command. Idempotent.
#
# torch comes first, pinned ($TORCH below), unless .venv already has a torch:
# - from PyPI on Linux x86-64 that pin is the CUDA build: several GB of nvidia-* wheels
#   (it runs on CPU-only machines too);
# - CPU-only machines can take the CPU wheel (about 190 MB) instead:
#       TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
# - another CUDA version the same way, e.g. .../whl/cu126 (`nvidia-smi` shows the highest
#   your driver supports), or install any torch into .venv first: it is then left alone.
# CI machines serve the pin from a local CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"  # the pin CI, CPU machines and the cluster configs run
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        echo "setup: installing $TORCH from $TORCH_INDEX_URL"
        .venv/bin/pip install -q "$TORCH" --index-url "$TORCH_INDEX_URL"
    else
        echo "setup: installing $TORCH (from PyPI on Linux x86-64: the CUDA build, several GB;" \
             "for the CPU wheel: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh)"
        .venv/bin/pip install -q "$TORCH"
    fi
fi
.venv/bin/pip install -q -e ".[test]"
