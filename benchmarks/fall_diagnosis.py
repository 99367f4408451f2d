"""What a net that falls back to chance during training loses: its per-epoch checkpoints, measured.

The authors' ResNet-56 without shortcuts at the `small` scale falls back to chance at lr 0.1 (running
train accuracy 0.4-0.7, then 0.10 within an epoch or two) and some seeds never recover a minimum
(benchmarks/RESULTS.md). This reads a training cache folder of ``lossbench train`` (``config.json`` and
``epoch-NNNN.pt``, one per epoch) and prints, for each chosen epoch, on the first ``--images`` training
images with BatchNorm in train mode (as the running train accuracy is measured):

- the loss and accuracy;
- ``logit sd``: the standard deviation of each logit over the images, averaged over the classes (0: the
  output does not depend on the input);
- ``feature cos``: the mean cosine similarity between two images' pooled features before the readout
  (the last BatchNorm's output after ReLU, averaged over space; 1: every image looks the same to the
  readout);
- ``dead``: the share of BatchNorm channels whose output is <= 0 on every image and every pixel (dead
  after the ReLU that follows), mean and worst over the layers;
- ``|gamma|``: the mean BatchNorm scale, and ``|W|``: the mean Frobenius norm of the convolutions
  (weight decay shrinks both);
- ``grad med/max``: the global L2 norm of the loss gradient (weight decay's term not included) on
  consecutive batches of ``--batch`` images, median and largest: the scale a gradient-clipping bound
  (``RunConfig.clip_grad_norm``) is set against.

    python benchmarks/fall_diagnosis.py /work/cache-train/a06cfbc5... 0 10 58 59 60 70
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from lossbench.config import RunConfig
from lossbench.data import load_dataset
from lossbench.train import checkpoint_path, make_model


def epoch_stats(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """The measures above for ``model`` (its weights as loaded) on images ``x`` (N, 3, H, W), labels
    ``y`` (N,); BatchNorm in train mode (the batch's own statistics), no gradient, nothing changed
    but the BatchNorm running statistics."""
    if len(x) < 2:
        raise ValueError(f"{len(x)} image(s): the feature cosine is between two images; give at least 2")
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise ValueError("the model has no BatchNorm2d layer: this diagnosis reads BatchNorm outputs")
    outs: list[Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: outs.append(o.detach())) for m in norms]
    model.train()
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    dead = torch.stack([(o <= 0).all(dim=0).all(dim=(1, 2)).float().mean() for o in outs])
    pooled = nn.functional.normalize(outs[-1].clamp(min=0).mean(dim=(2, 3)), dim=1)
    n = len(x)
    gram = pooled @ pooled.T
    # off the diagonal; the trace, not n: an image whose features are all 0 has a 0 there, not 1
    cos = (gram.sum() - gram.diagonal().sum()) / (n * (n - 1))
    with torch.no_grad():
        convs = torch.stack([m.weight.norm() for m in model.modules() if isinstance(m, nn.Conv2d)])
        gamma = torch.stack([m.weight.abs().mean() for m in norms]).mean()
    return {
        "loss": float(nn.functional.cross_entropy(logits, y)),
        "acc": float((logits.argmax(1) == y).float().mean()),
        "logit_sd": float(logits.std(dim=0).mean()),
        "feature_cos": float(cos),
        "dead_mean": float(dead.mean()),
        "dead_max": float(dead.max()),
        "gamma": float(gamma),
        "conv_norm": float(convs.mean()),
    }


def grad_norms(model: nn.Module, x: Tensor, y: Tensor, batch: int) -> Tensor:
    """The loss gradient's global L2 norm on each whole batch of ``batch`` consecutive images of ``x``
    (N, 3, H, W), BatchNorm in train mode as in training; shape (N // batch,). Changes only the BatchNorm
    running statistics and the parameters' ``.grad``."""
    if len(x) < batch:
        raise ValueError(f"{len(x)} image(s) make no batch of {batch}: give --images >= --batch")
    model.train()
    out = []
    for k in range(len(x) // batch):
        model.zero_grad(set_to_none=True)
        xb, yb = x[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
        nn.functional.cross_entropy(model(xb), yb).backward()
        out.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm())
    model.zero_grad(set_to_none=True)
    return torch.stack(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: python benchmarks/fall_diagnosis.py CACHE/<hash> 0 58 60 70")
    parser.add_argument("folder", type=Path, help="a training cache folder: config.json and epoch-NNNN.pt files")
    parser.add_argument("epochs", type=int, nargs="+", help="epochs whose checkpoints to measure")
    parser.add_argument("--images", type=int, default=1000, help="training images measured (default 1000)")
    parser.add_argument("--batch", type=int, default=128,
                        help="images per batch of the gradient norms (default 128, the matrix's batch size)")
    args = parser.parse_args(argv)
    if args.images < args.batch:
        parser.error(f"--images {args.images} makes no batch of --batch {args.batch} for the gradient norm: "
                     f"give --images >= --batch, or a smaller --batch")
    if not (args.folder / "config.json").is_file():
        parser.error(f"{args.folder} has no config.json: give a folder of `lossbench train`'s cache")
    missing = [e for e in args.epochs if not checkpoint_path(args.folder, e).is_file()]
    if missing:
        parser.error(f"no checkpoint for epoch(s) {missing} in {args.folder} (the cache keeps epoch-NNNN.pt per epoch)")
    torch.set_num_threads(1)
    config = RunConfig.from_dict(json.loads((args.folder / "config.json").read_text()))
    model = make_model(config)
    data = load_dataset(config)
    x, y = data.x_train[: args.images], data.y_train[: args.images]
    print(f"{config.config_id} seed {config.seed}, {len(x)} training images, BatchNorm in train mode")
    print("epoch   loss    acc  logit sd  feature cos  dead mean/max  |gamma|  |W|    grad med/max")
    for epoch in args.epochs:
        state = torch.load(checkpoint_path(args.folder, epoch), map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        s = epoch_stats(model, x, y)
        g = grad_norms(model, x, y, args.batch)
        print(f"{epoch:5d}  {s['loss']:5.3f}  {s['acc']:5.3f}  {s['logit_sd']:8.3f}  {s['feature_cos']:11.3f}  "
              f"{s['dead_mean']:.3f}/{s['dead_max']:.3f}    {s['gamma']:5.3f}  {s['conv_norm']:5.2f}  "
              f"{float(g.median()):6.2f}/{float(g.max()):.2f}", flush=True)


if __name__ == "__main__":
    main()
