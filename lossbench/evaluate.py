"""Loss and accuracy of a model over a whole evaluation set, the paper's way.

The loss is the sum of per-sample losses divided by N (batches weighted by their size, not a mean of
batch means), in nats; accuracy is the fraction of correct argmax predictions. The model runs in eval
mode, so BatchNorm uses its running statistics and the result does not depend on the batch size.
On CUDA it runs in IEEE float32 (no TF32), so that it stays the ground truth there too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]
#: ``loss_fn(outputs, targets)`` returning the mean loss over the batch (like ``nn.CrossEntropyLoss()``).
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Evaluation:
    """Mean loss (nats) and accuracy (fraction 0-1; NaN when targets are not class labels) over n samples."""

    loss: float
    acc: float
    n: int


def make_batches(x: Tensor, y: Tensor, batch_size: int, *, device: torch.device | str | None = None) -> list[Batch]:
    """Split (N, ...) inputs and (N,) targets into consecutive batches, moved to ``device`` once.

    The order is fixed, so evaluations are reproducible; a list (not a generator) so it can be reused
    at every grid point.
    """
    if len(x) != len(y):
        raise ValueError(f"inputs have {len(x)} samples but targets have {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be positive")
    if device is not None:
        x, y = x.to(device), y.to(device)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def _describe(obj: object) -> str:
    if isinstance(obj, Mapping):
        return f"a dict with keys {list(obj)[:4]}"
    if isinstance(obj, (list, tuple)):
        first = obj[0] if obj else None
        inner = type(first).__name__ if first is not None else "nothing"
        return f"a {type(obj).__name__} of {len(obj)} ({inner})"
    return f"a {type(obj).__name__}"


def _is_batch(obj: object) -> bool:
    return isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, Tensor) for t in obj)


def as_batches(data: Iterable[Batch] | Mapping[str, Iterable[Batch]], *, what: str = "batches") -> list[Batch]:
    """The reusable list of (inputs, targets) batches in ``data``: a list or tuple of batches, a
    DataLoader, or a ``{split: batches}`` dict with one split (its batches are used). Anything else, or
    a batch that is not a pair of tensors, is a ``ValueError`` saying what was passed and what is expected."""
    expected = f"{what}: expected a list of (inputs, targets) tensor pairs or a DataLoader"
    if isinstance(data, Mapping):
        if len(data) != 1:
            raise ValueError(f"{expected}; got {_describe(data)} (pass one split's batches, e.g. data['train'])")
        data = next(iter(data.values()))
    if _is_batch(data):
        raise ValueError(f"{expected}; got one (inputs, targets) pair: wrap it in a list, [(x, y)]")
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise ValueError(f"{expected}; got {_describe(data)}")
    batches = [tuple(b) if isinstance(b, list) else b for b in data]
    bad = next((b for b in batches if not _is_batch(b)), None)
    if bad is not None or not batches:
        raise ValueError(f"{expected}; got {_describe(data) if batches else 'no batches'}"
                         + (f" holding {_describe(bad)}" if bad is not None else ""))
    x, y = batches[0]
    if not (x.is_floating_point() or x.is_complex()):
        raise ValueError(f"{what}: the inputs are {x.dtype}; convert them to float (and normalise) first, "
                         "e.g. x.float() / 255")
    if not y.is_floating_point() and y.dtype != torch.int64:
        raise ValueError(f"{what}: the targets are {y.dtype}; class labels must be int64 (y.long()), "
                         "regression targets float")
    return batches


def as_datasets(data: Mapping[str, Iterable[Batch]] | Iterable[Batch]) -> dict[str, list[Batch]]:
    """``{split: batches}`` from a dict of splits, or from one split's batches (then called ``train``)."""
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("datasets is empty; pass e.g. {'train': batches}")
        return {str(k): as_batches(v, what=f"datasets[{k!r}]") for k, v in data.items()}
    return {"train": as_batches(data, what="datasets")}


def check_loss_fn(loss_fn: LossFn) -> None:
    """Refuse a loss that sums over the batch: the paper's loss (and every number here) is a batch mean."""
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction != "mean":
        raise ValueError(f"the loss has reduction={reduction!r}; lossbench needs the mean over the batch "
                         f"(e.g. nn.CrossEntropyLoss() or reduction='mean'): a sum is off by the batch size")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(abs(a), abs(b)) + 1e-7


def check_model_loss(model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch], *, what: str = "data") -> None:
    """Refuse, with one line that names the problem and the fix, what would give a wrong answer without a
    word: data with NaN or inf, inputs the model cannot take, an output that is not a tensor, class labels
    outside the model's classes (-100, an ``ignore_index``, included: the loss would skip those samples
    and the accuracy count them), float targets with a classification loss (a regression net needs
    ``mse``), targets whose shape differs from the output's (a loss would broadcast them), and a loss
    that is not a mean over the batch, checked by what it does: its value on a batch must be the
    size-weighted mean of its values on the two halves (a summing loss is off by the batch size).

    Runs the model once, on the first batch, in eval mode (restored afterwards); every batch's data are
    checked for finiteness and every label for its range.
    """
    check_loss_fn(loss_fn)
    bad = [(n, t) for n, t in model.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        name, t = bad[0]
        raise ValueError(f"the model's weights are not finite: tensor {name!r} holds {int((~torch.isfinite(t)).sum())} "
                         f"inf/NaN of {t.numel()} values" + (f" ({len(bad) - 1} more tensors too)" if len(bad) > 1 else "")
                         + "; a diverged training produced them: load an earlier checkpoint")
    batches = list(batches)
    for k, (x, y) in enumerate(batches):
        for name, t in (("inputs", x), ("targets", y)):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{what}: the {name} of batch {k} hold NaN or inf ({int((~torch.isfinite(t)).sum())} "
                                 "values); clean or drop those samples first")
    x, y = batches[0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), cuda_math(x.device):
            out = model(x)
    except Exception as exc:  # noqa: BLE001 - a user's model can raise anything on input it cannot take
        p = next(iter(model.parameters()), None)
        weights = f"; the model's weights are {p.dtype}" if p is not None else ""
        raise ValueError(f"{what}: running the model on the first batch (inputs {tuple(x.shape)}, {x.dtype}) failed: "
                         f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}{weights}; "
                         "give inputs of the shape and dtype the model takes") from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor):
        raise ValueError(f"{what}: the model returns a {type(out).__name__}, not a tensor; lossbench needs the outputs "
                         "(e.g. logits) as one tensor: wrap the model to return only those")
    if out.dim() == 0 or out.shape[0] != len(x):
        raise ValueError(f"{what}: the model returns outputs of shape {tuple(out.shape)} for a batch of {len(x)}; "
                         "expected one row per sample, (N, ...)")
    if not y.is_floating_point():
        if y.dim() != 1:
            raise ValueError(f"{what}: class labels of shape {tuple(y.shape)}; expected (N,): y.view(-1)")
        if out.dim() != 2:
            raise ValueError(f"{what}: class labels need outputs of shape (N, classes); the model returns "
                             f"{tuple(out.shape)}")
        lo = min(int(t.min()) for _, t in batches)
        hi = max(int(t.max()) for _, t in batches)
        if lo < 0:
            raise ValueError(f"{what}: labels go down to {lo} (an ignore_index such as -100?); every sample counts in "
                             "both the loss and the accuracy here: drop those samples first")
        if hi >= out.shape[1]:
            raise ValueError(f"{what}: labels go up to {hi} but the model returns {out.shape[1]} outputs per sample "
                             f"(classes 0..{out.shape[1] - 1}); check the model's output width or the labels")
    else:
        if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
            raise ValueError(f"{what}: the targets are float ({y.dtype}) but the loss is {type(loss_fn).__name__}: for "
                             "a regression net use --loss mse (nn.MSELoss()); for classes give int64 labels")
        if tuple(y.shape) != tuple(out.shape):
            raise ValueError(f"{what}: the targets are {tuple(y.shape)} but the model's outputs {tuple(out.shape)}; a "
                             f"loss would broadcast them into a wrong number: reshape the targets (y.view"
                             f"{tuple(out.shape)}) or the model's output")
    with torch.no_grad():
        full = loss_fn(out, y)
        if not isinstance(full, Tensor) or full.numel() != 1:
            raise ValueError(f"{what}: the loss returns {tuple(getattr(full, 'shape', ()))}; it must reduce the batch "
                             "to one number, the mean over its samples")
        n = len(y)
        if n >= 2:
            h = n // 2
            a, b, whole = float(loss_fn(out[:h], y[:h])), float(loss_fn(out[h:], y[h:])), float(full)
            if not _close(whole, (h * a + (n - h) * b) / n):
                if _close(whole, a + b):
                    raise ValueError(f"{what}: the loss sums over the batch (its value on a batch is the sum of its "
                                     "values on the two halves); lossbench needs the mean (reduction='mean'): a sum "
                                     "is off by the batch size")
                raise ValueError(f"{what}: the loss is not a mean over the batch's samples (its value on a batch is not "
                                 "the size-weighted mean of its values on the two halves); lossbench needs a per-sample "
                                 "loss averaged over the batch")


def _tf32_flags() -> tuple[bool, bool]:
    """(cuDNN convolutions may use TF32, cuBLAS matmuls may use TF32)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(conv, "fp32_precision"):  # torch >= 2.9: the new API's strings can always be read
        return conv.fp32_precision == "tf32", torch.backends.cuda.matmul.fp32_precision == "tf32"
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def _set_tf32_flags(cudnn: bool, matmul: bool) -> None:
    # Through the legacy switches: they set convolutions, RNNs and matmuls consistently, and torch
    # refuses to read the legacy flags (as inductor's convolution templates do) after a mixed setting.
    torch.backends.cudnn.allow_tf32 = cudnn
    torch.backends.cuda.matmul.allow_tf32 = matmul


@contextlib.contextmanager
def cuda_math(device: torch.device | str, *, tf32: bool = False, autotune: bool = False) -> Iterator[None]:
    """IEEE float32 convolutions and matmuls on CUDA (PyTorch's default lets cuDNN use TF32), or TF32
    when asked; ``autotune`` lets cuDNN time its algorithms (pays for fixed shapes). Restored on exit;
    nothing happens off CUDA."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved, benchmark = _tf32_flags(), torch.backends.cudnn.benchmark
    try:
        _set_tf32_flags(tf32, tf32)
        torch.backends.cudnn.benchmark = autotune or benchmark
        yield
    finally:
        _set_tf32_flags(*saved)
        torch.backends.cudnn.benchmark = benchmark


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch]) -> Evaluation:
    """Mean loss and accuracy of ``model`` over all ``batches``, in eval mode (restored afterwards).

    Args:
        model: any module mapping a batch of inputs to outputs.
        loss_fn: mean loss over a batch; it is multiplied by the batch size before summing.
        batches: reusable iterable of (inputs, targets), e.g. from :func:`make_batches`.
    """
    was_training = model.training
    model.eval()
    try:
        total_loss = 0.0
        correct = 0
        n = 0
        labels = True
        for inputs, targets in batches:
            with cuda_math(inputs.device):
                outputs = model(inputs)
            b = len(targets)
            total_loss += float(loss_fn(outputs, targets)) * b
            if labels and outputs.dim() == 2 and targets.dim() == 1 and not targets.is_floating_point():
                correct += int((outputs.argmax(dim=1) == targets).sum())
            else:
                labels = False
            n += b
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluation set is empty: no batches given")
    return Evaluation(loss=total_loss / n, acc=correct / n if labels else math.nan, n=n)


def cross_entropy() -> LossFn:
    """The paper's loss: mean cross-entropy over the batch, in nats."""
    return nn.CrossEntropyLoss()


#: The losses known by name (the CLI's ``--loss`` spellings), each a batch mean.
LOSSES: dict[str, Callable[[], LossFn]] = {"crossentropy": nn.CrossEntropyLoss, "mse": nn.MSELoss}


def loss_name(loss_fn: LossFn | None) -> str:
    """How an output file names its loss: a name of :data:`LOSSES` for those (None: the paper's
    cross-entropy), else the callable's qualified name; part of what a resume must match."""
    if loss_fn is None:
        return "crossentropy"
    known = {cls: name for name, cls in LOSSES.items()}
    if type(loss_fn) in known:
        return known[type(loss_fn)]
    return getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__)

