"""``python -m lossbench``: train, surface, plot (see ``--help`` of each sub-command).

Each ``cmd_*`` function turns its argparse ``Namespace`` into typed library calls; nothing below this
module sees a ``Namespace``.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Sequence

import numpy as np

# torch is imported by the sub-commands, not here: --help and a mistyped option answer at once
from .cli_inputs import add_model_source, config_from_args, eval_samples, in_dtype, load_data, load_subject, loss_of
from .config import add_dtype_option, add_run_options, get_scale

EPILOG_TRAIN = """examples:
  python -m lossbench train --arch resnet56 --no-shortcut --batch-size 2000 --scale ci
  python -m lossbench train --all --scale ci --jobs 2    # the whole ci matrix, one process per core
  python -m lossbench train --arch resnet20 --seed 3 --epochs 2
  # the small reference nets, resumable, one background process per core with its own list:
  nohup python -m lossbench train --scale small --all --only resnet56-bs128-s0 resnet20-bs128-s0 &

Training runs with one intra-op thread (the weights are then a function of the config on a given
platform and torch); an interrupted run resumes from its last finished epoch.
"""


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a network of the reproduction matrix (cached)",
                       description="Train one config of a scale's matrix, or all of them, with the cache.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    p.add_argument("--arch", default="resnet20", help="resnet20 | resnet56 | resnet110 | vgg9 (default resnet20)")
    p.add_argument("--no-shortcut", dest="shortcut", action="store_false", help="remove the skip connections")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size of the config (default 128)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="training seed (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="override the scale's epoch count")
    p.add_argument("--all", action="store_true",
                   help="train every config of the scale: the matrix, then the filter-normalisation experiment")
    p.add_argument("--only", nargs="+", type=_config_ids, default=None, metavar="CONFIG_ID",
                   help="with --all: just these config ids (space- or comma-separated) (e.g. resnet56-noshort-bs128-s0), in the order given; "
                        "run one process per core, each with its own list. Also names the scale's GPU-only "
                        "configs (small: resnet110[-noshort]-bs128-s0, resnet56-w2/-w4-bs128-s0)")
    p.add_argument("--jobs", type=int, default=1,
                   help="with --all: train this many configs at once, one single-threaded process each (the "
                        "weights are the same as one by one); default 1")
    p.add_argument("--test-every", type=_positive_int, default=1, metavar="N",
                   help="evaluate the test set every N epochs and after the last (default 1): on a CPU at the "
                        "small scale each evaluation is 27-36 %% of an epoch's time; the weights are the same")
    p.add_argument("--channels-last", action="store_true",
                   help="train in the NHWC memory layout: 1.1-1.7x faster on a CPU (benchmarks/RESULTS.md) but "
                        "other convolution kernels, so other weights: separate configs, ids ending in -cl, "
                        "never the shipped nets or the baselines' configs")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    configs = list(get_scale(args.scale).all_configs) if args.all else [config_from_args(args)]
    args.only = _flat_ids(args.only)
    if args.only:
        if not args.all:
            raise ValueError("--only selects from the scale's configs; pass it with --all")
        by_id = {c.config_id: c for c in get_scale(args.scale).known_configs}
        unknown = [name for name in args.only if name not in by_id]
        if unknown:
            raise ValueError(f"unknown config id(s) {', '.join(unknown)} in scale {args.scale!r}; "
                             f"expected some of {', '.join(by_id)}")
        configs = [by_id[name] for name in args.only]
    if args.all and args.seed:
        configs = [c.replace(seed=args.seed) for c in configs]
    if args.all and args.epochs is not None:
        configs = [c.replace(epochs=args.epochs) for c in configs]
    if args.channels_last:
        configs = [c.replace(channels_last=True) for c in configs]
    if args.jobs > 1:
        from .train import train_many

        train_many(configs, cache_dir=args.cache_dir, device=args.device, data_dir=args.data_dir, workers=args.jobs,
                   test_every=args.test_every)
    print(f"{'config':<36} {'train loss':>10} {'train acc':>9} {'test acc':>8}  checkpoint")
    for config in configs:
        result = train(config, device=args.device, cache_dir=args.cache_dir, data_dir=args.data_dir,
                       test_every=args.test_every)
        f = result.final
        cached = " (cached)" if result.from_cache else ""
        print(f"{config.config_id:<36} {f['train_loss']:>10.4f} {f['train_acc']:>9.3f} {f['test_acc']:>8.3f}  "
              f"{result.checkpoint(config.epochs)}{cached}", flush=True)
    return 0


EPILOG_SURFACE = """examples:
  # a 51x51 surface that evaluates all images only where the loss is within ln 10 of the centre's
  python -m lossbench surface --scale small --arch resnet56 --engine fast --x -1:1:51 --y -1:1:51 \\
      --eval-samples 2000 --adaptive auto -o r56-adaptive.h5 --plot
  # the plane of the Hessian's top two eigenvectors (unit norm: alpha is a distance in weight space)
  python -m lossbench surface --model model.py:make_net --weights net.pt --data data.pt \\
      --directions hessian --x -0.5:0.5:21 --y -0.5:0.5:21 -o eig-plane.h5 --plot
  # 2D filter-normalised surface of the ci ResNet-56 (trained first if not cached), then plots
  python -m lossbench surface --arch resnet56 --scale ci --x -1:1:21 --y -1:1:21 -o r56.h5 --plot
  # 1D line of your own checkpoint, train and test sets
  python -m lossbench surface --checkpoint epoch-0006.pt --x -1:1:51 --dataset train,test -o line.h5
  # your own model and data: model.py defines make_net(width=...), net.pt holds its state dict,
  # data.pt a dict of tensors x, y (or train_x, train_y, test_x, test_y); mse for a regression net
  python -m lossbench surface --model model.py:make_net --model-kwargs '{"width": 64}' --weights net.pt \\
      --data data.pt --loss crossentropy --x -1:1:51 -o mine-1d.h5 --plot
  python -m lossbench surface --model model.py:make_net --weights net.pt --data data.pt \\
      --x -1:1:31 --y -1:1:31 -o mine-2d.h5 --plot
  # 1D interpolation from the batch-128 to the batch-2000 solution (the paper's Figure 3)
  python -m lossbench surface --arch resnet20 --target-batch-size 2000 --x -0.5:1.5:41 -o interp.h5
  # the paper's 51x51 over 50 000 CIFAR-10 images on one GPU (H200, bf16: ~4.4 min projected, RESULTS.md)
  python -m lossbench surface --arch resnet56 --scale paper --device cuda --engine fast --precision bf16 \\
      --cuda-graph --compile max-autotune-no-cudagraphs --fast-batch 12500 --x -1:1:51 --y -1:1:51 -o r56.h5
  # sharded over processes (gloo on CPUs; on a multi-GPU node use --device cuda: one GPU per rank, NCCL)
  torchrun --nproc-per-node 2 -m lossbench surface --arch resnet20 --x -1:1:21 --y -1:1:21 -o s.h5

An interrupted run resumes when started again with the same arguments and output file; a sharded run
resumes from whatever each rank had checkpointed.
"""

EPILOG_PLOT = """examples:
  python -m lossbench plot r56.h5                    # contour, filled contour, heat map, 3D (2D files)
  python -m lossbench plot line.h5 --loss-max 5      # loss and accuracy curves (1D files)
  python -m lossbench plot r56.h5 --vmin 0.1 --vmax 10 --vlevel 0.5 --vtp --log
  python -m lossbench plot r56.h5 --interactive      # also r56-interactive.html: the surface to rotate
                                                     # (one file, works offline: plotly.js inside)
  python -m lossbench plot eig-map.h5 --interactive  # |min/max eigenvalue| in 3D; connect files: both paths
"""


def _non_negative_int(text: str) -> int:
    """``--seed``-like values: an integer >= 0 (a torch.Generator takes no negative seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: expected an integer >= 0")
    return value


def _positive_int(text: str) -> int:
    """A count such as ``--test-every``: an integer >= 1."""
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0: expected an integer >= 1")
    return value


def _config_ids(text: str) -> list[str]:
    """``--only`` type: one or more config ids, comma-separated (the option also takes several words)."""
    ids = [t for t in text.split(",") if t]
    if not ids:
        raise argparse.ArgumentTypeError(f"{text!r}: expected config ids, e.g. resnet56-noshort-bs128-s0")
    return ids


def _flat_ids(only: list[list[str]] | None) -> list[str] | None:
    return [i for group in only for i in group] if only else None


def _seconds(text: str) -> float:
    """``--checkpoint-seconds``: a finite number >= 0 (0 saves after every point)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value}: expected a number of seconds >= 0 (0: save after every point)")
    return value


def _axis_arg(text: str):
    """``--x``/``--y`` type: :func:`lossbench.axis.parse_axis`, its error shown in its own words
    (argparse prints only "invalid value" for a plain ValueError)."""
    from .axis import parse_axis

    try:
        return parse_axis(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_surface(sub: argparse._SubParsersAction) -> None:
    from .config import DIR_TYPES, IGNORES, NORMS
    parse_axis = _axis_arg

    p = sub.add_parser("surface", help="compute a 1D line, a 2D surface or an interpolation into an HDF5 file",
                       description="Evaluate L(theta + alpha delta + beta eta) on a grid (Li et al. 2018).",
                       epilog=EPILOG_SURFACE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    add_model_source(p)
    g = p.add_argument_group("grid and directions")
    g.add_argument("--x", type=parse_axis, default=None, help="alpha axis min:max:num (default -1:1:51; -0.5:1.5:41 for interpolation)")
    g.add_argument("--y", type=parse_axis, default=None, help="beta axis min:max:num; omit for a 1D line")
    g.add_argument("--norm", default="filter", choices=NORMS, help="direction normalisation (default filter)")
    g.add_argument("--ignore", default="biasbn", choices=IGNORES, help="biasbn: zero direction on biases and BN (default)")
    g.add_argument("--dir-type", default="weights", choices=DIR_TYPES, help="weights (parameters) or states (incl. BN statistics)")
    g.add_argument("--seed", type=_non_negative_int, default=0, help="seed of delta; eta uses seed+1 (default 0)")
    g.add_argument("--orthogonalize", action="store_true", help="make eta orthogonal to delta after normalisation")
    g.add_argument("--directions", default="random", choices=["random", "hessian", "hessian-minmax"],
                   help="random (seeded Gaussian, normalised by --norm; default), or the plane of the Hessian's top "
                        "two eigenvectors (hessian) or of its largest and smallest (hessian-minmax): unit-norm "
                        "vectors over the parameters --ignore leaves, so alpha is a distance in parameter space")
    g.add_argument("--max-iter", type=int, default=200,
                   help="with --directions hessian*: Lanczos steps at most (default 200)")
    g.add_argument("--tol", type=float, default=1e-3,
                   help="with --directions hessian*: residual of each eigenpair relative to its |lambda| (default "
                        "1e-3); unconverged eigenvectors are refused")
    g.add_argument("--target", default=None, help="checkpoint theta2: interpolate along theta2 - theta1 (states)")
    g.add_argument("--target-batch-size", type=int, default=None,
                   help="interpolate to the same config trained at this batch size")
    e = p.add_argument_group("evaluation and output")
    e.add_argument("--dataset", default="train", help="comma-separated splits to evaluate: train, test (default train)")
    e.add_argument("--eval-samples", type=int, default=None, help="first N images per split (default: the scale's)")
    e.add_argument("--eval-batch", type=int, default=500, help="images per forward pass (default 500)")
    e.add_argument("-o", "--output", default=None, help="HDF5 output (default results/<config_id>/<kind>.h5)")
    e.add_argument("--overwrite", action="store_true", help="start over even if the output exists")
    e.add_argument("--allow-nonfinite", action="store_true", help="record NaN/inf losses instead of stopping")
    e.add_argument("--plot", action="store_true", help="also write the plots next to the output")
    e.add_argument("--checkpoint-seconds", type=_seconds, default=10.0,
                   help="write the finished points to the output at least this often (default 10); an "
                        "interrupted run (Ctrl-C, SIGTERM, a crash) resumes from the last write")
    e.add_argument("--adaptive", default=None, metavar="LEVEL",
                   help="spend the images where the contours are: every point on a random eighth of the images "
                        "first, then the rest only where the loss could be below LEVEL (nats; 'auto': the "
                        "centre's loss + ln 10) and at their neighbours; the other points keep the slice's value "
                        "and standard error (train_loss_stderr, train_exact = 0). Contours below LEVEL are the full "
                        "grid's; a point left on the slice is below LEVEL with probability < 1e-4")
    e.add_argument("--engine", default="reference", choices=["reference", "fast"],
                   help="reference (plain evaluation) or fast (BN folded, channels-last; same numbers to ~1e-6)")
    f = p.add_argument_group("fast engine options (with --engine fast)")
    f.add_argument("--precision", default="float32", choices=["float32", "tf32", "bf16"],
                   help="float32 (default; matches the reference), tf32 on CUDA, or bf16 autocast on CUDA or on a "
                        "CPU with bf16 units (AMX, AVX512-BF16; 3-6x faster there, refused elsewhere): an error "
                        "against float32 that benchmarks/RESULTS.md reports; stored in the file")
    f.add_argument("--cuda-graph", action="store_true", help="replay each point as one captured CUDA graph")
    f.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                   help="torch.compile the model (the first point compiles); optional inductor MODE, e.g. "
                        "max-autotune-no-cudagraphs (slower to compile, fastest on a GPU)")
    f.add_argument("--fast-batch", type=int, default=None,
                   help="images per forward pass of the fast engine (default 256 on the CPU, 4096 on CUDA)")
    add_dtype_option(e.add_argument)
    p.set_defaults(func=cmd_surface)


def _distributed():
    """((rank, world), barrier) under torchrun (WORLD_SIZE > 1): a gloo (CPU) or NCCL (CUDA) group is
    started once; otherwise ((0, 1), None)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return (0, 1), None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()), dist.barrier


def _rank_device(name: str):
    """Under torchrun with CUDA, rank r uses its local GPU."""
    import os

    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return name


def cmd_surface(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._io import check_writable
    from .pipeline import SurfaceSpec, device_of, surface_file
    from .surface import Axis
    from .train import train

    options = {k: v for k, v in (("precision", args.precision), ("cuda_graph", args.cuda_graph),
                                 ("compile", args.compile), ("batch_size", args.fast_batch))
               if v not in (None, False, "float32")}
    if options and args.engine != "fast":
        flags = ", ".join("--" + k.replace("_", "-").replace("batch-size", "fast-batch") for k in options)
        raise ValueError(f"{flags} apply to the fast engine only; add --engine fast")
    device = device_of(_rank_device(args.device))
    if args.target_batch_size and args.target:
        raise ValueError("--target and --target-batch-size both name the second net: give one")
    loss_fn = loss_of(args)
    subject = load_subject(args, device)
    source = dict(subject.source)
    interpolation = bool(args.target or args.target_batch_size)
    target = None
    if args.target:
        from .cli_inputs import load_target

        target = load_target(args, subject, device)
        source["target"] = str(Path(args.target).resolve())
    elif args.target_batch_size:
        if subject.config is None:
            raise ValueError("--target-batch-size retrains a net of the reproduction matrix; for your own model "
                             "give the second net's weights with --target FILE")
        other = subject.config.replace(batch_size=args.target_batch_size)
        target = train(other, device=device, cache_dir=args.cache_dir, data_dir=args.data_dir).model
        source["target"] = other.to_dict()
    if args.directions != "random" and (interpolation or args.dir_type != "weights"):
        raise ValueError(f"--directions {args.directions} is a plane of weights: drop --target/--target-batch-size "
                         "and --dir-type states")
    if args.directions != "random" and args.y is None:
        raise ValueError(f"--directions {args.directions} is a plane: give --y too (e.g. --x -1:1:21 --y -1:1:21)")
    x = args.x or (Axis(-0.5, 1.5, 41) if interpolation else Axis(-1.0, 1.0, 51))
    data = in_dtype(args, subject, load_data(args, subject), target)
    splits = tuple(s.strip() for s in args.dataset.split(",") if s.strip())
    spec = SurfaceSpec(
        x=x, y=args.y, norm=args.norm, ignore=args.ignore,
        dir_type="states" if interpolation else args.dir_type, seed=args.seed, orthogonalize=args.orthogonalize,
        splits=splits, eval_samples=eval_samples(args.eval_samples, subject, args.scale, data, splits),
        eval_batch=args.eval_batch, interpolation=interpolation,
    )
    kind = "interpolation" if interpolation else ("surface-2d" if args.y else "line-1d")
    if args.directions != "random":
        kind = f"surface-{args.directions}"
    out = Path(args.output or Path("results") / subject.name / f"{kind}.h5")
    check_writable(out)
    attrs = {"config": subject.config.to_dict() if subject.config else None, "config_id": subject.name,
             "kind": kind, "loss": args.loss, **source}
    directions = None
    if args.directions != "random":
        directions, plane = _hessian_plane(args, subject.model, data, spec, loss_fn)
        attrs["directions"] = plane
    if args.precision != "float32":  # not float-identical: a file is resumed only in its own precision
        attrs["precision"] = args.precision
    shard, barrier = _distributed()
    if args.adaptive is not None:
        return _adaptive_surface(args, out, subject, data, spec, directions, attrs, options, loss_fn, shard)
    surface = surface_file(out, subject.model, data, spec, target=target, directions=directions, attrs=attrs,
                           overwrite=args.overwrite,
                           allow_nonfinite=args.allow_nonfinite, engine=args.engine, engine_options=options,
                           shard=shard, barrier=barrier, checkpoint_seconds=args.checkpoint_seconds,
                           loss_fn=loss_fn)
    if shard[0] != 0:
        return 0  # rank 0 reports and plots
    centre = surface.center_index()
    summary = ", ".join(f"{k}={v[centre]:.4f}" for k, v in surface.values.items())
    coords = [float(surface.alphas[centre[0]])] + ([] if surface.betas is None else [float(surface.betas[centre[1]])])
    where = ("at the centre" if not any(coords) else
             "at " + ", ".join(f"{n}={c:g}" for n, c in zip(("alpha", "beta"), coords)) + " (the point nearest the centre)")
    print(f"wrote {out} ({kind} of {subject.name}, grid {'x'.join(map(str, surface.shape))}); {where}: {summary}")
    if args.plot:
        from .figures import plot_file

        for path in plot_file(out):
            print(f"wrote {path}")
    return 0


def _adaptive_surface(args, out, subject, data, spec, directions, attrs, options, loss_fn, shard) -> int:
    """``surface --adaptive LEVEL``: the adaptive grid of :mod:`lossbench.adaptive` into ``out``."""
    from .pipeline import adaptive_file

    if shard[1] > 1:
        raise ValueError("--adaptive runs in one process; drop torchrun (or --adaptive)")
    if spec.interpolation or spec.splits != ("train",):
        raise ValueError("--adaptive evaluates the train split of a plane or line: use --dataset train and no "
                         "--target/--target-batch-size")
    if args.adaptive == "auto":
        level = None
    else:
        try:
            level = float(args.adaptive)
        except ValueError:
            raise ValueError(f"--adaptive {args.adaptive!r}: expected a loss level in nats (e.g. 2.5) or 'auto'") from None
    s = adaptive_file(out, subject.model, data, spec, level=level, directions=directions, attrs=attrs,
                      overwrite=args.overwrite, engine=args.engine, engine_options=options, loss_fn=loss_fn,
                      checkpoint_seconds=args.checkpoint_seconds)
    a = s.attrs["adaptive"]
    print(f"wrote {out} (adaptive {'x'.join(map(str, s.shape))} grid of {subject.name}): level {a['level']:.4g} nats; "
          f"{a['finished_points']} of {a['points']} points on all {a['images']} images, the rest on "
          f"{a['slice_images']}; {a['image_evaluations']} image evaluations, "
          f"{a['image_evaluations'] / a['full_grid_image_evaluations']:.0%} of the full grid's")
    if args.plot:
        from .figures import plot_file

        for path in plot_file(out):
            print(f"wrote {path}")
    return 0


def _hessian_plane(args: argparse.Namespace, model, data, spec, loss_fn):
    """(delta, eta) of ``surface --directions hessian|hessian-minmax`` and what the file records of them."""
    from .evaluate import make_batches
    from .hessian import eigenvector_directions, hessian_eigenpairs, hessian_params

    if args.max_iter < 1:
        raise ValueError(f"--max-iter {args.max_iter}: expected at least 1 Lanczos step")
    device = next(model.parameters()).device
    n = spec.eval_samples or len(data.x_train)
    batches = make_batches(data.x_train[:n], data.y_train[:n], spec.eval_batch, device=device)
    which = "top" if args.directions == "hessian" else "minmax"
    pairs = hessian_eigenpairs(model, loss_fn, batches, k=2, which=which, ignore=spec.ignore,
                               max_iter=args.max_iter, tol=args.tol, seed=args.seed)
    delta, eta = eigenvector_directions(model, pairs)  # refuses unconverged vectors, naming --max-iter
    theta_norm = float(sum(float(p.detach().double().norm()) ** 2 for p in hessian_params(model, spec.ignore).values())
                       ) ** 0.5
    plane = {"kind": args.directions, "eigenvalues": [float(v) for v in pairs.values],
             "residuals": [float(r) for r in pairs.residuals], "lanczos_steps": pairs.iterations,
             "tol": args.tol, "hessian_samples": n, "unit": "unit-norm eigenvectors: alpha is a distance in "
             "parameter space", "theta_norm": theta_norm}
    print(f"plane of the Hessian's {'top two' if which == 'top' else 'largest and smallest'} eigenvectors: "
          f"lambda {pairs.values[0]:.6g}, {pairs.values[1]:.6g} ({pairs.iterations} Lanczos steps, residuals "
          f"{pairs.residuals[0]:.2g}, {pairs.residuals[1]:.2g}); ||theta|| over those weights {theta_norm:.4g}: "
          f"alpha = {theta_norm:.4g} moves as far as alpha = 1 on a filter-normalised direction")
    return (delta, eta), plane


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot a surface, eigen-ratio or connect file (PNG and PDF; VTK with --vtp; HTML with --interactive)",
                       description="Plot an HDF5 surface written by lossbench or by the authors' code.",
                       epilog=EPILOG_PLOT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="surface .h5 file")
    p.add_argument("--key", default="train_loss", help="value to plot in 2D (default train_loss)")
    p.add_argument("--vmin", type=float, default=None, help="lowest contour level")
    p.add_argument("--vmax", type=float, default=None, help="highest contour level")
    p.add_argument("--vlevel", type=float, default=None, help="spacing of contour levels")
    p.add_argument("--zmax", type=float, default=None, help="clip 3D and VTK heights above this")
    p.add_argument("--loss-max", type=float, default=None, help="upper y limit of 1D loss curves")
    p.add_argument("--log", action="store_true", help="log scale for loss values (1D, 3D, VTK)")
    p.add_argument("--vtp", action="store_true", help="also export a ParaView .vtp mesh (2D)")
    p.add_argument("--interactive", action="store_true",
                   help="also write <stem>-interactive.html: the surface (or eigen-ratio map) as a 3D view to "
                        "rotate, or a connect file's paths; self-contained, opens offline")
    p.add_argument("-o", "--output", default=None, help="output stem (default: the file name without .h5)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from .figures import plot_connection_file, plot_eig_file, plot_file
    from .interactive import write_file_views
    from .store import is_connection_file, load_surface

    out = None if args.output is None else f"{args.output}-interactive.html"
    if is_connection_file(args.file):
        written = plot_connection_file(args.file)
    else:
        s = load_surface(args.file)
        if not s.done.all():
            print(f"note: {args.file} is partial ({int(s.done.sum())} of {s.done.size} points); the rest is drawn "
                  "blank. Run its surface command again to finish it", file=sys.stderr)
        if "min_eig" in s.values and args.key not in s.values:
            written = plot_eig_file(args.file)
        else:
            written = plot_file(args.file, key=args.key, vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel,
                                zmax=args.zmax, loss_max=args.loss_max, log=args.log, vtp=args.vtp, stem=args.output)
    if args.interactive:
        written.append(write_file_views(args.file, out, key=args.key, zmax=args.zmax))
    for path in written:
        print(f"wrote {path}")
    return 0


EPILOG_BASELINES = """examples:
  # values + recompute tolerances (float64, threads, engines, batch sizes, a repeat, and other machines'
  # code paths: MKL_CBWR branches, ATen's and oneDNN's branch below this CPU's own, each in a
  # subprocess) and the Hessian numbers' sampling error over image subsets, written to baselines/ci/
  python -m lossbench baselines --scale ci
  python -m lossbench baselines --scale ci --eig-maps
  python -m lossbench baselines --scale ci --main-job-files   # interpolations, the PCA-plane surface
  # every metric at training seeds 0, 1, 2 (the spread the claims use), added to the same files; at a
  # retrained scale also seed 0 trained on each code path (the band another machine's net is held to)
  python -m lossbench baselines --scale ci --spread --seeds 0 1 2
  python -m lossbench baselines --scale ci --eig-maps --spread --seeds 0 1 2
  python -m lossbench baselines --scale ci --main-job-files --spread --seeds 0 1 2
  # the shipped reference nets: no training, their weights are verified by sha256 (seeds 1-2 from
  # baselines/small/seed-nets/, where `python -m lossbench ship --seeds 1 2` put them)
  python -m lossbench baselines --scale small
  # the curves between seeds 0-1, 0-2, 1-2 of ResNet-20 with and without shortcuts (the connectivity claim)
  python -m lossbench baselines --scale small --connect
  # each training seed's Hessian numbers recomputed in float64 and on every other code path: the
  # all-seeds check's tolerance for them (part of --spread at the small scale; this adds it alone)
  python -m lossbench baselines --scale small --seed-jitter --seeds 1 2 --only resnet56-bs2000-s0
  # the Hessian spectra of the matrix: outliers, bulk edge, negative mass on two image subsets, the
  # density's nodes and the plane of the top two eigenvectors; then the summary at training seeds 1-2
  python -m lossbench baselines --scale small --spectrum --only resnet20-bs128-s0
  python -m lossbench baselines --scale small --spectrum --spread --seeds 0 1 2 --only resnet20-bs128-s0
"""


def _add_baselines(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baselines", help="write baselines: values with measured recompute tolerances, and seed spread",
                       description="Recompute the scale's metrics on the same weights under every legitimate "
                                   "variation (float64, threads, engine, batch size, repeat, other machines' code "
                                   "paths) and write value and "
                                   "tol to baselines/<scale>/<config_id>.json, with the Hessian numbers' sampling "
                                   "error; with --spread, add every metric at each training seed.",
                       epilog=EPILOG_BASELINES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    p.add_argument("--spread", action="store_true",
                   help="measure every metric at each training seed (--seeds) instead of the recompute tolerance")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--out", default="baselines", help="baselines root (default baselines)")
    p.add_argument("--results-dir", default=None, help="where the surfaces go (default .benchmarks/surfaces/<scale>-baselines)")
    p.add_argument("--only", nargs="+", type=_config_ids, default=None, metavar="CONFIG_ID",
                   help="config ids to do, space- or comma-separated (default: what the main job checks: the "
                        "whole matrix; with --eig-maps, each judged recipe's ResNet-56 pair at batch 128); may "
                        "also name an authors'-recipe net, whose files can be written before its matrix is judged")
    p.add_argument("--eig-variants", nargs="+", default=["dtype=float64", "threads=2", "hessian_batch=half", "repeat"],
                   help="with --eig-maps: the recompute variants measured (default all four; each costs a map)")
    p.add_argument("--code-paths", default="all", type=_code_paths, metavar="all|none|VAR=VALUE[,...]",
                   help="other machines' code paths whose deviation the tolerances cover, each measured in a "
                        "subprocess: all (default: every MKL_CBWR branch this CPU can take, and ATen's and oneDNN's "
                        "branch below this CPU's own: ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 on "
                        "an AVX-512 CPU, =default and =SSE41 on an AVX2-only one), none, or a list such as "
                        "MKL_CBWR=AVX2")
    # each of these writes another kind of file; two at once used to run only the first in cmd_baselines
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--eig-maps", action="store_true",
                   help="instead: the eigen-ratio map summaries of each recipe's ResNet-56 pair at batch 128 (eigmap/<id>.json)")
    mode.add_argument("--connect", action="store_true",
                   help="instead: train the mode-connecting curves between the training seeds 0-1, 0-2, 1-2 of the "
                        "scale's connect configs (connect/<id>.json and the control points beside it; seeds 1-2 "
                        "from seed-nets/)")
    mode.add_argument("--main-job-files", action="store_true",
                   help="instead: the interpolations (interpolation/sgd-wd<wd>.json) and the PCA-plane surface "
                        "(trajectory/<config_id>.json)")
    mode.add_argument("--spectrum", action="store_true",
                   help="instead: the Hessian spectra of the matrix (spectrum/<config_id>.json): the summary "
                        "numbers on two image subsets, the top eigenvalues with recompute tolerances, the SLQ "
                        "nodes and the eigenvector plane the report draws; with --spread, the summary at each "
                        "training seed")
    mode.add_argument("--seed-jitter", action="store_true",
                   help="instead: add to a stored spread each training seed's (--seeds) recompute jitter of its "
                        "Hessian numbers at the minimum (float64 and every other code path, against the stored "
                        "values; spread.jitter), the all-seeds check's tolerance for them; the values stay")
    p.set_defaults(func=cmd_baselines)


def _code_paths(text: str) -> tuple[dict[str, str], ...] | None:
    """``--code-paths``: ``all`` (None: every one the CPU can take), ``none`` or ``VAR=VALUE,...``."""
    from .codepaths import CODE_PATH_VARIABLES

    if text == "all":
        return None
    if text == "none":
        return ()
    out = []
    for item in text.split(","):
        var, _, value = item.partition("=")
        if var not in CODE_PATH_VARIABLES or not value:
            raise argparse.ArgumentTypeError(f"{item!r} is not VAR=VALUE with VAR one of {', '.join(CODE_PATH_VARIABLES)}"
                                             " (or use all / none)")
        out.append({var: value})
    return tuple(out)


def cmd_baselines(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .pipeline import device_of
    from .regenerate import (
        write_connect_baselines,
        write_eigmap_baselines,
        write_main_job_file_baselines,
        write_recompute_baselines,
        write_seed_jitter,
        write_spectrum_baselines,
        write_spread,
        write_trajectory_spread,
    )

    scale = get_scale(args.scale)
    common = dict(baselines_dir=args.out, device=device_of(args.device), cache_dir=args.cache_dir,
                  data_dir=args.data_dir,
                  results_dir=Path(args.results_dir or Path(".benchmarks") / "surfaces" / f"{scale.name}-baselines"))
    only = _flat_ids(args.only)
    paths = dict(code_paths=args.code_paths)
    if args.spread and (args.connect or args.seed_jitter):
        mode, seeds = ("--connect", "training seeds 0-1, 0-2, 1-2") if args.connect else ("--seed-jitter", "--seeds")
        raise ValueError(f"--spread does not apply to {mode}, which measures {seeds} by itself; drop --spread")
    try:
        if args.connect:
            if not scale.connect_configs:
                raise ValueError(f"the {scale.name} scale joins no seeds by curves (its connect_configs are empty); "
                                 "use --scale small")
            write_connect_baselines(scale, only=only, **common, **paths)
        elif args.eig_maps:
            write_eigmap_baselines(scale, variants=tuple(args.eig_variants),
                                   spread_seeds=tuple(args.seeds) if args.spread else None, only=only, **common,
                                   **paths)
        elif args.seed_jitter:
            write_seed_jitter(scale, seeds=tuple(args.seeds), only=only, **common, **paths)
        elif args.spectrum:
            write_spectrum_baselines(scale, only=only, spread_seeds=tuple(args.seeds) if args.spread else None,
                                     **common, **paths)
        elif args.main_job_files and args.spread:
            write_trajectory_spread(scale, seeds=tuple(args.seeds), **common, **paths)
        elif args.main_job_files:
            write_main_job_file_baselines(scale, **common, **paths)
        elif args.spread:
            write_spread(scale, seeds=tuple(args.seeds), only=only, **common, **paths)
        else:
            write_recompute_baselines(scale, only=only, **common, **paths)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    return 0


EPILOG_HESSIAN = """examples:
  # extreme eigenvalues and trace at the minimum of the ci ResNet-20
  python -m lossbench hessian --arch resnet20 --scale ci --trace-probes 32
  # the eigen-ratio map |min_eig / max_eig| over an 11x11 grid (same plane as `surface --seed 0`)
  python -m lossbench hessian --arch resnet56 --no-shortcut --x -1:1:11 --y -1:1:11 -o r56ns-eig.h5 --plot
  # your own model: a factory in model.py, its weights, your data (a dict of tensors x, y)
  python -m lossbench hessian --model model.py:make_net --weights net.pt --data data.pt --trace-probes 16

The Hessian is taken over the parameters a `--ignore biasbn` direction moves (weight tensors of more
than one dimension, frozen ones included); `--ignore none` takes every parameter. The loss must be a
batch mean.
"""

EPILOG_TRAJECTORY = """examples:
  # PCA of the per-epoch checkpoints of the ci ResNet-20, a 21x21 surface on that plane, and the plot
  python -m lossbench trajectory --arch resnet20 --scale ci --grid 21 --plot
  # your own training path: weight files in training order, the last one the final net
  python -m lossbench trajectory --model model.py:make_net --weights ep1.pt ep2.pt ep3.pt final.pt \\
      --data data.pt --grid 21 --plot
"""


def _add_output(p: argparse.ArgumentParser, output_help: str, plot_help: str) -> None:
    """--dtype, -o, --overwrite and --plot of a sub-command that writes one HDF5 file."""
    add_dtype_option(p.add_argument)
    p.add_argument("-o", "--output", default=None, help=output_help)
    p.add_argument("--overwrite", action="store_true", help="start over even if the output exists")
    p.add_argument("--plot", action="store_true", help=plot_help)


def _add_hessian_data(p: argparse.ArgumentParser) -> None:
    """The options that say which Hessian (``hessian`` and ``spectrum``): its parameters and its data."""
    p.add_argument("--ignore", default="biasbn", choices=["biasbn", "none"],
                   help="biasbn: Hessian over conv/linear weights only, as the authors (default)")
    p.add_argument("--eval-samples", type=int, default=None, help="training images per Hessian-vector product (default: the scale's)")
    p.add_argument("--eval-batch", type=int, default=500, help="images per forward pass (default 500)")


def _add_hessian(sub: argparse._SubParsersAction) -> None:
    parse_axis = _axis_arg

    p = sub.add_parser("hessian", help="Hessian extreme eigenvalues and trace at a point, or an eigen-ratio map",
                       description="Lanczos extreme eigenvalues (and Hutchinson trace) of the loss Hessian at the "
                                   "trained weights, or over a 2D grid (Li et al. 2018, section 6).",
                       epilog=EPILOG_HESSIAN, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    add_model_source(p)
    p.add_argument("--x", type=parse_axis, default=None, help="alpha axis min:max:num for a map (with --y)")
    p.add_argument("--y", type=parse_axis, default=None, help="beta axis min:max:num for a map")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seed of delta (eta: seed+1); also the Lanczos start vector")
    _add_hessian_data(p)
    p.add_argument("--max-iter", type=int, default=200, help="Lanczos steps at most (default 200)")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="residual tolerance of each end relative to its own |lambda| (default 1e-3); an end that "
                        "does not reach it is reported as unresolved, never as a number")
    p.add_argument("--trace-probes", type=int, default=0, help="also estimate tr(H) with this many Rademacher probes")
    _add_output(p, "map output (default results/<config_id>/eig-map.h5)", "plot the map next to the output")
    p.set_defaults(func=cmd_hessian)


def cmd_hessian(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .evaluate import make_batches
    from .hessian import hessian_eigs, hessian_params, hutchinson_trace
    from .metrics import eig_ratio
    from .pipeline import SurfaceSpec, device_of, eig_map_file

    device = device_of(args.device)
    if (args.x is None) != (args.y is None):
        raise ValueError("give both --x and --y for a map, or neither for the values at the minimum")
    if args.max_iter < 1:
        raise ValueError(f"--max-iter {args.max_iter}: expected at least 1 Lanczos step")
    loss_fn = loss_of(args)
    subject = load_subject(args, device)
    model, name = subject.model, subject.name
    data = in_dtype(args, subject, load_data(args, subject))
    n = eval_samples(args.eval_samples, subject, args.scale, data, ("train",))
    n = len(data.x_train) if n is None else n
    scope = hessian_params(model, args.ignore)  # raises, saying why, when it is empty
    count = sum(p.numel() for p in scope.values())
    if args.x is None:
        if not 1 <= n <= len(data.x_train):
            raise ValueError(f"--eval-samples {n}: expected 1 to {len(data.x_train)} (the train split's size)")
        batches = make_batches(data.x_train[:n], data.y_train[:n], args.eval_batch, device=device)
        r = hessian_eigs(model, loss_fn, batches, ignore=args.ignore, max_iter=args.max_iter, tol=args.tol,
                         seed=args.seed)
        eig_max, eig_min = r.values

        def shown(value: float, note: str) -> str:
            return f"{value:.6g}" if note == "" else f"unresolved ({note})"

        state = "converged" if r.converged else "NOT converged at one end (raise --max-iter)"
        print(f"{name}: lambda_max {shown(eig_max, r.note_max)}  lambda_min {shown(eig_min, r.note_min)}  "
              f"|min/max| {float(eig_ratio(eig_min, eig_max)):.4g}  ({r.iterations} Lanczos steps, {state}; "
              f"residuals {r.residual_max:.2g}, {r.residual_min:.2g}); Hessian over {len(scope)} tensors, "
              f"{count} parameters (--ignore {args.ignore}), {n} samples")
        if args.trace_probes:
            t = hutchinson_trace(model, loss_fn, batches, probes=args.trace_probes, ignore=args.ignore,
                                 seed=args.seed)
            print(f"{name}: trace {t.trace:.6g} +- {t.stderr:.2g} (standard error, {t.probes} probes)")
        return 0 if r.converged_max and (r.converged_min or r.min_below_floor) else 1
    spec = SurfaceSpec(x=args.x, y=args.y, norm="filter", ignore=args.ignore, seed=args.seed, eval_samples=n,
                       eval_batch=args.eval_batch)
    out = Path(args.output or Path("results") / name / "eig-map.h5")
    attrs = {"config": subject.config.to_dict() if subject.config else None, "config_id": name, "kind": "eig-map",
             "loss": args.loss, **subject.source}
    s = eig_map_file(out, model, data, spec, max_iter=args.max_iter, tol=args.tol, attrs=attrs,
                     overwrite=args.overwrite, loss_fn=loss_fn)
    from .metrics import eig_ratio_summary

    summary = eig_ratio_summary(s.alphas, s.betas, s.values["min_eig"], s.values["max_eig"])
    print(f"wrote {out} (eigenvalue map {s.shape[0]}x{s.shape[1]}): "
          + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
    if args.plot:
        from .figures import plot_eig_file

        for path in plot_eig_file(out):
            print(f"wrote {path}")
    return 0


EPILOG_SPECTRUM = """examples:
  # the eigenvalue density of the ci ResNet-20's Hessian (trained first if not cached), and its figure
  python -m lossbench spectrum --arch resnet20 --scale ci --plot
  # your own model: a factory in model.py, its weights, your data (a dict of tensors x, y)
  python -m lossbench spectrum --model model.py:make_net --weights net.pt --data data.pt -o spec.h5 --plot
  # a closer look: more probes (a smaller standard error) and more Lanczos steps (a finer quadrature)
  python -m lossbench spectrum --arch resnet56 --no-shortcut --probes 16 --steps 120 --plot

Stochastic Lanczos quadrature (Ubaru et al. 2017; Ghorbani et al. 2019): each of --probes Rademacher start
vectors gives --steps Lanczos steps (full reorthogonalisation, float64) whose Ritz values and squared first
eigenvector components are a quadrature of the spectral measure. The defaults (4 probes x 80 steps: 320
Hessian-vector products) make each probe exact for moments up to degree 159 and give every number a
standard error over the probes. The file keeps every probe's Ritz values and weights (redraw the density
at another width with lossbench.hessian.Spectrum), the density at --width x the span of the Ritz values,
and the top --top-k eigenpairs' values and residuals (each converged to --tol of its own |lambda|, or
marked not converged). An interrupted run resumes at its next probe.
"""


def _add_spectrum(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectrum", help="the Hessian's eigenvalue density (stochastic Lanczos quadrature) and top eigenvalues",
                       description="Estimate the eigenvalue density of the loss Hessian at the trained weights by "
                                   "stochastic Lanczos quadrature, with its top eigenvalues; write an HDF5 file "
                                   "and, with --plot, the density on a linear and a log scale.",
                       epilog=EPILOG_SPECTRUM, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    add_model_source(p)
    p.add_argument("--probes", type=int, default=None, help="Rademacher start vectors (default 4)")
    p.add_argument("--steps", type=int, default=None, help="Lanczos steps per probe (default 80)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the probes and the eigenpairs' start")
    p.add_argument("--top-k", type=int, default=5, help="top eigenpairs to converge and report (default 5)")
    p.add_argument("--max-iter", type=int, default=200, help="Lanczos steps at most for the top eigenpairs (default 200)")
    p.add_argument("--tol", type=float, default=1e-3, help="residual of each top eigenpair relative to its |lambda| (default 1e-3)")
    p.add_argument("--width", type=float, default=0.01,
                   help="Gaussian width of the drawn density as a fraction of the Ritz values' span (default 0.01)")
    _add_hessian_data(p)
    _add_output(p, "HDF5 output (default results/<config_id>/spectrum.h5)",
                "draw the density next to the output (PNG and PDF)")
    p.set_defaults(func=cmd_spectrum)


def cmd_spectrum(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._io import check_writable
    from .evaluate import make_batches
    from .hessian import SLQ_PROBES, SLQ_STEPS
    from .pipeline import device_of, spectrum_file

    probes = SLQ_PROBES if args.probes is None else args.probes
    steps = SLQ_STEPS if args.steps is None else args.steps
    for flag, value, low in (("--probes", probes, 1), ("--steps", steps, 1), ("--top-k", args.top_k, 1),
                             ("--max-iter", args.max_iter, 1)):
        if value < low:
            raise ValueError(f"{flag} {value}: expected at least {low}")
    if not 0 < args.tol < 1:
        raise ValueError(f"--tol {args.tol}: expected a number in (0, 1)")
    if not 0 < args.width < 1:
        raise ValueError(f"--width {args.width}: expected a fraction of the spectrum's span in (0, 1), e.g. 0.01")
    device = device_of(args.device)
    loss_fn = loss_of(args)
    subject = load_subject(args, device)
    data = in_dtype(args, subject, load_data(args, subject))
    n = eval_samples(args.eval_samples, subject, args.scale, data, ("train",))
    n = len(data.x_train) if n is None else n
    if not 1 <= n <= len(data.x_train):
        raise ValueError(f"--eval-samples {n}: expected 1 to {len(data.x_train)} (the train split's size)")
    out = Path(args.output or Path("results") / subject.name / "spectrum.h5")
    check_writable(out)
    batches = make_batches(data.x_train[:n], data.y_train[:n], args.eval_batch, device=device)
    attrs = {"config": subject.config.to_dict() if subject.config else None, "config_id": subject.name,
             "kind": "spectrum", **subject.source}
    r = spectrum_file(out, subject.model, batches, probes=probes, steps=steps, seed=args.seed, ignore=args.ignore,
                      top_k=args.top_k, tol=args.tol, max_iter=args.max_iter, width=args.width, attrs=attrs,
                      overwrite=args.overwrite, loss_fn=loss_fn)
    s, top = r["spectrum"], r["top"]
    m1, e1 = s.moment(1)
    neg, eneg, bneg = s.negative_mass()
    share, eshare, bshare = s.negative_share()
    tops = ", ".join(f"{v:.6g}" + ("" if ok else " (not converged)") for v, ok in zip(top.values, top.converged))
    print(f"wrote {out} (SLQ of {subject.name}'s Hessian over {s.dim} parameters, {s.probes} probes x "
          f"{s.nodes.shape[1]} steps, {n} samples)")
    print(f"  mean eigenvalue tr(H)/n {m1:.4g} +- {e1:.2g}; negative mass (below -1e-3 max|lambda|) "
          f"{neg:.3g} +- {eneg:.2g} (quadrature bound {bneg:.2g}); negative share of sum lambda^2 {share:.3g} +- "
          f"{eshare:.2g} (quadrature bound {bshare:.2g}); top {len(top.values)} eigenvalues: {tops}")
    q = r["summary"]
    if q and math.isfinite(q["outliers"]):
        print(f"  outliers above the largest ratio gap of the top {len(top.values)}: {q['outliers']:.0f}; bulk edge "
              f"{q['bulk_edge']:.4g}, lambda_max / bulk edge {q['outlier_ratio']:.3g} (the gap x{q['gap_ratio']:.3g}, "
              f"the next x{q['gap_runner_up']:.3g}); the density counts {q['slq_count_above_edge']:.2f} +- "
              f"{q['slq_count_above_edge_err']:.2g} (quadrature bound {q['slq_count_above_edge_bound']:.2g}) above it")
    elif q:
        print(f"  outliers: not decided (the largest ratio gap of the top {len(top.values)} is at its end, or an "
              "eigenvalue above it did not converge or is not positive): raise --top-k")
    if args.plot:
        from .figures import plot_spectrum_file

        for path in plot_spectrum_file(out):
            print(f"wrote {path}")
    return 0 if top.all_converged else 1


EPILOG_CONNECT = """examples:
  # two training seeds of the small scale's ResNet-20, both shipped (seeds 1-2 in seed-nets/), with the
  # settings of the suite's connectivity baselines (python -m lossbench baselines --scale small --connect)
  python -m lossbench connect --arch resnet20 --scale small --seeds 0 1 --epochs 40 --lr 0.03 \\
      --eval-samples 2000 --points 11 --plot
  # your own two minima: the same factory, two weight files, your data
  python -m lossbench connect A.pt B.pt --model model.py:make_net --data data.pt -o ab.h5 --plot

A quadratic Bezier curve theta(t) = (1-t)^2 theta_A + 2t(1-t) theta_C + t^2 theta_B (Garipov et al. 2018)
with its ends pinned at the two minima: theta_C starts at the midpoint (the straight line) and is
trained by SGD on the loss at t ~ U(0, 1), one t per minibatch (--epochs passes over the training images,
--lr, --momentum, --weight-decay). Then the loss and accuracy of each split at --points values of t along
the line and along the curve, BatchNorm statistics recomputed over the training images at each t. The
barrier of a path: max over t of its loss above the straight interpolation of the ends' losses (nats).
Training checkpoints to <output>.curve.pt; an interrupted run resumes with the same steps.
"""


def _add_connect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("connect", help="a mode-connecting Bezier curve between two minima, and the barriers",
                       description="Train a quadratic Bezier curve between two minima of the same architecture and "
                                   "compare the loss along it with the straight line's (mode connectivity).",
                       epilog=EPILOG_CONNECT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ends", nargs="*", metavar="WEIGHTS",
                   help="the two minima's weight files (with --model, or with --arch for the matrix's architecture)")
    add_run_options(p.add_argument)
    add_model_source(p, checkpoint=False)
    p.add_argument("--seeds", type=_non_negative_int, nargs=2, default=None, metavar=("A", "B"),
                   help="instead of weight files: two training seeds of the --arch config")
    c = p.add_argument_group("the curve")
    c.add_argument("--epochs", type=float, default=10.0, help="passes over the training images (default 10)")
    c.add_argument("--lr", type=float, default=0.01, help="SGD learning rate of the control point (default 0.01)")
    c.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    c.add_argument("--weight-decay", type=float, default=0.0, help="weight decay on the control point (default 0)")
    c.add_argument("--train-batch", type=int, default=128, help="images per training step (default 128)")
    c.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the sampled t and the batch order")
    c.add_argument("--points", type=int, default=21, help="values of t from 0 to 1 where both paths are evaluated")
    e = p.add_argument_group("evaluation and output")
    e.add_argument("--dataset", default="train,test", help="splits to evaluate (default train,test)")
    e.add_argument("--eval-samples", type=int, default=None, help="first N images per split (default: the scale's)")
    e.add_argument("--eval-batch", type=int, default=500, help="images per forward pass (default 500)")
    _add_output(p, "HDF5 output (default results/<name>/connect.h5)", "draw both paths next to the output")
    p.set_defaults(func=cmd_connect)


def cmd_connect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._io import check_writable
    from .connect import parameters_of
    from .pipeline import connect_file, device_of
    from .user_inputs import load_weights

    if bool(args.ends) == bool(args.seeds):
        raise ValueError("name the two minima once: two weight files (connect A.pt B.pt ...) or --seeds A B")
    if args.ends and len(args.ends) != 2:
        raise ValueError(f"expected two weight files (the two minima), got {len(args.ends)}")
    if args.seeds and args.seeds[0] == args.seeds[1]:
        raise ValueError(f"--seeds {args.seeds[0]} {args.seeds[1]} names one net twice; give two training seeds")
    for flag, value in (("--epochs", args.epochs), ("--lr", args.lr)):
        if not value > 0:
            raise ValueError(f"{flag} {value}: expected a positive number")
    if args.points < 3:
        raise ValueError(f"--points {args.points}: expected at least 3 (both ends and a point between)")
    if args.train_batch < 1:
        raise ValueError(f"--train-batch {args.train_batch}: expected a positive number of images")
    if args.weights is not None:
        raise ValueError("connect takes the two weight files as its arguments (connect A.pt B.pt); drop --weights")
    device = device_of(args.device)
    loss_fn = loss_of(args)
    if args.seeds:
        if args.train_seed is not None:
            raise ValueError("--seeds names both training seeds; drop --train-seed")
        first = load_subject(argparse.Namespace(**{**vars(args), "train_seed": args.seeds[0]}), device)
        second = load_subject(argparse.Namespace(**{**vars(args), "train_seed": args.seeds[1]}), device)
        theta_b = parameters_of(second.model)
        name = f"{first.name}-to-s{args.seeds[1]}"
    else:
        first = load_subject(argparse.Namespace(**{**vars(args), "weights": args.ends[0]}), device)
        theta_b = parameters_of(load_weights(first.rebuild(), args.ends[1]))
        name = f"{Path(args.ends[0]).stem}-to-{Path(args.ends[1]).stem}"
    data = in_dtype(args, first, load_data(args, first))
    if args.dtype != "float32":
        import torch

        theta_b = {n: t.to(getattr(torch, args.dtype)) for n, t in theta_b.items()}
    splits = tuple(s.strip() for s in args.dataset.split(",") if s.strip())
    out = Path(args.output or Path("results") / name / "connect.h5")
    check_writable(out)
    attrs = {"name": name, "kind": "connect", "a": first.source or first.name,
             "b": ({"train_seed": args.seeds[1]} if args.seeds else str(Path(args.ends[1]).resolve()))}
    c = connect_file(out, first.model, data, theta_a=parameters_of(first.model), theta_b=theta_b,
                     epochs=args.epochs, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                     seed=args.seed, points=args.points, splits=splits,
                     eval_samples=eval_samples(args.eval_samples, first, args.scale, data, splits),
                     eval_batch=args.eval_batch, train_batch=args.train_batch, attrs=attrs,
                     overwrite=args.overwrite, loss_fn=loss_fn)
    b, err = c["metadata"]["barrier"], c["metadata"].get("barrier_error", {})
    print(f"wrote {out} ({name}: {len(c['training_loss'])} curve training steps, {len(c['t'])} points per path)")

    def with_error(path: str, split: str) -> str:
        e = err.get(path, {}).get(split)
        return f"{b[path][split]:.4g}" + ("" if e is None or math.isnan(e) else f" ± {e:.2g}")

    for split in b["line"]:
        print(f"  {split}: barrier of the line {with_error('line', split)} nats, of the curve "
              f"{with_error('curve', split)} nats" + (" (± the sampling error over the images)"
                                                      if split in err.get("line", {}) else ""))
    if args.plot:
        from .figures import plot_connection_file

        for path in plot_connection_file(out):
            print(f"wrote {path}")
    return 0


def _add_trajectory(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trajectory", help="PCA directions of the training path, a surface on that plane, the plot",
                       description="Project the per-epoch checkpoints onto their top two principal directions and "
                                   "compute the loss surface on that plane (Li et al. 2018, section 7).",
                       epilog=EPILOG_TRAJECTORY, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    add_model_source(p, checkpoint=False, weight_list=True)
    p.add_argument("--grid", type=int, default=21, help="points per axis of the PCA-plane surface (default 21)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the random plane shown for contrast (default 0)")
    p.add_argument("--eval-samples", type=int, default=None, help="training images per grid point (default: the scale's)")
    p.add_argument("-o", "--output", default=None, help="surface output (default results/<config_id>/trajectory.h5)")
    p.add_argument("--overwrite", action="store_true", help="start over even if the output exists")
    p.add_argument("--plot", action="store_true", help="draw the path on the contours (and on a random plane)")
    p.set_defaults(func=cmd_trajectory)


def cmd_trajectory(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .pipeline import device_of, trajectory_file

    device = device_of(args.device)
    loss_fn = loss_of(args)
    subject = load_subject(args, device)
    if len(subject.checkpoints) < 3:
        raise ValueError(f"the training path has {len(subject.checkpoints)} weight file(s); PCA of a path needs at "
                         "least 3: pass them in training order, --weights epoch1.pt epoch2.pt ... final.pt")
    out = Path(args.output or Path("results") / subject.name / "trajectory.h5")
    data = load_data(args, subject)
    n = eval_samples(args.eval_samples, subject, args.scale, data, ("train",))
    s = trajectory_file(out, subject.model, subject.checkpoints, data, config=subject.config, name=subject.name,
                        grid=args.grid, eval_samples=n, seed=args.seed, loss_fn=loss_fn,
                        attrs={"loss": args.loss, **subject.source}, overwrite=args.overwrite)
    ev = s.attrs["explained_variance_ratio"]
    path, rand = np.asarray(s.attrs["path"]), np.asarray(s.attrs["random_path"])
    print(f"wrote {out}: PCA explained variance {100 * ev[0]:.1f} % + {100 * ev[1]:.1f} % = {100 * sum(ev):.1f} %; "
          f"path extent on the PCA plane {np.ptp(path, 0).round(4).tolist()}, on a random plane "
          f"{np.ptp(rand, 0).round(4).tolist()} (weight-space units)")
    if args.plot:
        from .figures import plot_trajectory_file

        for p in plot_trajectory_file(out):
            print(f"wrote {p}")
    return 0


EPILOG_SHIP = """examples:
  # after `python -m lossbench train --scale small --all`: ship every finished net of the scale
  python -m lossbench ship --scale small
  python -m lossbench ship --scale small --only resnet56-noshort-bs128-s0

Writes baselines/<scale>/nets/<config_id>.pt (float32 weights), .json (provenance with sha256) and
.pca.pt (the PCA of the training path from evenly spaced checkpoints). Nets not trained yet are listed
and skipped.
"""


def _add_ship(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ship", help="copy finished reference nets into baselines/<scale>/nets/ with provenance",
                       description="Ship trained nets of a scale (weights, provenance, PCA of the path) for the "
                                   "repository, so the reproduction evaluates them without training.",
                       epilog=EPILOG_SHIP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    p.add_argument("--only", nargs="+", type=_config_ids, default=None, metavar="CONFIG_ID",
                   help="just these config ids (seed 0 ids; space- or comma-separated)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                   help="training seeds to ship (default 0). Seed 0 of the matrix and of the authors' matrix goes to nets/ (weights in git), "
                        "other seeds to seed-nets/ (weights in git too: the claims' seed spread needs them) and the "
                        "GPU-only configs to gpu-nets/ (provenance in git, weights not)")
    p.add_argument("--baselines-dir", default="baselines", help="root of the baselines (default ./baselines)")
    p.add_argument("--commit", default=None,
                   help="the commit that trained the nets, recorded in the provenance (default: git's HEAD; "
                        "give it where the tree was copied without its .git, e.g. on a lent GPU machine)")
    p.set_defaults(func=cmd_ship)


def cmd_ship(args: argparse.Namespace) -> int:
    from .baselines import provenance
    from .errors import CheckpointError
    from .reference_nets import ship
    from .reproduce import converged
    from .train import load_trained

    configs = list(get_scale(args.scale).known_configs)
    args.only = _flat_ids(args.only)
    if args.only:
        by_id = {c.config_id: c for c in configs}
        unknown = [name for name in args.only if name not in by_id]
        if unknown:
            raise ValueError(f"unknown config id(s) {', '.join(unknown)} in scale {args.scale!r}")
        configs = [by_id[name] for name in args.only]
    commit = args.commit or provenance()["commit"]
    scale = get_scale(args.scale)
    matrix = {c.config_hash for c in scale.all_configs + scale.authors_configs}  # weights in git
    configs = [c.replace(seed=seed) for seed in args.seeds for c in configs]
    shipped = 0
    for config in configs:
        kind = ("nets" if config.seed == 0 else "seed-nets") if config.replace(seed=0).config_hash in matrix \
            else "gpu-nets"
        try:
            result = load_trained(config, cache_dir=args.cache_dir)
        except CheckpointError as exc:
            print(f"skip {config.config_id}: {exc}")
            continue
        recipe = "paper-sgd" if config.optimizer == "sgd" else "seed"
        path = ship(result, args.baselines_dir, args.scale, recipe=recipe, commit=commit,
                    converged=converged, kind=kind)
        f = result.final
        print(f"shipped {config.config_id:<34} train acc {f['train_acc']:.3f} test acc {f['test_acc']:.3f} -> {path}")
        shipped += 1
    print(f"{shipped} of {len(configs)} net(s) shipped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench",
        description="Loss landscapes of neural nets (Li et al., NeurIPS 2018): train, compute, plot.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="log progress messages to stderr (before or after the sub-command)")
    sub = _WithParents(sub, [verbose])
    _add_train(sub)
    _add_surface(sub)
    _add_plot(sub)
    _add_baselines(sub)
    _add_hessian(sub)
    _add_spectrum(sub)
    _add_connect(sub)
    _add_trajectory(sub)
    _add_ship(sub)
    return parser


class _WithParents:
    """``add_parser`` of a sub-parsers action with ``parents`` added to every sub-command (``-v``)."""

    def __init__(self, sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
        self._sub, self._parents = sub, parents

    def add_parser(self, *args, **kwargs) -> argparse.ArgumentParser:
        return self._sub.add_parser(*args, parents=[*kwargs.pop("parents", []), *self._parents], **kwargs)


def _join_axis_values(argv: Sequence[str]) -> list[str]:
    """``--x -1:1:51`` -> ``--x=-1:1:51``: argparse would take "-1:1:51" for an option otherwise."""
    out: list[str] = []
    it = iter(argv)
    for token in it:
        if token in ("--x", "--y"):
            value = next(it, None)
            out.append(token if value is None else f"{token}={value}")
        else:
            out.append(token)
    return out


def _configure_logging(verbose: bool) -> None:
    """-v: every info line of lossbench on stderr; without it warnings, and the grid's cost estimate
    (``lossbench.estimate``), which a long run should always say."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    root = logging.getLogger("lossbench")
    for h in list(root.handlers):
        if getattr(h, "_lossbench_cli", False):
            root.removeHandler(h)
    handler._lossbench_cli = True  # type: ignore[attr-defined]  (main() may run twice in one process)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("lossbench.estimate").setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_axis_values(sys.argv[1:] if argv is None else argv))
    _configure_logging(getattr(args, "verbose", False))
    from . import stop
    from ._malloc import keep_freed_memory_once
    from .errors import LossbenchError

    keep_freed_memory_once()
    terminated = []

    def on_sigterm(signum, frame):  # what batch schedulers send: save and stop as on Ctrl-C
        terminated.append(signum)
        stop.request(signum)  # raised again at the next point or step if this one is swallowed
        raise KeyboardInterrupt

    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return args.func(args)
    except (LossbenchError, ValueError, MemoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable output or a full disk: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{what}: finished points and epochs are saved; run the same command again to resume",
              file=sys.stderr)
        return 143 if terminated else 130
    finally:
        stop.clear()
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)


if __name__ == "__main__":
    sys.exit(main())
