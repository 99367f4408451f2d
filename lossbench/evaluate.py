"""Loss and accuracy of a model over a whole evaluation set, the paper's way.

The loss is the sum of per-sample losses divided by N (batches weighted by their size, not a mean of
batch means), in nats; accuracy is the fraction of correct argmax predictions. The model runs in eval
mode, so BatchNorm uses its running statistics and the result does not depend on the batch size.
On CUDA it runs in IEEE float32 (no TF32), so that it stays the ground truth there too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
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

