#!/usr/bin/env bash
# `make gpu-check [QUICK=1]`: the GPU tests and benchmarks in under 9 minutes on one NVIDIA GPU
# (scripts/gpu_check.py says what runs). Works from a clean checkout without internet:
#
# * Python: $GPU_CHECK_PYTHON, else .venv/bin/python when there is one, else python3 (a GPU
#   machine's own torch);
# * packages that python lacks (kornia, jsonargparse, segmentation-models-pytorch) are installed
#   from the wheels in .whl/ (`make gpu-wheels` downloads them; carry .whl) into /tmp/site;
# * the package itself runs from the checkout (PYTHONPATH=.), nothing is built or installed;
# * with $OUT set (the device tool's output folder) the log, the summary and a tarball of the
#   tables are written there.
#
#   bash scripts/gpu_check.sh [--quick] [gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${GPU_CHECK_PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
NEEDED="import kornia, jsonargparse, docstring_parser, typeshed_client, segmentation_models_pytorch"
if ! "$PY" -c "$NEEDED" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    echo "[gpu-check] installing the carried wheels (.whl/) into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "$NEEDED"
  else
    echo "[gpu-check] $PY lacks kornia / jsonargparse / segmentation-models-pytorch and there" \
      "is no .whl/: run 'make gpu-wheels' where pip reaches PyPI, and carry .whl" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
echo "[gpu-check] $("$PY" -c 'import sys, torch; print(sys.executable, "torch", torch.__version__,
  "cuda", torch.cuda.is_available())')"

if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
  "$PY" scripts/gpu_check.py "$@" 2>&1 | tee "$OUT/gpu_check.log"
  exit "${PIPESTATUS[0]}"
fi
exec "$PY" scripts/gpu_check.py "$@"
