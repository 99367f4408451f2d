"""Grid evaluation of f(alpha, beta) = L(theta + alpha delta + beta eta) (Li et al. 2018, sections 3-4).

The reference evaluator here is meant to be obviously correct: for each grid point every addressed
tensor is set to ``theta + alpha*delta (+ beta*eta)`` from a saved copy of theta (no running
``add_``/``sub_`` walk, so no drift), the model is evaluated in eval mode over the whole evaluation set
(:func:`lossbench.evaluate.evaluate`: sum of per-sample losses / N), and on exit, normal or not, the
model's tensors are restored bit for bit.

Axis order, written down once: in memory a 2D surface is indexed ``[i_alpha, j_beta]`` (numpy
``indexing="ij"``); ``alphas`` run along axis 0. :mod:`lossbench.store` converts to the authors' order.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import stop
from ._malloc import keep_freed_memory_once
from ._progress import progress_bar
from .axis import MAX_AXIS_POINTS, Axis, parse_axis  # noqa: F401  (re-exported: the grid's axes)
from .directions import Direction, check_compatible, model_tensors
from .engine import Measure, make_measure
from .errors import NonFiniteLossError
from .evaluate import Batch, LossFn, as_datasets, check_model_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Surface:
    """Loss and accuracy over a 1D line or a 2D grid.

    Attributes:
        alphas: (n_alpha,) float64, steps along delta in units of the (normalised) direction.
        betas: (n_beta,) float64 along eta, or None for a 1D surface.
        values: ``"<split>_loss"`` (mean cross-entropy, nats) and ``"<split>_acc"`` (fraction 0-1), each
            of shape :attr:`shape`, float64; meaningful only where :attr:`done`.
        done: bool array of :attr:`shape`: which points have been computed.
        attrs: JSON-safe metadata (config, direction seeds, normalisation, versions).
    """

    alphas: np.ndarray
    betas: np.ndarray | None
    values: dict[str, np.ndarray]
    done: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.alphas),) if self.betas is None else (len(self.alphas), len(self.betas))

    @property
    def ndim(self) -> int:
        return 1 if self.betas is None else 2

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    @classmethod
    def empty(cls, alphas: np.ndarray, betas: np.ndarray | None, keys: Sequence[str],
              attrs: Mapping[str, Any] | None = None) -> "Surface":
        shape = (len(alphas),) if betas is None else (len(alphas), len(betas))
        return cls(
            alphas=np.asarray(alphas, dtype=np.float64),
            betas=None if betas is None else np.asarray(betas, dtype=np.float64),
            values={k: np.full(shape, np.nan) for k in keys},
            done=np.zeros(shape, dtype=bool),
            attrs=dict(attrs or {}),
        )

    def center_index(self) -> tuple[int, ...]:
        """Index of the grid point closest to (0, 0)."""
        i = int(np.argmin(np.abs(self.alphas)))
        return (i,) if self.betas is None else (i, int(np.argmin(np.abs(self.betas))))


@contextlib.contextmanager
def perturbation(
    model: nn.Module, theta: Mapping[str, Tensor], directions: Sequence[Mapping[str, Tensor]], *,
    dir_type: str = "weights",
) -> Iterator[Callable[..., None]]:
    """Yield ``set_point(*coefs)``, which sets each tensor to theta + sum_k coefs[k] * directions[k].

    The directions are moved to the model's tensors' device and dtype once. On exit (also on an
    exception or KeyboardInterrupt) every addressed tensor gets back its value from before the
    ``with``, bit for bit.
    """
    live = model_tensors(model, dir_type)
    check_compatible(theta, live, what="theta")
    for k, d in enumerate(directions):
        check_compatible(d, live, what=f"direction {k}")
    floating = [name for name, t in live.items() if t.is_floating_point()]
    saved = {name: live[name].detach().clone() for name in floating}
    centre = {name: theta[name].detach().to(live[name].device, live[name].dtype) for name in floating}
    dirs = [{name: d[name].detach().to(live[name].device, live[name].dtype) for name in floating} for d in directions]

    live_list = [live[n] for n in floating]
    centre_list = [centre[n] for n in floating]
    dir_lists = [[d[n] for n in floating] for d in dirs]

    @torch.no_grad()
    def set_point(*coefs: float) -> None:
        if len(coefs) != len(dirs):
            raise ValueError(f"got {len(coefs)} coordinates for {len(dirs)} directions")
        if not live_list:
            return
        # theta + sum_k c_k d_k, from the saved theta each time (fused multi-tensor ops, no drift)
        value = torch._foreach_add(centre_list, dir_lists[0], alpha=float(coefs[0]))
        for c, d in zip(coefs[1:], dir_lists[1:]):
            torch._foreach_add_(value, d, alpha=float(c))
        torch._foreach_copy_(live_list, value)

    try:
        yield set_point
    finally:
        with torch.no_grad():
            for name in floating:
                live[name].copy_(saved[name])


def compute_surface(
    model: nn.Module,
    loss_fn: LossFn,
    datasets: Mapping[str, Sequence[Batch]],
    *,
    delta: Direction,
    alphas: np.ndarray,
    eta: Direction | None = None,
    betas: np.ndarray | None = None,
    theta: Mapping[str, Tensor] | None = None,
    dir_type: str = "weights",
    resume: Surface | None = None,
    attrs: Mapping[str, Any] | None = None,
    on_checkpoint: Callable[[Surface], None] | None = None,
    checkpoint_seconds: float = 30.0,
    allow_nonfinite: bool = False,
    progress: bool | None = None,
    engine: str = "reference",
    engine_options: Mapping[str, Any] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Surface:
    """Evaluate the loss and accuracy at every grid point not yet done.

    Args:
        model: any module; its addressed tensors are restored afterwards.
        loss_fn: mean loss over a batch (``nn.CrossEntropyLoss()`` for the paper).
        datasets: split name -> reusable batches, e.g. ``{"train": ..., "test": ...}``; gives the keys
            ``train_loss``, ``train_acc``, ... One split's batches alone (a list or a DataLoader) are
            the ``train`` split.
        delta: the first direction (a tensor per addressed name).
        alphas: (n_alpha,) coordinates along ``delta``.
        eta: the second direction; None for a 1D line.
        betas: (n_beta,) coordinates along ``eta``; None for a 1D line.
        theta: the centre; default the model's current tensors.
        dir_type: ``weights`` (parameters) or ``states`` (state dict, incl. BN statistics).
        resume: a partial surface on the same grid; its done points are kept, not recomputed.
        attrs: metadata stored in the result.
        on_checkpoint: called with the partial surface at most every ``checkpoint_seconds``, and once
            more on exit (finished, interrupted or failed), e.g. to write it atomically to disk.
        allow_nonfinite: record NaN/inf losses instead of raising :class:`NonFiniteLossError`.
        progress: progress bar (None: only on a terminal).
        engine: ``reference`` or ``fast`` (:mod:`lossbench.engine`); ``engine_options`` go to the fast one.
        shard: (rank, world): compute only this rank's share of the unfinished points.

    Returns:
        The :class:`Surface`, indexed ``[i_alpha, j_beta]`` (complete unless sharded).
    """
    datasets = as_datasets(datasets)
    for split, batches in datasets.items():
        check_model_loss(model, loss_fn, batches, what=f"the {split} split")
    measure, keys = make_measure(engine, model, loss_fn, datasets, **dict(engine_options or {}))
    finite = () if allow_nonfinite else tuple(k for k in keys if k.endswith("_loss"))
    return compute_grid(model, measure, keys, delta=delta, alphas=alphas, eta=eta, betas=betas, theta=theta,
                        dir_type=dir_type, resume=resume, attrs=attrs, on_checkpoint=on_checkpoint,
                        checkpoint_seconds=checkpoint_seconds, finite_keys=finite, progress=progress, shard=shard)


def compute_grid(
    model: nn.Module,
    measure: Measure,
    keys: Sequence[str],
    *,
    delta: Direction,
    alphas: np.ndarray,
    eta: Direction | None = None,
    betas: np.ndarray | None = None,
    theta: Mapping[str, Tensor] | None = None,
    dir_type: str = "weights",
    resume: Surface | None = None,
    attrs: Mapping[str, Any] | None = None,
    on_checkpoint: Callable[[Surface], None] | None = None,
    checkpoint_seconds: float = 30.0,
    finite_keys: Sequence[str] = (),
    progress: bool | None = None,
    desc: str = "surface",
    shard: tuple[int, int] = (0, 1),
) -> Surface:
    """Record ``measure(model)`` at every grid point not yet done (the engine behind
    :func:`compute_surface` and the Hessian eigenvalue maps); arguments as there. A value of a key in
    ``finite_keys`` that is NaN or infinite raises :class:`NonFiniteLossError` with its coordinates.
    ``shard=(rank, world)`` computes only every world-th unfinished point starting at rank (the same
    list on every rank, so the shards partition it)."""
    if (eta is None) != (betas is None):
        raise ValueError("pass eta and betas together for a 2D surface, or neither for a 1D line")
    alphas = np.asarray(alphas, dtype=np.float64)
    betas = None if betas is None else np.asarray(betas, dtype=np.float64)
    check_grid_fits(len(alphas) * (1 if betas is None else len(betas)), len(keys))
    keep_freed_memory_once()  # a grid's per-point activations reuse the heap (see lossbench._malloc)
    surface = _start(resume, alphas, betas, list(keys), attrs)
    if theta is None:
        theta = {n: t.detach().clone() for n, t in model_tensors(model, dir_type).items()}
    directions = [delta] if eta is None else [delta, eta]

    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard {shard} is not (rank, world) with 0 <= rank < world")
    todo = [idx for idx in np.ndindex(surface.shape) if not surface.done[idx]][rank::world]
    last_flush = time.monotonic()
    dirty = False
    bar = progress_bar(total=len(todo), progress=progress, desc=desc, unit="pt")
    clock = _CostClock(len(todo), desc)
    try:
        with perturbation(model, theta, directions, dir_type=dir_type) as set_point:
            for idx in todo:
                coords = (alphas[idx[0]],) if betas is None else (alphas[idx[0]], betas[idx[1]])
                set_point(*coords)
                values = measure(model)
                for key in finite_keys:
                    if not math.isfinite(values[key]):
                        raise NonFiniteLossError(tuple(float(c) for c in coords), values[key], key.rsplit("_", 1)[0])
                for key in keys:
                    surface.values[key][idx] = values[key]
                surface.done[idx] = True
                dirty = True
                bar.update(1)
                clock.tick()
                if on_checkpoint is not None and time.monotonic() - last_flush >= checkpoint_seconds:
                    on_checkpoint(surface)
                    last_flush, dirty = time.monotonic(), False
                stop.check()  # a SIGTERM whose KeyboardInterrupt was swallowed (see lossbench.stop)
    finally:
        bar.close()
        if on_checkpoint is not None and dirty:
            on_checkpoint(surface)
    return surface


#: Bookkeeping per grid point: the values (float64 per key), the done flag, and the to-do list's
#: index tuple (a Python tuple of two ints: ~120 bytes).
_BYTES_PER_POINT_BASE = 1 + 120


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable: free plus reclaimable cache), or None
    where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_grid_fits(points: int, keys: int) -> None:
    """Refuse a grid whose bookkeeping alone would take more than half the available memory, before
    anything is allocated (a 20 000 x 20 000 grid grew past 10 GB before its first point)."""
    need = points * (8 * keys + _BYTES_PER_POINT_BASE)
    available = available_memory()
    if available is not None and need > available // 2:
        raise MemoryError(f"a grid of {points:,} points needs {need / 2**30:.1f} GiB for its bookkeeping alone, more "
                          f"than half the {available / 2**30:.1f} GiB available: use fewer points per axis (the "
                          "paper's surfaces are 51 x 51), or split the range over several runs")


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


#: The grid's cost estimate goes to a logger of its own, so that a command line can show it without
#: every other info line (``python -m lossbench`` does; ``-v`` shows the rest).
ESTIMATE_LOG = logging.getLogger("lossbench.estimate")


#: A run whose remaining points cost less than this (seconds) says nothing: the estimate is for long runs.
ESTIMATE_QUIET_BELOW_S = 10.0


class _CostClock:
    """Says once, after the first few points, what the whole grid will cost: a warning when it is
    more than an hour (so a mistyped axis is caught before days are spent), an info line when it is
    more than :data:`ESTIMATE_QUIET_BELOW_S`, else nothing."""

    def __init__(self, todo: int, desc: str, *, after: int = 3) -> None:
        self.todo, self.desc, self.after, self.done = todo, desc, after, 0
        self.t1 = time.perf_counter()

    def tick(self) -> None:
        self.done += 1
        if self.done == 1:
            self.t1 = time.perf_counter()  # the first point pays the warm-up: time from the second on
        elif self.done == self.after and self.todo > self.after:
            per_point = (time.perf_counter() - self.t1) / (self.after - 1)
            left = per_point * (self.todo - self.done)
            if left < ESTIMATE_QUIET_BELOW_S:
                return
            (ESTIMATE_LOG.warning if left > 3600 else ESTIMATE_LOG.info)(
                "%s: %d points at about %.3g s each: %s left (Ctrl-C or SIGTERM saves; the same command resumes)",
                self.desc, self.todo, per_point, _duration(left))


def _start(resume: Surface | None, alphas: np.ndarray, betas: np.ndarray | None, keys: list[str],
           attrs: Mapping[str, Any] | None) -> Surface:
    if resume is None:
        return Surface.empty(alphas, betas, keys, attrs)
    same_grid = np.array_equal(resume.alphas, alphas) and (
        (resume.betas is None and betas is None)
        or (resume.betas is not None and betas is not None and np.array_equal(resume.betas, betas))
    )
    if not same_grid:
        raise ValueError(
            f"cannot resume: the partial surface has grid {resume.shape} over "
            f"[{resume.alphas[0]:g}, {resume.alphas[-1]:g}], not the requested one; use a new output file"
        )
    missing = [k for k in keys if k not in resume.values]
    if missing and resume.done.any():
        raise ValueError(f"cannot resume: the partial surface lacks {missing}; compute the same data splits")
    values = {k: resume.values.get(k, np.full(resume.shape, np.nan)).copy() for k in keys}
    merged_attrs = {**resume.attrs, **(attrs or {})}
    return Surface(alphas=alphas, betas=betas, values=values, done=resume.done.copy(), attrs=merged_attrs)
