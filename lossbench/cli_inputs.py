"""What the sub-commands ``surface``, ``hessian`` and ``trajectory`` share: where the model, its
weights, the data and the loss come from, as command-line options and their reading.

Two sources of a model: a net of the reproduction matrix (``--arch``/``--no-shortcut``/``--batch-size``
/``--train-seed``: the shipped reference net, else trained and cached; or ``--checkpoint`` of
``lossbench train``), or a user's own (``--model file.py:factory`` with ``--weights``, ``--data``,
``--loss``). Like ``__main__``, this module is the command-line layer: it reads an argparse
``Namespace`` and calls the library with typed values.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig, find_config, get_scale, parse_model_name

if TYPE_CHECKING:  # torch only where a model is loaded: the parser is built without it
    import torch
    from torch import nn

    from .data import ImageData
    from .evaluate import LossFn

MODEL_DEFAULTS = {"arch": "resnet20", "shortcut": True, "batch_size": 128, "train_seed": 0}
_CONFIG_FLAGS = {"arch": "--arch", "shortcut": "--no-shortcut", "batch_size": "--batch-size",
                 "train_seed": "--train-seed"}


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The :class:`RunConfig` of ``--arch``, ``--no-shortcut``, ``--batch-size``, ``--seed`` at ``--scale``."""
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


def add_model_source(p: argparse.ArgumentParser, *, checkpoint: bool = True, weight_list: bool = False) -> None:
    """The model options of a sub-command; ``weight_list``: ``--weights`` takes the training path."""
    src = p.add_argument_group("model of the reproduction matrix (the shipped net, else trained and cached)")
    if checkpoint:
        src.add_argument("--checkpoint", default=None, help="an epoch-NNNN.pt written by lossbench train")
    # defaults are None so that a value given beside --checkpoint or --model can be told apart (and refused)
    src.add_argument("--arch", default=None, help="resnet20 | resnet56 | resnet110 | vgg9 (default resnet20)")
    src.add_argument("--no-shortcut", dest="shortcut", action="store_const", const=False, default=None,
                     help="the net without skip connections")
    src.add_argument("--batch-size", type=int, default=None, help="training batch size of the config (default 128)")
    src.add_argument("--train-seed", type=int, default=None, help="training seed of the config (default 0)")
    own = p.add_argument_group("your own model, weights, data and loss")
    own.add_argument("--model", default=None, metavar="FILE.py:FACTORY",
                     help="a function that returns your nn.Module: path/to/file.py:factory or package.module:factory")
    own.add_argument("--model-kwargs", default=None, metavar="JSON", help="keyword arguments of the factory, e.g. "
                     "'{\"width\": 2}'")
    if weight_list:
        own.add_argument("--weights", nargs="+", default=None, metavar="FILE",
                         help="the training path: weight files in training order, the last is the final net "
                              "(plain state dicts, or dicts holding one under 'state_dict' or 'model')")
    else:
        own.add_argument("--weights", default=None, metavar="FILE",
                         help="a state dict for --model (or for --arch's net): a plain state dict, or a dict "
                              "holding one under 'state_dict' or 'model'; read with weights_only=True")
    own.add_argument("--data", default=None, metavar="FILE.pt|FILE.py:FACTORY",
                     help="a .pt dict of tensors x, y (or train_x, train_y, test_x, test_y), or a factory returning "
                          "such a dict, an (x, y) pair or a Dataset; default: the config's data set")
    own.add_argument("--loss", default="crossentropy", metavar="NAME",
                     help="crossentropy (default), mse, or module:callable returning the batch-mean loss")


@dataclass
class Subject:
    """The network a sub-command works on.

    Attributes:
        name: the config id, or the name of the user's model: the default ``results/<name>/`` folder.
        model: the network at the weights to study, eval mode, on the device.
        config: its :class:`RunConfig` (None for a user's model).
        source: what the outputs record about where it came from (paths, factory, loss).
        result: the training result (per-epoch checkpoints) where the net was trained here.
        checkpoints: the training path's weight files, oldest first (trajectory).
    """

    name: str
    model: nn.Module
    config: RunConfig | None
    source: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    checkpoints: list[Path] = field(default_factory=list)
    rebuild: Any = None  # () -> a fresh nn.Module of the same kind, for a second set of weights


def _given(args: argparse.Namespace, *names: str) -> list[str]:
    return [n for n in names if getattr(args, n, None) is not None]


def _conflicts_with_checkpoint(args: argparse.Namespace, config: RunConfig) -> list[str]:
    """The config options given beside --checkpoint that disagree with the checkpoint's own config."""
    have = {"arch": (config.arch, config.depth), "shortcut": config.shortcut, "batch_size": config.batch_size,
            "train_seed": config.seed}
    given = {k: getattr(args, k, None) for k in have}
    if given["arch"] is not None:
        given["arch"] = parse_model_name(given["arch"])
    return [_CONFIG_FLAGS[k] if k == "shortcut" else f"{_CONFIG_FLAGS[k]} {getattr(args, k)}"
            for k in have if given[k] is not None and given[k] != have[k]]


def _weight_files(args: argparse.Namespace) -> list[str]:
    w = getattr(args, "weights", None)
    return [] if w is None else ([w] if isinstance(w, str) else list(w))


def load_subject(args: argparse.Namespace, device: torch.device) -> Subject:
    """The model the options name (see the module doc); conflicting options are an error."""
    from .train import make_model, model_from_checkpoint, train
    from .user_inputs import build_model, load_weights, parse_kwargs

    weights = _weight_files(args)
    config_opts = _given(args, *MODEL_DEFAULTS)
    if getattr(args, "model", None):
        clash = config_opts + _given(args, "checkpoint")
        if clash:
            flags = ", ".join("--" + c.replace("_", "-").replace("shortcut", "no-shortcut") for c in clash)
            raise ValueError(f"--model names your own net; {flags} name(s) a net of the reproduction matrix: "
                             "drop one of the two")
        kwargs = parse_kwargs(args.model_kwargs)

        def rebuild() -> nn.Module:
            return build_model(args.model, kwargs)

        model = rebuild()
        if weights:
            load_weights(model, weights[-1])
        source = {"model": args.model, "model_kwargs": kwargs}
        if weights:
            source["weights"] = str(Path(weights[-1]).resolve())
        name = Path(weights[-1]).stem if weights else args.model.rpartition(":")[2]
        return Subject(name=name, model=model.to(device).eval(), config=None, source=source,
                       checkpoints=[Path(w) for w in weights], rebuild=lambda: rebuild().to(device).eval())
    if getattr(args, "model_kwargs", None):
        raise ValueError("--model-kwargs goes with --model (your model factory); drop it or add --model")
    if getattr(args, "checkpoint", None):
        if weights:
            raise ValueError("--checkpoint already holds the weights; drop --weights (or use --weights with --arch)")
        config, model = model_from_checkpoint(args.checkpoint, device=device)
        conflicts = _conflicts_with_checkpoint(args, config)
        if conflicts:
            raise ValueError(f"--checkpoint {args.checkpoint} holds {config.config_id}, which {', '.join(conflicts)} "
                             "contradict(s): drop those options (the checkpoint says what the net is) or pick "
                             "another checkpoint")
        return Subject(name=config.config_id, model=model, config=config,
                       source={"checkpoint": str(Path(args.checkpoint).resolve())},
                       rebuild=lambda: make_model(config).to(device).eval())
    filled = {k: (MODEL_DEFAULTS[k] if getattr(args, k, None) is None else getattr(args, k)) for k in MODEL_DEFAULTS}
    config = config_from_args(argparse.Namespace(**{**vars(args), **filled, "seed": filled["train_seed"],
                                                    "epochs": None}))

    def fresh() -> nn.Module:
        return make_model(config).to(device).eval()

    if weights:  # the matrix's architecture at the user's weights: nothing to train
        model = load_weights(fresh(), weights[-1])
        return Subject(name=f"{config.config_id}-{Path(weights[-1]).stem}", model=model.eval(), config=config,
                       source={"weights": str(Path(weights[-1]).resolve())},
                       checkpoints=[Path(w) for w in weights], rebuild=fresh)
    if get_scale(args.scale).shipped:
        from .reference_nets import load_reference, shipped_ids

        kind = "nets" if config.seed == 0 else "seed-nets"  # other training seeds ship beside seed 0
        if config.config_id in shipped_ids("baselines", args.scale, kind):
            ref = load_reference(config.config_id, "baselines", args.scale, device=device, kind=kind)
            if ref.config == config:  # the shipped reference net: no training
                return Subject(name=config.config_id, model=ref.model, config=config,
                               source={"reference_net": str(ref.path)}, rebuild=fresh)
    result = train(config, device=device, cache_dir=args.cache_dir, data_dir=args.data_dir)
    return Subject(name=config.config_id, model=result.model, config=config, result=result,
                   checkpoints=list(result.checkpoints), rebuild=fresh)


def load_target(args: argparse.Namespace, subject: Subject, device: torch.device) -> nn.Module:
    """The second net of an interpolation, from ``--target``: a lossbench checkpoint, or a weights file
    for the same architecture as the subject."""
    from .errors import NotACheckpointError
    from .train import model_from_checkpoint
    from .user_inputs import load_weights

    try:
        return model_from_checkpoint(args.target, device=device)[1]
    except NotACheckpointError:
        return load_weights(subject.rebuild(), args.target).to(device).eval()


def load_data(args: argparse.Namespace, subject: Subject) -> ImageData:
    """``--data``, else the data set of the subject's config."""
    from .data import load_dataset
    from .user_inputs import load_data as read_user_data

    if getattr(args, "data", None):
        return read_user_data(args.data)
    if subject.config is None:
        raise ValueError("--model needs --data: a .pt file of tensors x, y (or train_x, train_y, test_x, test_y), "
                         "or path/to/file.py:factory")
    return load_dataset(subject.config, data_dir=args.data_dir)


def in_dtype(args: argparse.Namespace, subject: Subject, data: ImageData, target: nn.Module | None = None) -> ImageData:
    """``--dtype``: the subject's model (and an interpolation's target) converted in place, and the data
    as a converted copy; float32 leaves all as they are."""
    import torch

    dtype = getattr(torch, args.dtype)
    if dtype != torch.float32:
        subject.model.to(dtype)
        if target is not None:
            target.to(dtype)
        data = data.to(dtype)
    return data


def loss_of(args: argparse.Namespace) -> LossFn:
    """``--loss`` as a batch-mean loss function."""
    from .user_inputs import resolve_loss

    return resolve_loss(getattr(args, "loss", "crossentropy"))


def eval_samples(asked: int | None, subject: Subject, scale_name: str, data: ImageData, splits) -> int | None:
    """``--eval-samples`` as given (checked later against each split); else for a matrix net the scale's
    default: all of each split when the default covers them, else the default capped at the smallest
    split (a default is no request for more images than a checkpoint's data holds); for a user's data
    set, all of it."""
    if asked is not None:
        return asked
    if subject.config is None or getattr(data, "name", "").startswith("user:"):
        return None
    scale = get_scale(scale_name)
    known = [len(data.split(s)[0]) for s in splits if s in ("train", "test")]
    if known and scale.eval_samples >= max(known):
        return None
    return min([scale.eval_samples, *known])
