#!/usr/bin/env bash
# The accelerator check for a machine with an NVIDIA GPU (none in CI here): installs the
# onnxruntime-gpu build (with CUDA and cuDNN as Python packages) into its own virtualenv beside
# the serving package, then runs the serving tests that need it. On a GPU the model must run on
# CUDAExecutionProvider with no fallback and answer as the CPU does; without one, the same tests
# prove the fallback is said. Usage, from the repository root:
#   hack/gpu-check.sh                 # venv in .venv-gpu (kept for a rerun)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GPU_VENV:-.venv-gpu}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  || echo "nvidia-smi: no GPU visible; the CUDA test will be skipped and only the fallback checked"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -U pip
  "$venv/bin/pip" install -q -e '.[serving,dev]'
  # Same module name, GPU build: the CPU wheel goes first so the two cannot shadow each other.
  "$venv/bin/pip" uninstall -q -y onnxruntime
  "$venv/bin/pip" install -q 'onnxruntime-gpu[cuda,cudnn]'
fi
"$venv/bin/python" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
"$venv/bin/python" -m pytest tests/serving/test_serve_accelerator.py -v -rs -p no:cacheprovider
