"""``python -m lossbench``: train, surface, plot (see ``--help`` of each sub-command).

Each ``cmd_*`` function turns its argparse ``Namespace`` into typed library calls; nothing below this
module sees a ``Namespace``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .config import add_run_options, find_config, get_scale, parse_model_name

EPILOG_TRAIN = """examples:
  python -m lossbench train --arch resnet56 --no-shortcut --batch-size 2000 --scale ci
  python -m lossbench train --all --scale ci          # the whole ci matrix
  python -m lossbench train --arch resnet20 --seed 3 --epochs 2
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
    p.add_argument("--all", action="store_true", help="train every config of the scale's matrix")
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

    configs = list(get_scale(args.scale).configs) if args.all else [_config_from_args(args)]
    if args.all and args.seed:
        configs = [c.replace(seed=args.seed) for c in configs]
    if args.all and args.epochs is not None:
        configs = [c.replace(epochs=args.epochs) for c in configs]
    print(f"{'config':<28} {'train loss':>10} {'train acc':>9} {'test acc':>8}  checkpoint")
    for config in configs:
        result = train(config, device=args.device, cache_dir=args.cache_dir, data_dir=args.data_dir)
        f = result.final
        cached = " (cached)" if result.from_cache else ""
        print(f"{config.config_id:<28} {f['train_loss']:>10.4f} {f['train_acc']:>9.3f} {f['test_acc']:>8.3f}  "
              f"{result.checkpoint(config.epochs)}{cached}", flush=True)
    return 0


EPILOG_SURFACE = """examples:
  # 2D filter-normalised surface of the ci ResNet-56 (trained first if not cached), then plots
  python -m lossbench surface --arch resnet56 --scale ci --x -1:1:21 --y -1:1:21 -o r56.h5 --plot
  # 1D line of your own checkpoint, train and test sets
  python -m lossbench surface --checkpoint epoch-0006.pt --x -1:1:51 --dataset train,test -o line.h5
  # 1D interpolation from the batch-128 to the batch-2000 solution (the paper's Figure 3)
  python -m lossbench surface --arch resnet20 --target-batch-size 2000 --x -0.5:1.5:41 -o interp.h5

An interrupted run resumes when started again with the same arguments and output file.
"""

EPILOG_PLOT = """examples:
  python -m lossbench plot r56.h5                    # contour, filled contour, heat map, 3D (2D files)
  python -m lossbench plot line.h5 --loss-max 5      # loss and accuracy curves (1D files)
  python -m lossbench plot r56.h5 --vmin 0.1 --vmax 10 --vlevel 0.5 --vtp --log
"""


def _add_surface(sub: argparse._SubParsersAction) -> None:
    from .directions import DIR_TYPES, IGNORES, NORMS
    from .surface import parse_axis

    p = sub.add_parser("surface", help="compute a 1D line, a 2D surface or an interpolation into an HDF5 file",
                       description="Evaluate L(theta + alpha delta + beta eta) on a grid (Li et al. 2018).",
                       epilog=EPILOG_SURFACE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p.add_argument)
    src = p.add_argument_group("model (a checkpoint, or a config of the scale's matrix)")
    src.add_argument("--checkpoint", default=None, help="an epoch-NNNN.pt written by lossbench train")
    src.add_argument("--arch", default="resnet20", help="resnet20 | resnet56 | resnet110 | vgg9 (default resnet20)")
    src.add_argument("--no-shortcut", dest="shortcut", action="store_false", help="the net without skip connections")
    src.add_argument("--batch-size", type=int, default=128, help="training batch size of the config (default 128)")
    src.add_argument("--train-seed", type=int, default=0, help="training seed of the config (default 0)")
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
    p.set_defaults(func=cmd_surface)


def cmd_surface(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data import load_dataset
    from .pipeline import SurfaceSpec, device_of, surface_file
    from .surface import Axis
    from .train import model_from_checkpoint, train

    device = device_of(args.device)
    if args.checkpoint:
        config, model = model_from_checkpoint(args.checkpoint, device=device)
        source = {"checkpoint": str(Path(args.checkpoint).resolve())}
    else:
        config = _config_from_args(argparse.Namespace(**{**vars(args), "seed": args.train_seed, "epochs": None}))
        model = train(config, device=device, cache_dir=args.cache_dir, data_dir=args.data_dir).model
        source = {}
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
    spec = SurfaceSpec(
        x=x, y=args.y, norm=args.norm, ignore=args.ignore,
        dir_type="states" if interpolation else args.dir_type, seed=args.seed, orthogonalize=args.orthogonalize,
        splits=tuple(s.strip() for s in args.dataset.split(",") if s.strip()),
        eval_samples=args.eval_samples if args.eval_samples is not None else scale.eval_samples,
        eval_batch=args.eval_batch, interpolation=interpolation,
    )
    kind = "interpolation" if interpolation else ("surface-2d" if args.y else "line-1d")
    out = Path(args.output or Path("results") / config.config_id / f"{kind}.h5")
    data = load_dataset(config, data_dir=args.data_dir)
    attrs = {"config": config.to_dict(), "config_id": config.config_id, "kind": kind, **source}
    surface = surface_file(out, model, data, spec, target=target, attrs=attrs, overwrite=args.overwrite,
                           allow_nonfinite=args.allow_nonfinite)
    centre = surface.center_index()
    summary = ", ".join(f"{k}={v[centre]:.4f}" for k, v in surface.values.items())
    print(f"wrote {out} ({kind}, grid {'x'.join(map(str, surface.shape))}); at the centre: {summary}")
    if args.plot:
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


def plot_file(path, *, key: str = "train_loss", vmin=None, vmax=None, vlevel=None, zmax=None,
              loss_max=None, log: bool = False, vtp: bool = False, stem=None) -> list:
    """Write the standard figures of a surface file; returns the written paths."""
    from pathlib import Path

    from . import plot
    from .store import export_vtp, load_surface

    surface = load_surface(path)
    stem = Path(stem) if stem else Path(path).with_suffix("")
    title = surface.attrs.get("config_id", Path(path).stem)
    written = []
    if surface.betas is None:
        splits = sorted({k.rsplit("_", 1)[0] for k in surface.values})
        losses = {s: surface.values[f"{s}_loss"] for s in splits if f"{s}_loss" in surface.values}
        accs = {s: surface.values[f"{s}_acc"] for s in splits if f"{s}_acc" in surface.values}
        xlabel = r"$\alpha$ (interpolation $\theta_1 \to \theta_2$)" if surface.attrs.get("kind") == "interpolation" else r"$\alpha$"
        fig = plot.plot_1d(surface.alphas, losses, accs, title=title, xlabel=xlabel, loss_max=loss_max, log=log)
        written += plot.save_figure(fig, f"{stem}-1d")
        return written
    if key not in surface.values:
        raise ValueError(f"{path} has no {key!r}; it has {', '.join(surface.values)}")
    z = surface.values[key]
    levels = plot.contour_levels(z, vmin=vmin, vmax=vmax, vlevel=vlevel)
    a, b = surface.alphas, surface.betas
    written += plot.save_figure(plot.plot_contour(a, b, z, levels=levels, title=title, label=key), f"{stem}-{key}-contour")
    written += plot.save_figure(plot.plot_contour(a, b, z, levels=levels, filled=True, title=title, label=key),
                                f"{stem}-{key}-contourf")
    top = float(levels[-1])  # the same clipping for the heat map and the 3D view unless asked otherwise
    written += plot.save_figure(plot.plot_heatmap(a, b, z, vmin=vmin, vmax=vmax if vmax is not None else top,
                                                  title=title, label=key), f"{stem}-{key}-heat")
    written += plot.save_figure(plot.plot_surface_3d(a, b, z, zmax=zmax if zmax is not None else top, log=log,
                                                     title=title, label=key), f"{stem}-{key}-3d")
    if vtp:
        written.append(export_vtp(f"{stem}-{key}.vtp", surface, key=key, log=log, zmax=zmax))
    return written


def cmd_plot(args: argparse.Namespace) -> int:
    for path in plot_file(args.file, key=args.key, vmin=args.vmin, vmax=args.vmax, vlevel=args.vlevel,
                          zmax=args.zmax, loss_max=args.loss_max, log=args.log, vtp=args.vtp, stem=args.output):
        print(f"wrote {path}")
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
    from .errors import LossbenchError

    try:
        return args.func(args)
    except (LossbenchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
