"""``python -m lossbench``: train, surface, plot (see ``--help`` of each sub-command)."""

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench",
        description="Loss landscapes of neural nets (Li et al., NeurIPS 2018): train, compute, plot.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
