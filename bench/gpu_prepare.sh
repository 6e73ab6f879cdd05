#!/usr/bin/env bash
# Prepares the one GPU run of a session lent a device (the `device` tool; /work/.library/device/README.md).
# Run here, in the repository root:   bash bench/gpu_prepare.sh
# then through the device tool:       run  command="bash bench/gpu_check.sh"  carry=[".device"]  timeout_s=540
# The device gets only the checkout, so this copies into .device/ (git-ignored, ~40 MB) what its checks read
# of ../shared and the wheels of the packages its image lacks (its python3 holds torch, numpy, safetensors,
# transformers, huggingface_hub, peft, scipy, httpx).
set -euo pipefail
root="${MAPPERATOR_SHARED:-../shared}"
shared="$root/fixtures/upstream"
[ -d "$shared/trained" ] || { echo "no fixtures at $shared (set MAPPERATOR_SHARED)" >&2; exit 1; }
rm -rf .device && mkdir -p .device/shared/fixtures/upstream .device/wheels
for part in trained v30/checkpoint v30/forward v32/checkpoint v32/forward; do
    mkdir -p ".device/shared/fixtures/upstream/$(dirname "$part")"
    cp -r "$shared/$part" ".device/shared/fixtures/upstream/$part"
done
for version in v30 v32; do
    mkdir -p ".device/shared/fixtures/upstream/$version/preprocess"
    cp "$shared/$version/preprocess/window0_samples.npy" ".device/shared/fixtures/upstream/$version/preprocess/"
done
mkdir -p .device/shared/data/beatmaps  # bench/diffusion.py's map
cp "$root/data/beatmaps/Himeringo - Yotsuya-san ni Yoroshiku (RLC) [Winber1's Extreme].osu" .device/shared/data/beatmaps/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .device/wheels soundfile cffi pycparser mutagen rosu-pp-py==3.1.0
du -sh .device
