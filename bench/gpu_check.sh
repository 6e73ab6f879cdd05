#!/usr/bin/env bash
# The GPU session's checks, run on the device after `bash bench/gpu_prepare.sh` here (see that file). Prints
# and saves under $OUT: goldens in fp32/bf16/amp with CUDA graphs, graph and encoder-batch speed
# (bench/device_check.py), then the speed table and quality gate in the default precision (bench/speed.py).
# PYTHON, DEVICE (default python3, cuda) and WHEELS=0 (the packages are there) let it be tried elsewhere first.
set -uo pipefail
out="${OUT:-/tmp/out}"; mkdir -p "$out"
python="${PYTHON:-python3}"; device="${DEVICE:-cuda}"
if [ "${WHEELS:-1}" != 0 ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .device/wheels/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 MAPPERATOR_SHARED=.device/shared
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$out/gpu.txt"
"$python" bench/device_check.py --device "$device" 2>&1 | tee "$out/device_check.txt"
"$python" bench/speed.py --device "$device" --json 2>&1 | tee "$out/speed.txt"
# last, an experiment whose failure costs nothing above: the graph step compiled by torch.compile
"$python" bench/device_check.py --device "$device" --compile 2>&1 | tee "$out/compile.txt"
