#!/usr/bin/env bash
# The GPU session's checks, run on the device after `bash bench/gpu_prepare.sh` here (see that file). Prints
# and saves under $OUT, most wanted first so that a run cut short keeps what matters: the greedy goldens in
# bf16 (the default) and fp32 (bench/device_check.py), the draw against torch.multinomial and sampled windows
# through the captured token step against the uncaptured one (device_check.py --parts token), the speed table
# and quality gate as decoding runs by default (bench/speed.py), where a token's time goes around the graphed
# step (bench/loop_profile.py), and v32's one-row matrix products through cuBLAS, cuBLASLt, Inductor and a
# Triton GEMV (bench/gemv.py), and V29's position refinement in bf16 against fp32 (bench/diffusion.py --gate):
# together about the default DEADLINE.
# STEPS="loop speed" runs only the steps named. COMPILED=1 adds the quality gate with the compiled step
# (bench/speed.py --compiled-step --gate-only), the token loop with compiled_step (the decoder
# step and the rest of the token step compiled; bench/loop_profile.py --compiled-step), the compiled step's
# speed table, the goldens and the captured token step through it, and the torch.compile experiment (the whole
# static step compiled, then graphed: steps/s, compile time, graph breaks, kernels; in the default mode (measured
# on 2026-12-04, with max-autotune), with the step's one-row products written as sums for Inductor's own
# kernels, and with coordinate-descent tuning). PROFILE=1 adds the plain step's kernel profile and attention
# variants (bench/step_profile.py) and the CUDA graph and encoder-batch speeds, measured on 2026-12-04.
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
    [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]] && return
    local left=$((end - SECONDS)); [ "$left" -lt "$cap" ] && cap=$left
    [ "$cap" -le 5 ] && { echo "$name: no time left" | tee "$out/$name.txt"; return; }
    echo "== $name (at most $cap s)"
    timeout "$cap" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$out/$name.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$out/gpu.txt"
step goldens 100 "$python" bench/device_check.py --device "$device" --parts forward generate --precisions bf16 fp32
step token 80 "$python" bench/device_check.py --device "$device" --parts token --precisions bf16
step speed 150 "$python" bench/speed.py --device "$device" --json
step loop 90 "$python" bench/loop_profile.py --device "$device"
step gemv 90 "$python" bench/gemv.py --device "$device" --models v32 --rows 1
step diffusion 40 "$python" bench/diffusion.py --device "$device" --gate
if [ "${COMPILED:-0}" = 1 ]; then
    step gate-compiled 120 "$python" bench/speed.py --device "$device" --compiled-step --gate-only
    step loop-compiled 150 "$python" bench/loop_profile.py --device "$device" --compiled-step
    step speed-compiled 170 "$python" bench/speed.py --device "$device" --compiled-step --no-gate --json
    step goldens-compiled 60 "$python" bench/device_check.py --device "$device" --compiled-step --parts generate token --precisions bf16
    step compile 230 "$python" bench/device_check.py --device "$device" --parts compile --precisions bf16 \
        --compile-modes default default+sums default+coordinate_descent_tuning
fi
if [ "${PROFILE:-0}" = 1 ]; then
    step profile 200 "$python" bench/step_profile.py --device "$device" --precision bf16
    step graphs 130 "$python" bench/device_check.py --device "$device" --parts graphs encoder --precisions bf16
fi
