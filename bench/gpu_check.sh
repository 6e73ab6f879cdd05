#!/usr/bin/env bash
# The GPU session's checks, run on the device after `bash bench/gpu_prepare.sh` here (see that file). Prints
# and saves under $OUT, most wanted first so that a run cut short keeps what matters: the greedy goldens in
# bf16 (the default), fp32 and amp (bench/device_check.py), the speed table and quality gate in the default
# precision (bench/speed.py), the torch.compile experiment (the graphed step compiled: is it the way to 1,500
# v32 tokens/s?), where a graphed step's GPU time goes and which attention kernels shorten it
# (bench/step_profile.py), and CUDA graph and encoder-batch speed.
# Each step gets at most its own share of the time left before DEADLINE seconds (default 540).
# PYTHON, DEVICE (default python3, cuda) and WHEELS=0 (the packages are there) let it be tried elsewhere first.
set -uo pipefail
out="${OUT:-/tmp/out}"; mkdir -p "$out"
python="${PYTHON:-python3}"; device="${DEVICE:-cuda}"
end=$((SECONDS + ${DEADLINE:-540}))
if [ "${WHEELS:-1}" != 0 ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .device/wheels/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 MAPPERATOR_SHARED=.device/shared
step() {  # step NAME CAP COMMAND...: runs COMMAND for at most CAP seconds and what is left, into $out/NAME.txt
    local name=$1 cap=$2; shift 2
    local left=$((end - SECONDS)); [ "$left" -lt "$cap" ] && cap=$left
    [ "$cap" -le 5 ] && { echo "$name: no time left" | tee "$out/$name.txt"; return; }
    echo "== $name (at most $cap s)"
    timeout "$cap" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$out/$name.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$out/gpu.txt"
step goldens 150 "$python" bench/device_check.py --device "$device" --parts forward generate --precisions bf16 fp32 amp
step speed 200 "$python" bench/speed.py --device "$device" --json
step compile 200 "$python" bench/device_check.py --device "$device" --parts compile --precisions bf16
step profile 200 "$python" bench/step_profile.py --device "$device" --precision bf16
step graphs 130 "$python" bench/device_check.py --device "$device" --parts graphs encoder --precisions bf16
