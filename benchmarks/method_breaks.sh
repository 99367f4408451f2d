#!/usr/bin/env bash
# Deliberate breaks of the method, each applied (sed) to a scratch copy of the tree and run through the
# main job's checks of one shipped net (resnet20-sgd-wd0.0005-bs128-s0: three direction pairs, the
# Hessian, both kinds of 1D line) or of the interpolations: every break must fail them. The control is
# the unbroken copy, which must pass. One line per break in results/method-breaks/<name>.log.
#   bash benchmarks/method_breaks.sh all          # or: control bn-fold-eps-1e-3 ...
set -u
main=$(cd "$(dirname "$0")/.." && pwd); mut=${TMPDIR:-/tmp}/lossbench-method-breaks; out=$main/results/method-breaks
mkdir -p "$out"
SEL='reproduction and resnet20-sgd-wd0.0005-bs128-s0'
declare -A SED FILE
FILE[bn-train-mode]="lossbench/evaluate.py lossbench/engine.py lossbench/hessian.py"
SED[bn-train-mode]='s/model\.eval()$/model.train()/; s/shadow = copy.deepcopy(model).eval()/shadow = copy.deepcopy(model).train()/'
FILE[biases-not-zeroed]="lossbench/directions.py"
SED[biases-not-zeroed]='s/out\[name\] = torch.zeros_like(d) if ignore == "biasbn" else/out[name] = d.clone() if ignore == "biasbn" else/'
FILE[mean-of-batch-means]="lossbench/evaluate.py lossbench/engine.py lossbench/hessian.py"
SED[mean-of-batch-means]='s/total_loss += float(loss_fn(outputs, targets)) \* b$/total_loss += float(loss_fn(outputs, targets)) * n_batches_mut/; s/totals\[k\] += loss_fn(logits\[a:b\], y\[a:b\]).double() \* (b - a)$/totals[k] += loss_fn(logits[a:b], y[a:b]).double() * n_mean_mut[k]/; s/loss = loss_fn(model(inputs), targets) \* (len(targets) \/ n_total)/loss = loss_fn(model(inputs), targets) * (1.0 \/ len(batches))/'
FILE[last-layer-unnormalised]="lossbench/directions.py"
SED[last-layer-unnormalised]='s/            out\[name\] = normalize_tensor(d, t, norm)$/            out[name] = normalize_tensor(d, t, "none" if name.startswith(("linear.", "fc.")) else norm)/'
FILE[interp-without-bn-stats]="lossbench/directions.py"
SED[interp-without-bn-stats]='s/        name: (theta2\[name\] - t) if t.is_floating_point() else torch.zeros_like(t) for name, t in theta1.items()/        name: (theta2[name] - t) if t.is_floating_point() and "running" not in name else torch.zeros_like(t) for name, t in theta1.items()/'
FILE[directions-x1.005]="lossbench/directions.py"
SED[directions-x1.005]='s/        scale = target \/ (d_norms + EPS)$/        scale = 1.005 * target \/ (d_norms + EPS)/'
FILE[directions-x1.001]="lossbench/directions.py"
SED[directions-x1.001]='s/        scale = target \/ (d_norms + EPS)$/        scale = 1.001 * target \/ (d_norms + EPS)/'
FILE[bn-fold-eps-1e-3]="lossbench/engine.py"
SED[bn-fold-eps-1e-3]='s/scale = bn.weight \/ torch.sqrt(bn.running_var + bn.eps)/scale = bn.weight \/ torch.sqrt(bn.running_var + 1e-3)/'
FILE[hessian-half-images]="lossbench/reproduce.py"
SED[hessian-half-images]='s/    return make_batches(data.x_train\[lo:hi\], data.y_train\[lo:hi\], batch or samples, device=device)/    return make_batches(data.x_train[lo:lo + samples \/\/ 2], data.y_train[lo:lo + samples \/\/ 2], batch or samples, device=device)/'
FILE[layer-not-filter]="lossbench/directions.py"
SED[layer-not-filter]='s/    if norm == "filter" or norm == "dfilter":/    if norm == "dfilter":/; s/    elif norm == "layer":/    elif norm in ("layer", "filter"):/'
FILE[uniform-draws]="lossbench/directions.py"
SED[uniform-draws]='s/out\[name\] = torch.randn(t.shape, generator=g/out[name] = torch.rand(t.shape, generator=g/'
names=("$@"); [ "${names[0]}" = all ] && names=(control "${!FILE[@]}" swapped-baseline)
for name in "${names[@]}"; do
  rm -rf $mut; mkdir -p $mut; (cd $main && tar --exclude=.venv --exclude=.git --exclude=.benchmarks --exclude=results --exclude=.pytest_cache -cf - .) | tar -xf - -C $mut
  if [ "$name" = swapped-baseline ]; then
    cp $mut/baselines/small/resnet20-bs2000-s0.json $mut/baselines/small/resnet20-sgd-wd0.0005-bs128-s0.json
  elif [ "$name" = mean-of-batch-means ]; then
    for f in ${FILE[$name]}; do sed -i "${SED[$name]}" $mut/$f; done
    # the reference evaluation: each batch weighted by n / batches instead of its size
    sed -i 's/        for inputs, targets in batches:$/        batches = list(batches); n_batches_mut = sum(len(t) for _, t in batches) \/ len(batches)\n        for inputs, targets in batches:/' $mut/lossbench/evaluate.py
    # the fast engine: each split's pieces of the shared passes weighted by the split's mean piece size
    sed -i 's/^    def sums() -> list\[tuple\[Tensor, Tensor\]\]:$/    n_mean_mut = [n \/ sum(1 for _, _, rs in passes for r in rs if r[0] == k) for k, n in enumerate(counts.values())]\n\n    def sums() -> list[tuple[Tensor, Tensor]]:/' $mut/lossbench/engine.py
  elif [ "$name" != control ]; then
    for f in ${FILE[$name]}; do sed -i "${SED[$name]}" $mut/$f; done
  fi
  changed=$(cd $mut && for f in lossbench/*.py baselines/small/*.json; do cmp -s $f $main/$f || echo $f; done | tr '\n' ' ')
  echo "=== $name: changed $changed" > $out/$name.log
  if [ -z "$changed" ] && [ "$name" != control ]; then
    # a break whose sed no longer matches the code would pass as if the checks had missed it
    echo "ERROR: the break $name changed no file: its sed no longer matches the code; update it" | tee -a $out/$name.log
    continue
  fi
  sel=$SEL; [ "$name" = interp-without-bn-stats ] && sel=interpolation
  [ "$name" = control ] && sel="$SEL or interpolation"
  (cd $mut && PYTHONPATH=$mut OMP_NUM_THREADS=1 timeout 1500 ${PYTHON:-$main/.venv/bin/python} -m pytest benchmarks --benchmark-disable -q \
      -p no:cacheprovider -k "$sel" 2>&1 | grep -E "FAIL |^FAILED|passed|failed|error|Error|baselines:|differ|baseline file" >> $out/$name.log)
  tail -3 $out/$name.log
done
