#!/usr/bin/env bash
# On a lent GPU, in one go: train the small scale's nets at the given training seeds (one process per
# net, PARALLEL at a time on the one card, longest first), ship them (finals re-scored on the CPU), and
# pack what comes back into tars of at most 15 MB (benchmarks/pack.py).
# Usage (repository root, on the GPU machine):
#   bash benchmarks/gpu_train.sh OUTDIR DEADLINE_S PARALLEL JOB...      JOB = CONFIG_ID:SEED (a seed-0 id)
# Training stops at DEADLINE_S after the start (unfinished nets are listed, not shipped); shipping and
# packing take about a minute after it. Packs: nets-*.tar (baselines/small/nets), meta.tar (provenance of
# seed-nets/ and gpu-nets/, logs), seeds-<S>-*.tar (seed-nets weights of seed S); whatever does not fit
# the 64 MB that one call brings back is left in /tmp/lossbench-pending for a second call
# (`cp /tmp/lossbench-pending/* $OUT`).
set -u
out=${1:?output folder}; deadline_s=${2:?seconds}; par=${3:?parallel processes}; shift 3
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export cache=/tmp/lossbench-cache logs=/tmp/lossbench-logs
# a dry run on a CPU: LOSSBENCH_DEVICE=cpu LOSSBENCH_SCALE=ci bash benchmarks/gpu_train.sh ...
export scale=${LOSSBENCH_SCALE:-small} device=${LOSSBENCH_DEVICE:-cuda}
rm -rf "baselines/$scale/nets" "baselines/$scale/seed-nets" "baselines/$scale/gpu-nets"  # only what this run ships
mkdir -p "$out" "$cache" "$logs"; log="$logs/gpu_train.log"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
  nproc --all; date; } >>"$log" 2>&1
t0=$(date +%s); export end=$((t0 + deadline_s))
train_one() {  # CONFIG_ID:SEED
    local id=${1%:*} seed=${1#*:} left=$((end - $(date +%s)))
    [ "$left" -gt 5 ] || { echo "not started: $1"; return; }
    timeout "$left" python3 -m lossbench train --scale "$scale" --all --only "$id" --seed "$seed" --device "$device" \
        --cache-dir "$cache" >"$logs/train-$1.txt" 2>&1
    echo "$1: rc $? at $(( $(date +%s) - t0 )) s"
}
export -f train_one; export t0
printf '%s\n' "$@" | xargs -P "$par" -I{} bash -c 'train_one {}' >>"$log" 2>&1
echo "=== training done in $(( $(date +%s) - t0 )) s" >>"$log"
for job in "$@"; do echo "--- $job"; grep -v "^\s*$" "$logs/train-$job.txt" 2>/dev/null | tail -n 2; done >>"$log"
ship_one() {  # CONFIG_ID:SEED
    timeout 240 python3 -m lossbench ship --scale "$scale" --cache-dir "$cache" --commit "${LOSSBENCH_COMMIT:-unknown}" \
        --only "${1%:*}" --seeds "${1#*:}" 2>&1 | grep -v "^\s*$" | tail -n 2
}
export -f ship_one
printf '%s\n' "$@" | xargs -P "$(nproc --all)" -I{} bash -c 'ship_one {}' >>"$log" 2>&1
echo "=== shipped at $(( $(date +%s) - t0 )) s" >>"$log"
cp "$log" "$out/"
python3 benchmarks/pack.py --out "$out" --pending /tmp/lossbench-pending --budget-mb 60 \
    nets=baselines/$scale/nets/ \
    meta=baselines/$scale/seed-nets/*.json,baselines/$scale/seed-nets/*.pca.pt,baselines/$scale/gpu-nets/*.json,$logs/ \
    seeds-1=baselines/$scale/seed-nets/*-s1.pt seeds-2=baselines/$scale/seed-nets/*-s2.pt >>"$out/gpu_train.log" 2>&1
echo "=== packed at $(( $(date +%s) - t0 )) s" >>"$out/gpu_train.log"
