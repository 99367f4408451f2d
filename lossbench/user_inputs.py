"""A user's own model, weights, data and loss, named on the command line.

Each reader takes the string a user typed and returns the object the library takes, or raises a
``ValueError`` / :class:`~lossbench.errors.DataError` / :class:`~lossbench.errors.CheckpointError`
that says what was found and what is expected. Weight and data files are read with
``torch.load(weights_only=True)``: a file cannot run code.

Spellings:

- a model factory: ``path/to/file.py:factory`` or ``package.module:factory`` (called with keyword
  arguments given as JSON);
- weights: a plain state dict, or a dict holding one under ``state_dict`` or ``model`` (a lossbench
  checkpoint is one); a ``module.`` prefix (DataParallel) is stripped;
- data: ``file.pt`` holding a dict of tensors ``x``, ``y`` (one split, called train) or ``train_x``,
  ``train_y``, ``test_x``, ``test_y``; or ``file.py:factory`` returning such a dict, an ``(x, y)`` pair,
  or a ``Dataset`` (or a dict of ``train``/``test`` Datasets), whose items are stacked;
- a loss: ``crossentropy``, ``mse``, or ``module:callable`` (a class is instantiated with no arguments).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .data import ImageData
from .errors import CheckpointError, DataError, first_line
from .evaluate import LOSSES, LossFn, check_loss_fn


def import_object(spec: str, *, what: str = "object") -> Any:
    """The object named by ``path/to/file.py:name`` or ``package.module:name``."""
    module_name, sep, attr = spec.rpartition(":")
    expected = f"expected path/to/file.py:name or package.module:name for the {what}"
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r}: {expected}")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        file = Path(module_name)
        if not file.is_file():
            raise ValueError(f"{file} does not exist ({what} {spec!r}); {expected}")
        # a unique module name per file, so that two users' model.py files do not collide in sys.modules
        name = "lossbench_user_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
        loader_spec = importlib.util.spec_from_file_location(name, file)
        if loader_spec is None or loader_spec.loader is None:
            raise ValueError(f"{file} cannot be imported as Python ({what} {spec!r})")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        sys.path.insert(0, str(file.resolve().parent))  # the file may import its neighbours
        try:
            loader_spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(file.resolve().parent))
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"{spec!r}: no module {exc.name!r} on the Python path; {expected}") from None
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise ValueError(f"{spec!r}: {module_name} has no {attr!r} (it has {', '.join(public[:12])})")
    return getattr(module, attr)


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """``--model-kwargs`` as a dict: JSON object text, or None for no arguments."""
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model-kwargs {text!r} is not JSON ({exc.msg}); e.g. '{{\"width\": 2}}'") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--model-kwargs {text!r} must be a JSON object, e.g. '{{\"width\": 2}}'")
    return kwargs


def build_model(spec: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Call the factory ``spec`` with ``kwargs``; the result must be an ``nn.Module``."""
    factory = import_object(spec, what="model factory")
    if not callable(factory):
        raise ValueError(f"{spec!r} is a {type(factory).__name__}, not a callable that returns an nn.Module")
    try:
        model = factory(**dict(kwargs or {}))
    except TypeError as exc:
        raise ValueError(f"calling {spec} with {dict(kwargs or {})} failed: {exc} (set them with --model-kwargs)") from None
    except Exception as exc:  # noqa: BLE001 - a user's factory can raise anything: one line, not its traceback
        raise ValueError(f"the model factory {spec} raised {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec} returned a {type(model).__name__}; a model factory must return an nn.Module")
    return model


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The weights in ``path``: a plain state dict, or one under ``state_dict`` or ``model``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and "unsupported global" errors alike
        if any(m in str(exc) for m in ("Unsupported global", "unsupported GLOBAL")):  # a pickled object, not data
            raise CheckpointError(f"refused to load {path}: it holds Python objects other than tensors and plain "
                                  "containers, which could run code when unpickled, so it is never unpickled here; "
                                  "save the weights with torch.save(model.state_dict(), path)") from None
        raise CheckpointError(f"{path} is not a readable weights file ({first_line(exc)}); save it with "
                              "torch.save(model.state_dict(), path)") from None
    if isinstance(data, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, Tensor) for v in data.values()):
        kind = f"a dict with keys {list(data)[:5]}" if isinstance(data, Mapping) else f"a {type(data).__name__}"
        raise CheckpointError(f"{path} holds {kind}; expected a state dict (name -> tensor), or a dict holding one "
                              "under 'state_dict' or 'model'")
    bad = nonfinite_tensors(data)
    if bad:
        raise CheckpointError(f"weights file {path}: {bad}; a diverged training saved these weights: load an "
                              "earlier checkpoint, or train again with a smaller learning rate")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in data.items()}


def nonfinite_tensors(state: Mapping[str, Tensor], *, limit: int = 3) -> str:
    """'' when every floating tensor of ``state`` is finite, else which are not, e.g. "tensor 'fc.weight'
    holds 3 inf/NaN of 650 values" (the first ``limit`` named)."""
    bad = [(name, int((~torch.isfinite(t)).sum()), t.numel()) for name, t in state.items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if not bad:
        return ""
    named = ", ".join(f"tensor {n!r} holds {k} inf/NaN of {total} values" for n, k, total in bad[:limit])
    return named + (f" (and {len(bad) - limit} more tensors)" if len(bad) > limit else "")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the state dict in ``path`` into ``model`` (strict); a mismatch names the tensors."""
    from .train import state_mismatch

    state = read_state_dict(path)
    why = state_mismatch(model, state)
    if why:
        raise CheckpointError(f"the weights in {path} do not fit the model: {why}; check --model/--model-kwargs "
                              "(or --arch) against the net that was saved")
    model.load_state_dict(state)
    return model


def _stack(dataset: Any, what: str) -> tuple[Tensor, Tensor]:
    """(x, y) tensors from a map-style Dataset of (input, target) items."""
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except Exception as exc:  # noqa: BLE001 - a user's Dataset can raise anything
        raise DataError(f"{what}: reading its items failed ({type(exc).__name__}: {exc}); expected a map-style "
                        "Dataset of (input, target) pairs") from None
    if not items or not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
        raise DataError(f"{what}: expected a non-empty Dataset of (input, target) pairs")
    xs = [torch.as_tensor(x) for x, _ in items]
    ys = [torch.as_tensor(y) for _, y in items]
    return torch.stack(xs), torch.stack(ys)


def _pair(obj: Any, what: str) -> tuple[Tensor, Tensor]:
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, Tensor) for t in obj):
        return obj[0], obj[1]
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, (Mapping, Tensor, str)):
        return _stack(obj, what)
    raise DataError(f"{what}: got a {type(obj).__name__}; expected an (x, y) pair of tensors or a Dataset")


def _splits(obj: Any, what: str) -> dict[str, tuple[Tensor, Tensor]]:
    """{split: (x, y)} from whatever a data file or factory holds."""
    if isinstance(obj, Mapping):
        keys = set(obj)
        if {"x", "y"} <= keys:
            return {"train": (obj["x"], obj["y"])}
        if {"train_x", "train_y"} <= keys:
            out = {"train": (obj["train_x"], obj["train_y"])}
            if {"test_x", "test_y"} <= keys:
                out["test"] = (obj["test_x"], obj["test_y"])
            return out
        if "train" in keys:
            return {k: _pair(obj[k], f"{what}[{k!r}]") for k in ("train", "test") if k in keys}
        raise DataError(f"{what} holds a dict with keys {sorted(map(str, keys))[:6]}; expected x and y, or "
                        "train_x, train_y (and test_x, test_y), or train (and test) Datasets")
    return {"train": _pair(obj, what)}


def _checked(split: str, x: Any, y: Any, what: str) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise DataError(f"{what}: the {split} inputs and targets must be tensors; got {type(x).__name__}, "
                        f"{type(y).__name__}")
    if len(x) != len(y) or len(x) == 0:
        raise DataError(f"{what}: the {split} split has {len(x)} inputs and {len(y)} targets; expected the same "
                        "non-zero number")
    if not x.is_floating_point():
        raise DataError(f"{what}: the {split} inputs are {x.dtype}; convert them to float (and normalise) before "
                        "saving, e.g. x.float() / 255")
    if not y.is_floating_point() and y.dtype != torch.int64:
        y = y.long()  # int32 or uint8 labels: cross-entropy needs int64
    for name, t in (("inputs", x), ("targets", y)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise DataError(f"{what}: the {split} {name} hold NaN or inf ({int((~torch.isfinite(t)).sum())} values); "
                            "clean or drop those samples before saving")
    return x, y


def load_data(spec: str) -> ImageData:
    """The data set a user names: a ``.pt`` file of tensors, or ``file.py:factory`` (see the module doc).

    A data set with one split has it as ``train``; its ``test`` split is empty (asking for it is an
    error that says so).
    """
    if spec.endswith(".pt") or spec.endswith(".pth") or (":" not in spec and Path(spec).exists()):
        path = Path(spec)
        if not path.is_file():
            raise DataError(f"data file {path} does not exist; expected a .pt file saved with torch.save({{'x': x, "
                            "'y': y}}) or a path/to/file.py:factory")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{path} is not a readable tensor file ({first_line(exc)}); save a dict of tensors "
                            "with torch.save") from None
        what = str(path)
    else:
        factory = import_object(spec, what="data factory")
        obj = factory() if callable(factory) else factory
        what = spec
    splits = {k: _checked(k, *v, what) for k, v in _splits(obj, what).items()}
    x, y = splits["train"]
    tx, ty = splits.get("test", (x[:0], y[:0]))
    if tx.shape[1:] != x.shape[1:]:
        raise DataError(f"{what}: train inputs are {tuple(x.shape[1:])} per sample, test inputs {tuple(tx.shape[1:])}")
    return ImageData(x_train=x, y_train=y, x_test=tx, y_test=ty, mean=(), std=(), name=f"user:{spec}")


def resolve_loss(spec: str) -> LossFn:
    """``crossentropy``, ``mse`` or ``module:callable`` as a batch-mean loss."""
    if spec in LOSSES:
        return LOSSES[spec]()
    if ":" not in spec:
        raise ValueError(f"unknown loss {spec!r}; expected {', '.join(LOSSES)} or module:callable "
                         "(e.g. torch.nn:SmoothL1Loss)")
    obj = import_object(spec, what="loss")
    loss = obj() if isinstance(obj, type) else obj
    if not callable(loss):
        raise ValueError(f"{spec} is a {type(loss).__name__}, not a callable loss(outputs, targets)")
    check_loss_fn(loss)
    return loss
