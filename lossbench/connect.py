"""Mode connectivity: a quadratic Bezier curve between two minima and the barrier along it (Garipov,
Izmailov, Podoprikhin, Vetrov & Wilson, NeurIPS 2018; Draxler et al., ICML 2018).

The curve over the parameters (every ``nn.Parameter``: weights, biases, BatchNorm's affine terms)::

    theta(t) = (1 - t)^2 theta_a + 2 t (1 - t) theta_c + t^2 theta_b,    t in [0, 1]

has its ends pinned at the two minima; only the control point theta_c is trained, by minimising the
training loss at t ~ U(0, 1), one t per minibatch (the model in train mode: BatchNorm uses the batch's
statistics). With theta_c at the midpoint the curve is the straight line. At each evaluated t the
BatchNorm running statistics are recomputed over the training data (``torch.optim.swa_utils.update_bn``:
reset, momentum None, so each batch's statistics count equally): the ends' own statistics describe
other weights. The line is evaluated the same way, so the two paths are compared on equal terms.

The **barrier** of a path is max over t of [L(t) - ((1 - t) L(0) + t L(1))], in nats: how far the loss
rises above the straight interpolation of the ends' losses (0 for a path that never rises above it).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .directions import Direction
from .evaluate import Batch, LossFn, as_batches, check_model_loss, evaluate


def bezier(theta_a: Mapping[str, Tensor], theta_c: Mapping[str, Tensor], theta_b: Mapping[str, Tensor],
           t: float) -> Direction:
    """theta(t) on the quadratic Bezier curve, per tensor; exactly theta_a at t = 0 and theta_b at t = 1
    (copies), whatever theta_c holds."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t={t}: the curve runs over [0, 1]")
    if t == 0.0:
        return {n: a.detach().clone() for n, a in theta_a.items()}
    if t == 1.0:
        return {n: b.detach().clone() for n, b in theta_b.items()}
    wa, wc, wb = (1 - t) ** 2, 2 * t * (1 - t), t ** 2
    return {n: wa * theta_a[n] + wc * theta_c[n] + wb * theta_b[n] for n in theta_a}


def midpoint(theta_a: Mapping[str, Tensor], theta_b: Mapping[str, Tensor]) -> Direction:
    """(theta_a + theta_b) / 2: the control point that makes the curve the straight line."""
    return {n: 0.5 * (theta_a[n].detach() + theta_b[n].detach()) for n in theta_a}


def barrier(ts: np.ndarray, loss: np.ndarray) -> float:
    """max_t [loss(t) - ((1 - t) loss(0) + t loss(1))] over a grid ``ts`` (T,) from 0 to 1 (nats)."""
    ts, loss = np.asarray(ts, float), np.asarray(loss, float)
    if ts[0] != 0.0 or ts[-1] != 1.0 or np.any(np.diff(ts) <= 0):
        raise ValueError("ts must rise from 0 to 1 (both ends included)")
    return float(np.max(loss - ((1 - ts) * loss[0] + ts * loss[-1])))


#: Disjoint image subsets the training split is evaluated in along a path: the whole split's numbers are
#: their size-weighted means (no extra cost), and the spread of the subsets' barriers is the barrier's
#: sampling error.
BARRIER_PARTS = 4


def split_parts(batches: Sequence[Batch], parts: int = BARRIER_PARTS) -> list[list[Batch]]:
    """``batches`` as up to ``parts`` runs of whole consecutive batches (fewer when there are fewer
    batches), as equal in size as whole batches allow."""
    k = max(1, min(parts, len(batches)))
    edges = np.linspace(0, len(batches), k + 1).round().astype(int)
    return [list(batches[a:b]) for a, b in zip(edges[:-1], edges[1:])]


def combine_parts(values: Sequence[Mapping[str, np.ndarray]], sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """The whole split's loss and accuracy along a path from its parts' (each a mean over its images):
    the size-weighted mean, per t."""
    w = np.asarray(sizes, float) / float(sum(sizes))
    return {k: sum(wi * np.asarray(v[k], float) for wi, v in zip(w, values)) for k in values[0]}


def barrier_error(ts: np.ndarray, part_losses: Sequence[np.ndarray]) -> float:
    """Standard error (nats) of a path's barrier over the whole split, from the barriers of P disjoint
    image subsets: sd / sqrt(P) (a subset's barrier scatters sqrt(P) times the whole's; NaN for P < 2)."""
    b = np.array([barrier(ts, loss) for loss in part_losses], float)
    if len(b) < 2:
        return math.nan
    return float(b.std(ddof=1) / math.sqrt(len(b)))


def parameters_of(model: nn.Module) -> Direction:
    """theta over the curve's tensors: every parameter, by name, detached copies."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def update_bn(model: nn.Module, batches: Sequence[Batch]) -> None:
    """Recompute every BatchNorm layer's running statistics at the model's current weights over
    ``batches`` (reset, then the cumulative average of the batches' statistics: each batch counts once,
    so equal-size batches give the mean over all images). A model without BatchNorm is left alone."""
    if not _bn_layers(model):
        return
    from torch.optim.swa_utils import update_bn as torch_update_bn

    with torch.no_grad():
        torch_update_bn([x for x, _ in batches], model)


@contextlib.contextmanager
def _kept_state(model: nn.Module) -> Iterator[None]:
    """Restore every parameter and buffer of ``model`` (BN statistics included) bit for bit on exit."""
    saved = {n: t.detach().clone() for n, t in model.state_dict(keep_vars=True).items()}
    was_training = model.training
    try:
        yield
    finally:
        with torch.no_grad():
            for n, t in model.state_dict(keep_vars=True).items():
                t.copy_(saved[n])
        model.train(was_training)


def _set(model: nn.Module, theta: Mapping[str, Tensor]) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(theta[n])


def path_values(model: nn.Module, loss_fn: LossFn, datasets: Mapping[str, Sequence[Batch]], *,
                theta_a: Mapping[str, Tensor], theta_b: Mapping[str, Tensor], theta_c: Mapping[str, Tensor] | None,
                ts: np.ndarray, bn_batches: Sequence[Batch],
                on_point: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Loss (nats) and accuracy (fraction) of each split at each t of the curve (the line when
    ``theta_c`` is None), BN statistics recomputed over ``bn_batches`` at every t; the model is
    restored afterwards. Keys ``<split>_loss``, ``<split>_acc``, each (T,)."""
    out = {f"{split}_{k}": np.full(len(ts), np.nan) for split in datasets for k in ("loss", "acc")}
    control = midpoint(theta_a, theta_b) if theta_c is None else theta_c
    with _kept_state(model):
        for i, t in enumerate(ts):
            _set(model, bezier(theta_a, control, theta_b, float(t)))
            update_bn(model, bn_batches)
            for split, batches in datasets.items():
                e = evaluate(model, loss_fn, batches)
                out[f"{split}_loss"][i], out[f"{split}_acc"][i] = e.loss, e.acc
            if on_point is not None:
                on_point(i)
    return out


@dataclass
class CurveState:
    """Where the training of a curve stands: what a checkpoint holds and a resume needs.

    Attributes:
        theta_c: the control point, by parameter name.
        momentum: the SGD momentum buffers, by parameter name (empty before the first step).
        step: steps done.
        losses: the training loss of each step done (nats), at its sampled t.
    """

    theta_c: Direction
    momentum: Direction
    step: int
    losses: list[float]


def curve_step_plan(steps: int, n_batches: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(t (steps,), batch index (steps,)) of every training step: t ~ U(0, 1) and the batches in a
    fresh random order each pass, all drawn from one CPU generator seeded ``seed`` up front, so a
    resumed run takes the same steps as an uninterrupted one."""
    g = torch.Generator().manual_seed(seed)
    ts = torch.rand(steps, generator=g, dtype=torch.float64).numpy()
    order = [torch.randperm(n_batches, generator=g) for _ in range(math.ceil(steps / n_batches))]
    return ts, torch.cat(order)[:steps].numpy()


def train_curve(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, theta_a: Mapping[str, Tensor],
                theta_b: Mapping[str, Tensor], steps: int, lr: float = 0.01, momentum: float = 0.9,
                weight_decay: float = 0.0, seed: int = 0, state: CurveState | None = None,
                on_step: Callable[[CurveState], None] | None = None) -> CurveState:
    """Train the control point theta_c (from the midpoint, or from ``state`` to resume) for ``steps``
    SGD steps on the loss at a sampled t (:func:`curve_step_plan`); the ends never move. ``on_step`` is
    called with the state after every step (e.g. to checkpoint it). The model is restored afterwards."""
    batches = as_batches(batches)
    check_model_loss(model, loss_fn, batches)
    if steps < 1:
        raise ValueError(f"steps={steps}: expected at least 1 training step of the curve")
    if not lr > 0:
        raise ValueError(f"lr={lr}: expected a positive learning rate")
    names = [n for n, _ in model.named_parameters()]
    a = {n: theta_a[n].detach() for n in names}
    b = {n: theta_b[n].detach() for n in names}
    state = state or CurveState(midpoint(a, b), {}, 0, [])
    control = {n: state.theta_c[n].detach().clone().requires_grad_(True) for n in names}
    opt = torch.optim.SGD(list(control.values()), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if state.momentum:  # the resumed optimizer: its momentum buffers as they were
        for n in names:
            opt.state[control[n]]["momentum_buffer"] = state.momentum[n].clone()
    ts, order = curve_step_plan(steps, len(batches), seed)
    buffers = dict(model.named_buffers())
    with _kept_state(model):
        model.train()
        for k in range(state.step, steps):
            x, y = batches[int(order[k])]
            theta = bezier(a, control, b, float(ts[k]))
            loss = loss_fn(torch.func.functional_call(model, {**buffers, **theta}, (x,)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            state = CurveState({n: c.detach().clone() for n, c in control.items()},
                               {n: opt.state[control[n]]["momentum_buffer"].clone() for n in names
                                if "momentum_buffer" in opt.state[control[n]]},
                               k + 1, [*state.losses, float(loss.detach())])
            if on_step is not None:
                on_step(state)
    return state
