"""``python -m lossbench``: train, surface, plot (see ``--help`` of each sub-command).

Each ``cmd_*`` function turns its argparse ``Namespace`` into typed library calls; nothing below this
module sees a ``Namespace``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

import numpy as np

from .config import add_run_options, find_config, get_scale, parse_model_name

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
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="override the scale's epoch count")
    p.add_argument("--all", action="store_true",
                   help="train every config of the scale: the matrix, then the filter-normalisation experiment")
    p.add_argument("--only", nargs="+", default=None, metavar="CONFIG_ID",
                   help="with --all: just these config ids (e.g. resnet56-noshort-bs128-s0), in the order given; "
                        "run one process per core, each with its own list. Also names the scale's GPU-only "
                        "configs (small: resnet110[-noshort]-bs128-s0, resnet56-w2/-w4-bs128-s0)")
    p.add_argument("--jobs", type=int, default=1,
                   help="with --all: train this many configs at once, one single-threaded process each (the "
                        "weights are the same as one by one); default 1")
    p.set_defaults(func=cmd_train)


def _config_from_args(args: argparse.Namespace):
    arch, depth = parse_model_name(args.arch)
    scale = get_scale(args.scale)
    if arch == "resnet":
        config = find_config(args.scale, arch=arch, depth=depth, shortcut=args.shortcut,
                             batch_size=args.batch_size, seed=args.seed)
    else:
        base = scale.configs[0]
        config = base.replace(arch=arch, depth=depth, shortcut=True, init="he_normal",
                              batch_size=args.batch_size, seed=args.seed)
    if getattr(args, "epochs", None) is not None:
        config = config.replace(epochs=args.epochs)
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    configs = list(get_scale(args.scale).all_configs) if args.all else [_config_from_args(args)]
    if args.only:
        if not args.all:
            raise SystemExit("error: --only selects from the scale's configs; pass it with --all")
        by_id = {c.config_id: c for c in get_scale(args.scale).known_configs}
        unknown = [name for name in args.only if name not in by_id]
        if unknown:
            raise SystemExit(f"error: unknown config id(s) {', '.join(unknown)} in scale {args.scale!r}; "
                             f"expected some of {', '.join(by_id)}")
        configs = [by_id[name] for name in args.only]
    if args.all and args.seed:
        configs = [c.replace(seed=args.seed) for c in configs]
    if args.all and args.epochs is not None:
        configs = [c.replace(epochs=args.epochs) for c in configs]
    if args.jobs > 1:
        from .train import train_many

        train_many(configs, cache_dir=args.cache_dir, device=args.device, data_dir=args.data_dir, workers=args.jobs)
    print(f"{'config':<36} {'train loss':>10} {'train acc':>9} {'test acc':>8}  checkpoint")
    for config in configs:
        result = train(config, device=args.device, cache_dir=args.cache_dir, data_dir=args.data_dir)
        f = result.final
        cached = " (cached)" if result.from_cache else ""
        print(f"{config.config_id:<36} {f['train_loss']:>10.4f} {f['train_acc']:>9.3f} {f['test_acc']:>8.3f}  "
              f"{result.checkpoint(config.epochs)}{cached}", flush=True)
    return 0


EPILOG_SURFACE = """examples:
  # 2D filter-normalised surface of the ci ResNet-56 (trained first if not cached), then plots
  python -m lossbench surface --arch resnet56 --scale ci --x -1:1:21 --y -1:1:21 -o r56.h5 --plot
  # 1D line of your own checkpoint, train and test sets
  python -m lossbench surface --checkpoint epoch-0006.pt --x -1:1:51 --dataset train,test -o line.h5
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
"""


def _add_model_source(p: argparse.ArgumentParser, *, checkpoint: bool = True) -> None:
    src = p.add_argument_group("model (a checkpoint, or a config of the scale's matrix, trained if not cached)")
    if checkpoint:
        src.add_argument("--checkpoint", default=None, help="an epoch-NNNN.pt written by lossbench train")
    # defaults are None so that a value given beside --checkpoint can be told apart (and refused if it conflicts)
    src.add_argument("--arch", default=None, help="resnet20 | resnet56 | resnet110 | vgg9 (default resnet20)")
    src.add_argument("--no-shortcut", dest="shortcut", action="store_const", const=False, default=None,
                     help="the net without skip connections")
    src.add_argument("--batch-size", type=int, default=None, help="training batch size of the config (default 128)")
    src.add_argument("--train-seed", type=int, default=None, help="training seed of the config (default 0)")


MODEL_DEFAULTS = {"arch": "resnet20", "shortcut": True, "batch_size": 128, "train_seed": 0}


def _conflicts_with_checkpoint(args: argparse.Namespace, config) -> list[str]:
    """The config options given beside --checkpoint that disagree with the checkpoint's own config."""
    have = {"arch": (config.arch, config.depth), "shortcut": config.shortcut, "batch_size": config.batch_size,
            "train_seed": config.seed}
    given = {k: getattr(args, k, None) for k in have}
    if given["arch"] is not None:
        given["arch"] = parse_model_name(given["arch"])
    flags = {"arch": "--arch", "shortcut": "--no-shortcut", "batch_size": "--batch-size", "train_seed": "--train-seed"}
    return [flags[k] if k == "shortcut" else f"{flags[k]} {getattr(args, k)}"
            for k in have if given[k] is not None and given[k] != have[k]]


def _load_model(args: argparse.Namespace, device):
    """(config, model, source attrs, TrainResult or None) from --checkpoint or the config options."""
    from pathlib import Path

    from .train import model_from_checkpoint, train

    if getattr(args, "checkpoint", None):
        config, model = model_from_checkpoint(args.checkpoint, device=device)
        conflicts = _conflicts_with_checkpoint(args, config)
        if conflicts:
            raise ValueError(f"--checkpoint {args.checkpoint} holds {config.config_id}, which {', '.join(conflicts)} "
                             "contradict(s): drop those options (the checkpoint says what the net is) or pick "
                             "another checkpoint")
        return config, model, {"checkpoint": str(Path(args.checkpoint).resolve())}, None
    filled = {k: (MODEL_DEFAULTS[k] if getattr(args, k, None) is None else getattr(args, k)) for k in MODEL_DEFAULTS}
    config = _config_from_args(argparse.Namespace(**{**vars(args), **filled, "seed": filled["train_seed"],
                                                     "epochs": None}))
    if get_scale(args.scale).shipped:
        from .reference_nets import load_reference, shipped_ids

        if config.config_id in shipped_ids("baselines", args.scale):
            ref = load_reference(config.config_id, "baselines", args.scale, device=device)
            if ref.config == config:  # the shipped reference net: no training
                return config, ref.model, {"reference_net": str(ref.path)}, None
    result = train(config, device=device, cache_dir=args.cache_dir, data_dir=args.data_dir)
    return config, result.model, {}, result


def _eval_samples(asked: int | None, scale, data, splits) -> int | None:
    """``--eval-samples`` as given (checked later against each split), else the scale's default: all
    of each split when the default covers them, else the default capped at the smallest split (a default
    is no request for more images than a checkpoint's data holds)."""
    if asked is not None:
        return asked
    known = [len(data.split(s)[0]) for s in splits if s in ("train", "test")]
    if known and scale.eval_samples >= max(known):
        return None
    return min([scale.eval_samples, *known])


def _axis_arg(text: str):
    """``--x``/``--y`` type: :func:`lossbench.surface.parse_axis`, its error shown in its own words
    (argparse prints only "invalid value" for a plain ValueError)."""
    from .surface import parse_axis

    try:
        return parse_axis(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_surface(sub: argparse._SubParsersAction) -> None:
    from .directions import DIR_TYPES, IGNORES, NORMS
    parse_axis = _axis_arg

    p = sub.add_parser("surface", help="compute a 1D line, a 2D surface or an interpolation into an HDF5 file",
                       description="Evaluate L(theta + alpha delta + beta eta) on a grid (Li et al. 2018).",
                       epilog=EPILOG_SURFACE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    _add_model_source(p)
    g = p.add_argument_group("grid and directions")
    g.add_argument("--x", type=parse_axis, default=None, help="alpha axis min:max:num (default -1:1:51; -0.5:1.5:41 for interpolation)")
    g.add_argument("--y", type=parse_axis, default=None, help="beta axis min:max:num; omit for a 1D line")
    g.add_argument("--norm", default="filter", choices=NORMS, help="direction normalisation (default filter)")
    g.add_argument("--ignore", default="biasbn", choices=IGNORES, help="biasbn: zero direction on biases and BN (default)")
    g.add_argument("--dir-type", default="weights", choices=DIR_TYPES, help="weights (parameters) or states (incl. BN statistics)")
    g.add_argument("--seed", type=int, default=0, help="seed of delta; eta uses seed+1 (default 0)")
    g.add_argument("--orthogonalize", action="store_true", help="make eta orthogonal to delta after normalisation")
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
    e.add_argument("--checkpoint-seconds", type=float, default=10.0,
                   help="write the finished points to the output at least this often (default 10); an "
                        "interrupted run (Ctrl-C, SIGTERM, a crash) resumes from the last write")
    e.add_argument("--engine", default="reference", choices=["reference", "fast"],
                   help="reference (plain evaluation) or fast (BN folded, channels-last; same numbers to ~1e-6)")
    f = p.add_argument_group("fast engine options (with --engine fast)")
    f.add_argument("--precision", default="float32", choices=["float32", "tf32", "bf16"],
                   help="float32 (default; matches the reference), or on CUDA tf32 / bf16 autocast: faster, "
                        "with an error against float32 that benchmarks/RESULTS.md reports; stored in the file")
    f.add_argument("--cuda-graph", action="store_true", help="replay each point as one captured CUDA graph")
    f.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                   help="torch.compile the model (the first point compiles); optional inductor MODE, e.g. "
                        "max-autotune-no-cudagraphs (slower to compile, fastest on a GPU)")
    f.add_argument("--fast-batch", type=int, default=None,
                   help="images per forward pass of the fast engine (default 256 on the CPU, 4096 on CUDA)")
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
    from .data import load_dataset
    from .pipeline import SurfaceSpec, device_of, surface_file
    from .surface import Axis
    from .train import model_from_checkpoint, train

    options = {k: v for k, v in (("precision", args.precision), ("cuda_graph", args.cuda_graph),
                                 ("compile", args.compile), ("batch_size", args.fast_batch))
               if v not in (None, False, "float32")}
    if options and args.engine != "fast":
        flags = ", ".join("--" + k.replace("_", "-").replace("batch-size", "fast-batch") for k in options)
        raise ValueError(f"{flags} apply to the fast engine only; add --engine fast")
    device = device_of(_rank_device(args.device))
    config, model, source, _ = _load_model(args, device)
    interpolation = bool(args.target or args.target_batch_size)
    target = None
    if args.target:
        _, target = model_from_checkpoint(args.target, device=device)
        source["target"] = str(Path(args.target).resolve())
    elif args.target_batch_size:
        other = config.replace(batch_size=args.target_batch_size)
        target = train(other, device=device, cache_dir=args.cache_dir, data_dir=args.data_dir).model
        source["target"] = other.to_dict()
    x = args.x or (Axis(-0.5, 1.5, 41) if interpolation else Axis(-1.0, 1.0, 51))
    scale = get_scale(args.scale)
    data = load_dataset(config, data_dir=args.data_dir)
    splits = tuple(s.strip() for s in args.dataset.split(",") if s.strip())
    spec = SurfaceSpec(
        x=x, y=args.y, norm=args.norm, ignore=args.ignore,
        dir_type="states" if interpolation else args.dir_type, seed=args.seed, orthogonalize=args.orthogonalize,
        splits=splits, eval_samples=_eval_samples(args.eval_samples, scale, data, splits),
        eval_batch=args.eval_batch, interpolation=interpolation,
    )
    kind = "interpolation" if interpolation else ("surface-2d" if args.y else "line-1d")
    out = Path(args.output or Path("results") / config.config_id / f"{kind}.h5")
    check_writable(out)
    attrs = {"config": config.to_dict(), "config_id": config.config_id, "kind": kind, **source}
    if args.precision != "float32":  # not float-identical: a file is resumed only in its own precision
        attrs["precision"] = args.precision
    shard, barrier = _distributed()
    surface = surface_file(out, model, data, spec, target=target, attrs=attrs, overwrite=args.overwrite,
                           allow_nonfinite=args.allow_nonfinite, engine=args.engine, engine_options=options,
                           shard=shard, barrier=barrier, checkpoint_seconds=args.checkpoint_seconds)
    if shard[0] != 0:
        return 0  # rank 0 reports and plots
    centre = surface.center_index()
    summary = ", ".join(f"{k}={v[centre]:.4f}" for k, v in surface.values.items())
    print(f"wrote {out} ({kind}, grid {'x'.join(map(str, surface.shape))}); at the centre: {summary}")
    if args.plot:
        from .figures import plot_file

        for path in plot_file(out):
            print(f"wrote {path}")
    return 0


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot a surface file (PNG and PDF; VTK with --vtp)",
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
    p.add_argument("-o", "--output", default=None, help="output stem (default: the file name without .h5)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from .figures import plot_file

    for path in plot_file(args.file, key=args.key, vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel,
                          zmax=args.zmax, loss_max=args.loss_max, log=args.log, vtp=args.vtp, stem=args.output):
        print(f"wrote {path}")
    return 0


EPILOG_BASELINES = """examples:
  # values (training seed 0, direction seed 0) and recompute tolerances (10 x the measured jitter
  # across threads, engines, batch sizes and a repeat), written to baselines/ci/
  python -m lossbench baselines --scale ci
  python -m lossbench baselines --scale ci --eig-maps
  # the seed-to-seed spread over 3 training seeds x 2 direction seeds, added to the same files
  python -m lossbench baselines --scale ci --spread --seeds 0 1 2 --dir-seeds 0 1
  # the shipped reference nets: no training, their weights are verified by sha256
  python -m lossbench baselines --scale small
"""


def _add_baselines(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baselines", help="write baselines: values with measured recompute tolerances, and seed spread",
                       description="Recompute the scale's metrics on the same weights under every legitimate "
                                   "variation (threads, engine, batch size, repeat) and write value and tol to "
                                   "baselines/<scale>/<config_id>.json; with --spread, add the seed-to-seed "
                                   "statistics over training and direction seeds.",
                       epilog=EPILOG_BASELINES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    p.add_argument("--spread", action="store_true",
                   help="measure the seed spread (training x direction seeds) instead of the recompute tolerance")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--dir-seeds", type=int, nargs="+", default=[0, 1], help="direction seeds (default 0 1)")
    p.add_argument("--out", default="baselines", help="baselines root (default baselines)")
    p.add_argument("--results-dir", default=None, help="where the surfaces go (default .benchmarks/surfaces/<scale>-spread)")
    p.add_argument("--only", default=None, help="comma-separated config_ids to do (default: the whole matrix)")
    p.add_argument("--eig-variants", nargs="+", default=["threads=2", "hessian_batch=half", "repeat"],
                   help="with --eig-maps: the recompute variants measured (default all three; each costs a map)")
    p.add_argument("--eig-maps", action="store_true",
                   help="instead: the eigen-ratio map summaries of the ResNet-56 pair at batch 128 (eigmap/<id>.json)")
    p.set_defaults(func=cmd_baselines)


def cmd_baselines(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .pipeline import device_of
    from .regenerate import write_eigmap_baselines, write_recompute_baselines, write_spread

    scale = get_scale(args.scale)
    common = dict(baselines_dir=args.out, device=device_of(args.device), cache_dir=args.cache_dir,
                  data_dir=args.data_dir,
                  results_dir=Path(args.results_dir or Path(".benchmarks") / "surfaces" / f"{scale.name}-baselines"))
    only = args.only.split(",") if args.only else None
    try:
        if args.eig_maps:
            write_eigmap_baselines(scale, variants=tuple(args.eig_variants),
                                   spread_seeds=tuple(args.seeds) if args.spread else None, **common)
        elif args.spread:
            write_spread(scale, seeds=tuple(args.seeds), dir_seeds=tuple(args.dir_seeds), only=only, **common)
        else:
            write_recompute_baselines(scale, only=only, **common)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None
    return 0


EPILOG_HESSIAN = """examples:
  # extreme eigenvalues and trace at the minimum of the ci ResNet-20
  python -m lossbench hessian --arch resnet20 --scale ci --trace-probes 32
  # the eigen-ratio map |min_eig / max_eig| over an 11x11 grid (same plane as `surface --seed 0`)
  python -m lossbench hessian --arch resnet56 --no-shortcut --x -1:1:11 --y -1:1:11 -o r56ns-eig.h5 --plot
"""

EPILOG_TRAJECTORY = """examples:
  # PCA of the per-epoch checkpoints of the ci ResNet-20, a 21x21 surface on that plane, and the plot
  python -m lossbench trajectory --arch resnet20 --scale ci --grid 21 --plot
"""


def _add_hessian(sub: argparse._SubParsersAction) -> None:
    parse_axis = _axis_arg

    p = sub.add_parser("hessian", help="Hessian extreme eigenvalues and trace at a point, or an eigen-ratio map",
                       description="Lanczos extreme eigenvalues (and Hutchinson trace) of the loss Hessian at the "
                                   "trained weights, or over a 2D grid (Li et al. 2018, section 6).",
                       epilog=EPILOG_HESSIAN, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    _add_model_source(p)
    p.add_argument("--x", type=parse_axis, default=None, help="alpha axis min:max:num for a map (with --y)")
    p.add_argument("--y", type=parse_axis, default=None, help="beta axis min:max:num for a map")
    p.add_argument("--seed", type=int, default=0, help="seed of delta (eta: seed+1); also the Lanczos start vector")
    p.add_argument("--ignore", default="biasbn", choices=["biasbn", "none"],
                   help="biasbn: Hessian over conv/linear weights only, as the authors (default)")
    p.add_argument("--eval-samples", type=int, default=None, help="training images per Hessian-vector product (default: the scale's)")
    p.add_argument("--eval-batch", type=int, default=500, help="images per forward pass (default 500)")
    p.add_argument("--max-iter", type=int, default=100, help="Lanczos steps at most (default 100)")
    p.add_argument("--tol", type=float, default=1e-3, help="relative residual tolerance (default 1e-3)")
    p.add_argument("--trace-probes", type=int, default=0, help="also estimate tr(H) with this many Rademacher probes")
    p.add_argument("-o", "--output", default=None, help="map output (default results/<config_id>/eig-map.h5)")
    p.add_argument("--overwrite", action="store_true", help="start the map over even if the output exists")
    p.add_argument("--plot", action="store_true", help="plot the map next to the output")
    p.set_defaults(func=cmd_hessian)


def cmd_hessian(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data import load_dataset
    from .evaluate import cross_entropy, make_batches
    from .hessian import hessian_eigs, hutchinson_trace
    from .metrics import eig_ratio
    from .pipeline import SurfaceSpec, device_of, eig_map_file

    device = device_of(args.device)
    config, model, source, _ = _load_model(args, device)
    data = load_dataset(config, data_dir=args.data_dir)
    n = _eval_samples(args.eval_samples, get_scale(args.scale), data, ("train",))
    if (args.x is None) != (args.y is None):
        raise ValueError("give both --x and --y for a map, or neither for the values at the minimum")
    n = len(data.x_train) if n is None else n
    if args.x is None:
        if not 1 <= n <= len(data.x_train):
            raise ValueError(f"--eval-samples {n}: expected 1 to {len(data.x_train)} (the train split's size)")
        if args.max_iter < 1:
            raise ValueError(f"--max-iter {args.max_iter}: expected at least 1 Lanczos step")
        batches = make_batches(data.x_train[:n], data.y_train[:n], args.eval_batch, device=device)
        r = hessian_eigs(model, cross_entropy(), batches, ignore=args.ignore, max_iter=args.max_iter, tol=args.tol,
                         seed=args.seed)
        state = "converged" if r.converged else "NOT converged (raise --max-iter or --tol)"
        print(f"{config.config_id}: lambda_max {r.eig_max:.6g}  lambda_min {r.eig_min:.6g}  "
              f"|min/max| {float(eig_ratio(r.eig_min, r.eig_max)):.4g}  ({r.iterations} Lanczos steps, {state}; "
              f"residuals {r.residual_max:.2g}, {r.residual_min:.2g})")
        if args.trace_probes:
            t = hutchinson_trace(model, cross_entropy(), batches, probes=args.trace_probes, ignore=args.ignore,
                                 seed=args.seed)
            print(f"{config.config_id}: trace {t.trace:.6g} +- {t.stderr:.2g} (standard error, {t.probes} probes)")
        return 0 if r.converged else 1
    spec = SurfaceSpec(x=args.x, y=args.y, norm="filter", ignore=args.ignore, seed=args.seed, eval_samples=n,
                       eval_batch=args.eval_batch)
    out = Path(args.output or Path("results") / config.config_id / "eig-map.h5")
    attrs = {"config": config.to_dict(), "config_id": config.config_id, "kind": "eig-map", **source}
    s = eig_map_file(out, model, data, spec, max_iter=args.max_iter, tol=args.tol, attrs=attrs,
                     overwrite=args.overwrite)
    from .metrics import eig_ratio_summary

    summary = eig_ratio_summary(s.alphas, s.betas, s.values["min_eig"], s.values["max_eig"])
    print(f"wrote {out} (eigenvalue map {s.shape[0]}x{s.shape[1]}): "
          + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
    if args.plot:
        from .figures import plot_eig_file

        for path in plot_eig_file(out):
            print(f"wrote {path}")
    return 0


def _add_trajectory(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trajectory", help="PCA directions of the training path, a surface on that plane, the plot",
                       description="Project the per-epoch checkpoints onto their top two principal directions and "
                                   "compute the loss surface on that plane (Li et al. 2018, section 7).",
                       epilog=EPILOG_TRAJECTORY, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    _add_model_source(p, checkpoint=False)
    p.add_argument("--grid", type=int, default=21, help="points per axis of the PCA-plane surface (default 21)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random plane shown for contrast (default 0)")
    p.add_argument("--eval-samples", type=int, default=None, help="training images per grid point (default: the scale's)")
    p.add_argument("-o", "--output", default=None, help="surface output (default results/<config_id>/trajectory.h5)")
    p.add_argument("--overwrite", action="store_true", help="start over even if the output exists")
    p.add_argument("--plot", action="store_true", help="draw the path on the contours (and on a random plane)")
    p.set_defaults(func=cmd_trajectory)


def cmd_trajectory(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data import load_dataset
    from .pipeline import device_of, trajectory_file

    device = device_of(args.device)
    config, _, source, result = _load_model(args, device)
    out = Path(args.output or Path("results") / config.config_id / "trajectory.h5")
    data = load_dataset(config, data_dir=args.data_dir)
    n = _eval_samples(args.eval_samples, get_scale(args.scale), data, ("train",))
    s = trajectory_file(out, result, data, grid=args.grid, eval_samples=n, seed=args.seed, attrs=source,
                        overwrite=args.overwrite)
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
    p.add_argument("--only", nargs="+", default=None, metavar="CONFIG_ID", help="just these config ids")
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
    if args.only:
        by_id = {c.config_id: c for c in configs}
        unknown = [name for name in args.only if name not in by_id]
        if unknown:
            raise SystemExit(f"error: unknown config id(s) {', '.join(unknown)} in scale {args.scale!r}")
        configs = [by_id[name] for name in args.only]
    commit = args.commit or provenance()["commit"]
    shipped = 0
    for config in configs:
        try:
            result = load_trained(config, cache_dir=args.cache_dir)
        except CheckpointError as exc:
            print(f"skip {config.config_id}: {exc}")
            continue
        recipe = "paper-sgd" if config.optimizer == "sgd" else "seed"
        path = ship(result, args.baselines_dir, args.scale, recipe=recipe, commit=commit,
                    converged=converged)
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
    _add_train(sub)
    _add_surface(sub)
    _add_plot(sub)
    _add_baselines(sub)
    _add_hessian(sub)
    _add_trajectory(sub)
    _add_ship(sub)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_axis_values(sys.argv[1:] if argv is None else argv))
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ._malloc import keep_freed_memory_once
    from .errors import LossbenchError

    keep_freed_memory_once()
    terminated = []

    def on_sigterm(signum, frame):  # what batch schedulers send: save and stop as on Ctrl-C
        terminated.append(signum)
        raise KeyboardInterrupt

    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return args.func(args)
    except (LossbenchError, ValueError) as exc:
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
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)


if __name__ == "__main__":
    sys.exit(main())
