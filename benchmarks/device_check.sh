#!/usr/bin/env bash
# The checks a session runs on a lent GPU, in one go (benchmarks/RESULTS.md records their output):
#   1. the CUDA tests (fast engine vs the CPU reference, float32 / graph / TF32 / bf16),
#   2. agreement on a trained net through the CLI: an 11x11 ResNet-56 surface over 1 000 images, CPU
#      reference vs CUDA reference / fast / fast+graph / TF32 / bf16 (and vs a file made on the dev box),
#   3. pytest-benchmark grid speed on CUDA (the ci models, authors' loop side by side, points per launch),
#   4. the paper-scale projection (ResNet-56, 32x32, 50 000 images, 51x51), then its torch.compile rows
#      (~8 min in all on an H200, most of it compiling; give the call a 10-minute limit).
# Usage (repository root, on the GPU machine): bash benchmarks/device_check.sh OUTDIR [CHECKPOINT REF.h5]
set -u
out=${1:?output folder}; ckpt=${2:-.devrun/r56.pt}; ref_local=${3:-.devrun/ref-local.h5}
mkdir -p "$out"; work=$(mktemp -d)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
log="$out/device_check.log"
step() {  # step NAME TIMEOUT_S COMMAND...: run, keep the whole output in the log, show the tail
    local name=$1 limit=$2; shift 2; local t0=$SECONDS
    echo "=== $name ($(date +%T))" | tee -a "$log"
    timeout "$limit" "$@" >"$work/$name.txt" 2>&1; local rc=$?
    cat "$work/$name.txt" >>"$log"
    grep -v -E "^\s*$|Warning|warn\(|^  " "$work/$name.txt" | tail -n 14
    echo "--- $name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$log"
}
step env 60 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv;
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, \"cudnn\", torch.backends.cudnn.version(), torch.cuda.get_device_name())";
  nproc'
step cuda_tests 150 python3 -m pytest -p no:cacheprovider -q -s -m gpu tests/test_engine.py tests/test_directions.py
S="python3 -m lossbench surface --checkpoint $ckpt --scale ci --x -1:1:11 --y -1:1:11 --eval-samples 1000"
step agree 240 bash -c "set -e
  $S --device cpu -o $work/cpu.h5 >/dev/null
  $S --device cuda -o $work/cuda-reference.h5 >/dev/null
  $S --device cuda --engine fast -o $work/cuda-fast.h5 >/dev/null
  $S --device cuda --engine fast --cuda-graph -o $work/cuda-fast-graph.h5 >/dev/null
  $S --device cuda --engine fast --precision tf32 -o $work/cuda-fast-tf32.h5 >/dev/null
  $S --device cuda --engine fast --precision bf16 --cuda-graph -o $work/cuda-fast-bf16-graph.h5 >/dev/null
  python3 benchmarks/compare_surfaces.py $work/cpu.h5 $work/cuda-*.h5
  if [ -f $ref_local ]; then python3 benchmarks/compare_surfaces.py $ref_local $work/cpu.h5 $work/cuda-fast.h5; fi"
step grid_speed 240 python3 -m pytest -p no:cacheprovider -q benchmarks/test_grid_speed.py --lossbench-device cuda --lossbench-speed \
    -k "not compile" --benchmark-json "$out/grid_speed.json" --benchmark-columns=mean,stddev,rounds
step paper 150 python3 -m pytest -p no:cacheprovider -q benchmarks/test_paper_projection.py --lossbench-device cuda \
    -k "not compile" --benchmark-json "$out/paper.json" --benchmark-columns=mean,stddev,rounds
step paper_compile 400 python3 -m pytest -p no:cacheprovider -q benchmarks/test_paper_projection.py \
    --lossbench-device cuda -k compile --benchmark-json "$out/paper_compile.json" --benchmark-columns=mean,rounds
python3 benchmarks/summarize_benchmarks.py "$out"/*.json | tee "$out/summary.txt"
