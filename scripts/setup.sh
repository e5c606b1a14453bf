#!/usr/bin/env bash
# Create .venv with this project and its test tools (CPU torch). Idempotent.
# GPU machines: install the CUDA torch build you need into .venv first (see README);
# this script then leaves it alone, since torch is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # Pinned so pip takes the CPU wheel (an open range can pull a multi-GB CUDA build).
    .venv/bin/pip install -q "torch==2.13.0"
fi
.venv/bin/pip install -q -e ".[test]"
