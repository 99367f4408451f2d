#!/usr/bin/env bash
# On a lent GPU, in one go: train the small scale's nets not shipped yet and its GPU-only nets
# (ResNet-110 with/without shortcuts, ResNet-56 at widths 2 and 4), one process per net on the one
# GPU; ship them (finals re-scored on the CPU); study the GPU-only nets (benchmarks/gpu_extras.py).
# Usage (repository root, on the GPU machine): bash benchmarks/gpu_train.sh OUTDIR TRAIN_LIMIT_S ID...
# The shipped files are packed into OUTDIR/nets-*.tar (at most ~14 MB each, so they come back) before the
# study of the GPU-only nets, the step most likely to be cut short.
set -u
out=${1:?output folder}; limit=${2:?seconds}; shift 2
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cache=/tmp/lossbench-cache; mkdir -p "$out" "$cache"; log="$out/gpu_train.log"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
  nproc; date; } >>"$log" 2>&1
t0=$SECONDS
for id in "$@"; do
  timeout "$limit" python3 -m lossbench train --scale small --all --only "$id" --device cuda --cache-dir "$cache" \
      >"$out/train-$id.txt" 2>&1 &
done
wait
echo "=== training done in $((SECONDS - t0)) s" >>"$log"
for id in "$@"; do echo "--- $id"; grep -v "^\s*$" "$out/train-$id.txt" | tail -n 3; rm -f "$out/train-$id.txt"; done >>"$log"
# one process per net: re-scoring a wide net on one CPU thread takes a minute or more
for id in "$@"; do
  timeout 170 python3 -m lossbench ship --scale small --cache-dir "$cache" --commit "${LOSSBENCH_COMMIT:-unknown}" --only "$id" \
      >"$out/ship-$id.txt" 2>&1 &
done
wait
for id in "$@"; do grep -v "^\s*$" "$out/ship-$id.txt" | tail -n 2; rm -f "$out/ship-$id.txt"; done >>"$log"
echo "=== shipped at $((SECONDS - t0)) s" >>"$log"
( cd baselines/small/nets
  tar cf "$out/nets-matrix.tar" resnet20-*2000* resnet56-*bs2000* resnet20-sgd-* resnet56-w4-bs128-s0.json
  tar cf "$out/nets-r110.tar" resnet110-*; tar cf "$out/nets-w2.tar" resnet56-w2-*; ls -l ) >>"$log" 2>&1
timeout 100 python3 benchmarks/gpu_extras.py --device cuda -o "$out/gpu-extras.json" >>"$log" 2>&1
echo "=== extras studied at $((SECONDS - t0)) s (rc $?)" >>"$log"
