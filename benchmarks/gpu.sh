#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the tests marked `gpu`, then the 3D convergence,
# training-throughput, inference and segment benchmarks on the GPU, each under its own time limit
# so that one slow step cannot take the others' time (505 s in all, inside one 10-minute device
# call; on the H200, 2026-11-30, the steps took 21, 65, about 80, 33 and 78 s). Each step's output
# goes to its own log under $OUT (default benchmarks/_work/gpu) and its last lines to the terminal.
#
# Run from the repository root with segpipe importable: bash benchmarks/gpu.sh
# On a machine whose Python lacks segpipe's dependencies (the lent GPU's image), carry the wheels
# benchmarks/gpu_wheels.sh downloads and run WHEELS=.whl bash benchmarks/gpu.sh: they are installed
# into /tmp/site first, and every module the steps import is compiled to bytecode (about 10 s with
# 16 cores), so no step's time is Python compiling MONAI or torch from source.
set -u
out=${OUT:-benchmarks/_work/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
if [[ -n ${WHEELS:-} ]]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    torch_dir=$($py -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
    timeout 120 $py -m compileall -q -j 0 /tmp/site segpipe benchmarks tests "$torch_dir/torch" "$torch_dir/torchvision" >/dev/null 2>&1
    echo "wheels installed, bytecode compiled after ${SECONDS} s"
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
steps=" ${STEPS:-tests convergence3d train inference segment} "  # STEPS="tests train": only those
# SEGMENT_IMAGES=200 SEGMENT_LIMIT=150: the segment step on more images, under a longer limit

step() {  # step NAME SECONDS COMMAND...: run COMMAND under a time limit, log it, show its end
    local name=$1 limit=$2
    shift 2
    [[ $steps == *" $name "* ]] || return 0
    echo "== $name: limit ${limit} s, started at ${SECONDS} s"
    timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1
    echo "   exit $? after ${SECONDS} s"
    tail -n "${TAIL:-14}" "$out/$name.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$py -c "import torch, monai, zarr, segpipe.pipeline.segment; print('torch', torch.__version__, 'monai', monai.__version__, 'zarr', zarr.__version__, 'GPU', torch.cuda.get_device_name())" || exit 1

step tests 75 $py -m pytest -o addopts='-ra --strict-markers' -p no:xdist -m gpu -p no:cacheprovider -q tests/training/test_training_gpu.py tests/inference/test_inference_gpu.py tests/models/test_device.py
step convergence3d 150 $py benchmarks/convergence3d.py --epochs 10 --plans planned --tasks mni152-tissue synthetic-nuclei-3d --output /tmp/convergence3d
step train 90 $py benchmarks/train.py --device cuda --iterations 40 --repeats 1 --no-competitor
step inference 70 $py benchmarks/inference.py --device cuda --repeats 2 --tiny 256 512 512 --unet 192 384 384 --big 0 0 0
step segment "${SEGMENT_LIMIT:-120}" $py benchmarks/segment.py --device cuda --images "${SEGMENT_IMAGES:-50}" --no-tta
