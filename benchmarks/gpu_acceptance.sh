#!/usr/bin/env bash
# One acceptance command for any NVIDIA machine: trains a few epochs on CUDA with AMP, exports, builds TensorRT
# engines where TensorRT is installed, benchmarks the CUDA backends, builds and runs the C++ runners, runs the
# torch-tensorrt target where installed, and prints/writes a pass/fail/skip table with the reason for every skip.
#
# usage: benchmarks/gpu_acceptance.sh [--out DIR] [--epochs N] [--quick] [--timeout S]
# env:   PYTHON (default: the repository's .venv, else python3)
# Output: DIR/acceptance.md, DIR/acceptance.json, DIR/logs/. Exit 0 no stage failed, 1 a stage failed.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
exec "$PYTHON" "$HERE/gpu_acceptance.py" "$@"
