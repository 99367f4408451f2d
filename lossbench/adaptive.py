"""An adaptive grid: spend the images where the contours are.

On a landscape most grid points lie on the walls, far above every contour level that is drawn; there the
exact loss changes no contour. The adaptive grid evaluates every point on a random slice of the data
first, then finishes on the rest of the data only the points whose loss could still be below ``level``,
and their neighbours (so that every grid cell a contour below ``level`` crosses has exact corners, and
every finite-difference curvature at such a point uses exact values).

**The slice and its error.** The slice is ``groups`` disjoint random groups of equal size (a seeded
permutation of the images). At each point the slice's loss is the mean of the groups' mean losses and
its standard error is their standard deviation / sqrt(groups). A point is finished when

    slice mean - t * standard error < level,     t = the (1 - miss) quantile of Student's t, groups - 1 dof

**The guarantee.** A finished point's loss and accuracy are those of the whole data set (the slice's
sums plus the rest's, in another order of summation: equal to float rounding, ~1e-7 relative). A point
left on the slice is recorded with its slice value and standard error (``train_loss_stderr``) and
``train_exact`` = 0; its full-data loss is below ``level`` with probability at most ``miss`` (under the
normal approximation of the group means). Contours at levels below ``level`` and the non-convexity of
points below ``level`` are then those of the full grid. Only the loss is bounded: the accuracy of a
point left on the slice is the slice's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .directions import Direction
from .evaluate import Batch, LossFn, as_batches, make_batches
from .surface import Surface, compute_surface

#: Defaults: 16 groups (15 degrees of freedom for the standard error), a slice of 1/8 of the images,
#: a miss probability of 1e-4 per point (t = 4.67).
GROUPS = 16
SLICE_FRACTION = 0.125
MISS = 1e-4


def neighbours(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one grid step in every direction, diagonals included (a 3 x 3 or 3 window)."""
    out = mask.copy()
    padded = np.pad(mask, 1)
    for shift in np.ndindex(*(3,) * mask.ndim):
        window = tuple(slice(s, s + n) for s, n in zip(shift, mask.shape))
        out |= padded[window]
    return out


def to_finish(slice_mean: np.ndarray, stderr: np.ndarray, level: float, *, groups: int = GROUPS,
              miss: float = MISS) -> np.ndarray:
    """Which points the adaptive grid finishes on the whole data set: those whose slice loss minus
    t x its standard error is below ``level`` (a non-finite slice loss is a wall), and their neighbours."""
    from scipy.stats import t as student_t

    if not 0 < miss < 0.5:
        raise ValueError(f"miss={miss}: expected a probability in (0, 0.5), e.g. 1e-4")
    t = float(student_t.ppf(1 - miss, groups - 1))
    # an unknown error (NaN) at a finite slice loss could hide anything: such a point is finished
    lower = np.where(np.isfinite(slice_mean), slice_mean - t * np.nan_to_num(stderr, nan=np.inf), np.inf)
    return neighbours(lower < level)


def _split(batches: list[Batch], groups: int, fraction: float, seed: int, eval_batch: int
           ) -> tuple[dict[str, list[Batch]], list[Batch], int, int]:
    """(the slice's groups as datasets g0..g{groups-1}, the rest's batches, images per group, total)."""
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    n = len(y)
    per_group = max(1, int(round(fraction * n)) // groups)
    if per_group * groups > n:
        raise ValueError(f"{n} images cannot make {groups} groups: give more images or fewer groups")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(x.device)
    group_sets = {f"g{g}": make_batches(x[order[g * per_group:(g + 1) * per_group]],
                                        y[order[g * per_group:(g + 1) * per_group]], eval_batch)
                  for g in range(groups)}
    rest = order[groups * per_group:]
    return group_sets, make_batches(x[rest], y[rest], eval_batch) if len(rest) else [], per_group, n


def adaptive_surface(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, delta: Direction,
                     alphas: np.ndarray, level: float | None = None, eta: Direction | None = None,
                     betas: np.ndarray | None = None, groups: int = GROUPS, fraction: float = SLICE_FRACTION,
                     miss: float = MISS, seed: int = 0, eval_batch: int = 500, engine: str = "reference",
                     engine_options: Mapping[str, Any] | None = None, theta: Mapping[str, Tensor] | None = None,
                     resume: tuple[Surface | None, Surface | None] = (None, None),
                     on_checkpoint: Callable[[str, Surface], None] | None = None,
                     progress: bool | None = None) -> Surface:
    """The surface of :func:`lossbench.surface.compute_surface` over one split (``batches``: its
    ``train``), computed adaptively (see the module doc).

    Args:
        level: the loss (nats) below which points are finished; None: the slice's loss at the centre +
            ln 10 (a rise by a factor of 10 in perplexity; stored in ``attrs["adaptive"]["level"]``).
        groups: disjoint groups of the slice (their spread is the standard error).
        fraction: the slice's share of the images.
        miss: the probability that a point left on the slice is below ``level``.
        seed: of the permutation that draws the slice.
        resume: partial (slice, rest) surfaces of an interrupted run with the same inputs.
        on_checkpoint: called with ("slice" | "rest", partial surface) as the passes go.

    Returns:
        A :class:`Surface` with ``train_loss``, ``train_acc`` (full data where exact, the slice's
        elsewhere), ``train_loss_stderr`` (0 where exact) and ``train_exact`` (1.0 or 0.0), and
        ``attrs["adaptive"]``: the level, t, the counts of points and of image evaluations against the
        full grid's.
    """
    from scipy.stats import t as student_t

    batches = as_batches(batches)
    if groups < 2:
        raise ValueError(f"groups={groups}: need at least 2 for a standard error")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction}: the slice is a share of the images in (0, 1)")
    group_sets, rest, per_group, n = _split(batches, groups, fraction, seed, eval_batch)
    opts = dict(engine=engine, engine_options=engine_options, theta=theta, progress=progress)
    # the groups are a few images each: the fast engine packs them into one forward pass per point
    packed = {**opts, "engine_options": {"pack": True, **(engine_options or {})}} if engine == "fast" else opts
    first = compute_surface(model, loss_fn, group_sets, delta=delta, eta=eta, alphas=alphas, betas=betas,
                            resume=resume[0], allow_nonfinite=True,
                            on_checkpoint=None if on_checkpoint is None else (lambda s: on_checkpoint("slice", s)),
                            **packed)
    losses = np.stack([first.values[f"g{g}_loss"] for g in range(groups)])  # (groups, *shape)
    accs = np.stack([first.values[f"g{g}_acc"] for g in range(groups)])
    with np.errstate(invalid="ignore"):
        slice_mean = losses.mean(axis=0)
        stderr = losses.std(axis=0, ddof=1) / math.sqrt(groups)
    slice_acc = accs.mean(axis=0)
    if level is None:
        level = float(slice_mean[first.center_index()] + math.log(10))
    finish = to_finish(slice_mean, stderr, level, groups=groups, miss=miss) if rest else np.ones_like(slice_mean, bool)
    n_slice = groups * per_group
    loss, acc = slice_mean.copy(), slice_acc.copy()
    if rest and finish.any():
        start = resume[1] or Surface.empty(first.alphas, first.betas, ["rest_loss", "rest_acc"])
        np.logical_or(start.done, ~finish, out=start.done)  # only the points to finish are computed
        second = compute_surface(model, loss_fn, {"rest": rest}, delta=delta, eta=eta, alphas=alphas, betas=betas,
                                 resume=start, allow_nonfinite=True,
                                 on_checkpoint=None if on_checkpoint is None else (lambda s: on_checkpoint("rest", s)),
                                 **opts)
        n_rest = n - n_slice
        loss[finish] = (n_slice * slice_mean[finish] + n_rest * second.values["rest_loss"][finish]) / n
        acc[finish] = (n_slice * slice_acc[finish] + n_rest * second.values["rest_acc"][finish]) / n
    exact = finish if rest else np.ones_like(finish)
    points = int(finish.size)
    evaluations = n_slice * points + (n - n_slice) * int(finish.sum()) if rest else n * points
    attrs = {"level": level, "t": float(student_t.ppf(1 - miss, groups - 1)), "miss": miss, "groups": groups,
             "slice_images": n_slice, "images": n, "seed": seed, "finished_points": int(exact.sum()),
             "points": points, "image_evaluations": evaluations, "full_grid_image_evaluations": n * points}
    return Surface(alphas=first.alphas, betas=first.betas,
                   values={"train_loss": loss, "train_acc": acc,
                           "train_loss_stderr": np.where(exact, 0.0, stderr), "train_exact": exact.astype(float)},
                   done=np.ones(first.shape, bool), attrs={**first.attrs, "adaptive": attrs})
