"""A model's loss landscape as a regression test in a user's own project (the ``landscape_regression``
fixture of :mod:`lossbench.pytest_plugin`, in the manner of pytest-regressions' ``num_regression``).

:func:`landscape_metrics` computes, on fixed seeds, a filter-normalised 1D line or 2D surface of the
model's loss, its sharpness and convexity metrics, and (where asked) the Hessian's largest eigenvalue
and trace. :func:`check_landscape` keeps them in ``<folder>/<name>.json`` (value and a measured
tolerance per metric, the baseline format of :mod:`lossbench.baselines`) with the surface beside it
(``<name>.h5``), and compares a new run with them.

The tolerance of each metric is measured when the file is written: the metrics are computed again
with the model and the data in float64, and ``tol = 10 x |float32 - float64|`` (or the metric kind's
floor, :data:`lossbench.baselines.TOL_FLOORS`), so a float32 recompute of the same weights on another
CPU, a GPU or another thread count passes, and a change of the model or the method of 1 % fails.

What does not hold across machines is training: a model trained inside the test gets other weights on
another CPU (another math-library code path) or thread count, and so another landscape. The file keeps
the weights' sha256, so a failure says which of the two happened; ``pin_weights=True`` stores the weights
beside the baseline on the first run and tests the landscape of those on every later one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from . import baselines as bl
from .directions import create_random_direction
from .evaluate import Batch, LossFn, as_batches, cross_entropy, make_batches
from .hessian import hessian_eigs, hutchinson_trace
from .metrics import PATCH, line_metrics, surface_metrics
from .surface import Surface, compute_surface

#: Images per forward pass when ``data`` is one ``(inputs, targets)`` pair.
PAIR_BATCH = 512
#: Hutchinson probes of the trace (fixed seed, so the estimate is a deterministic number).
TRACE_PROBES = 16
#: Lanczos for lambda_max, to 1e-3 of its own size (:func:`lossbench.hessian.lanczos`).
LANCZOS = {"max_iter": 100, "tol": 1e-3}


@dataclass(frozen=True)
class LandscapeSpec:
    """What :func:`landscape_metrics` computes.

    Attributes:
        grid: points per axis, odd so that the centre is a grid point.
        span: the axis runs over [-span, span], in units of the filter-normalised directions.
        directions: 1 (a line along delta) or 2 (a grid over delta and eta).
        hessian: also lambda_max (Lanczos) and the trace (Hutchinson) at the centre.
    """

    grid: int = 11
    span: float = 1.0
    directions: int = 1
    hessian: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.grid, int) or self.grid < 5 or self.grid % 2 == 0:
            raise ValueError(f"grid={self.grid!r}: expected an odd number of points per axis, at least 5 (e.g. 11)")
        if not (isinstance(self.span, (int, float)) and math.isfinite(self.span) and self.span > 0):
            raise ValueError(f"span={self.span!r}: expected a positive number (the axis runs over [-span, span])")
        if self.directions not in (1, 2):
            raise ValueError(f"directions={self.directions!r}: expected 1 (a line) or 2 (a surface)")
        # the curvature is a quadratic fit over |alpha| <= PATCH: it needs the centre and a point on each side
        near = int(np.sum(np.abs(self.axis()) <= PATCH + 1e-12))
        if near < 3:
            need = math.ceil(2 * self.span / PATCH) + 1
            need += need % 2 == 0
            raise ValueError(f"grid={self.grid} over [-{self.span:g}, {self.span:g}] puts {near} point(s) within "
                             f"|alpha| <= {PATCH:g}, where the curvature is fitted; it needs 3: grid >= {need} for "
                             f"span={self.span:g} (the rule: a step 2*span/(grid-1) of at most {PATCH:g})")

    def axis(self) -> np.ndarray:
        return np.linspace(-self.span, self.span, self.grid)


def as_landscape_batches(data: Any) -> list[Batch]:
    """``data`` as batches: an ``(inputs, targets)`` pair of tensors (split into batches of
    :data:`PAIR_BATCH`), a list of such batches, or a DataLoader."""
    if (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)
            and data[0].dim() > 0 and len(data[0]) == len(data[1])):
        return make_batches(data[0], data[1], PAIR_BATCH)
    return as_batches(data, what="data")


def default_loss(batches: list[Batch], loss: LossFn | None) -> LossFn:
    """The loss given, else cross-entropy for integer class labels; float targets need one named."""
    if loss is not None:
        return loss
    if batches[0][1].is_floating_point():
        raise ValueError("the targets are float: say which loss they go with, e.g. "
                         "landscape_regression.check(model, data, loss=torch.nn.MSELoss())")
    return cross_entropy()


def landscape_metrics(model: nn.Module, batches: list[Batch], loss_fn: LossFn, spec: LandscapeSpec
                      ) -> tuple[dict[str, float], Surface]:
    """The metrics of the landscape ``spec`` describes (seeds 0 and 1 for delta and eta, filter
    normalisation, biases and BatchNorm ignored), and its surface. The model's weights are restored."""
    device = next(model.parameters()).device
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    delta = create_random_direction(model, seed=0)
    eta = create_random_direction(model, seed=1) if spec.directions == 2 else None
    axis = spec.axis()
    surface = compute_surface(model, loss_fn, {"train": batches}, delta=delta, eta=eta, alphas=axis,
                              betas=axis if eta is not None else None, allow_nonfinite=True,
                              attrs={"kind": "landscape-regression", "grid": spec.grid, "span": spec.span,
                                     "directions": spec.directions})
    loss, acc = surface.values["train_loss"], surface.values["train_acc"]
    if not np.all(np.isfinite(loss)):
        raise ValueError(f"the loss is not finite at {int((~np.isfinite(loss)).sum())} points of the grid: the "
                         f"model diverges within span={spec.span}; choose a smaller span")
    acc = None if np.all(np.isnan(acc)) else acc
    if eta is None:
        metrics = line_metrics(surface.alphas, loss, acc)
    else:
        metrics = surface_metrics(surface.alphas, surface.betas, loss, acc)
    if spec.hessian:
        eig = hessian_eigs(model, loss_fn, batches, ends="max", **LANCZOS)
        trace = hutchinson_trace(model, loss_fn, batches, probes=TRACE_PROBES)
        metrics["eig_max"] = eig.values[0]
        metrics["trace"] = trace.trace  # fixed probes: a deterministic number (its sampling error is not a tol)
    return {k: float(v) for k, v in metrics.items()}, surface


def measured_tolerances(model: nn.Module, batches: list[Batch], loss_fn: LossFn, spec: LandscapeSpec,
                        values: Mapping[str, float]) -> dict[str, float]:
    """``tol`` per metric: 10 x its deviation in a float64 recompute (model and data), or the floor."""
    model64 = copy.deepcopy(model).double()
    batches64 = [(x.double(), y.double() if y.is_floating_point() else y) for x, y in batches]
    again, _ = landscape_metrics(model64, batches64, loss_fn, spec)
    jitter = {k: abs(again[k] - v) if math.isfinite(again.get(k, math.nan)) and math.isfinite(v) else 0.0
              for k, v in values.items()}
    return bl.recompute_tolerances(values, jitter)


WEIGHTS_DIFFER = ("the weights differ from the baseline's (stored {stored}, obtained {obtained}): the model was "
                  "made anew and its training is not bit-reproducible across machines (CPU model, math-library code "
                  "path, thread count, torch version), so its landscape differs as another training seed's would. "
                  "To test the landscape of fixed weights, pin them: check(..., pin_weights=True) stores them "
                  "beside the baseline on the first run and loads them on every later one")
SAME_WEIGHTS_MOVED = ("the landscape of the same weights moved (weights {obtained}, as stored): a change of the "
                      "model's code, the data, the loss or lossbench's method")


def pin_weights_(model: nn.Module, path: Path) -> str:
    """Load the pinned weights at ``path`` into ``model`` (or store the model's there when there are none
    yet); the weights' sha256. A file that does not fit the model is an error naming both."""
    import torch

    from ._io import state_sha256, torch_save_atomic

    if not path.exists():
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        torch_save_atomic(state, path)
        return state_sha256(state)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"the pinned weights {path} do not fit this model ({str(exc).splitlines()[0]}); delete "
                         "the file and run pytest --lossbench-regen to pin the new model") from None
    return state_sha256(state)


def check_landscape(model: nn.Module, data: Any, *, folder: str | Path, name: str, loss: LossFn | None = None,
                    spec: LandscapeSpec = LandscapeSpec(), regen: bool = False, pin_weights: bool = False) -> bl.Outcome:
    """Compute the landscape of ``model`` on ``data`` and compare it with ``<folder>/<name>.json``.

    A missing file is written (metrics, measured tolerances, the weights' sha256, the surface as
    ``<name>.h5``) and the outcome is ``created``; with ``regen`` a differing file is rewritten
    (``updated``); otherwise the outcome is ``passed`` or ``failed``, and a failure keeps
    ``<name>.obtained.json`` and ``<name>.obtained.h5`` beside the expected files and says whether the
    weights themselves differ from the stored ones (training again on another machine) or the landscape
    of the same weights moved. With ``pin_weights`` the model's weights are stored as ``<name>.pt`` on the
    first run (or with ``regen``) and loaded into ``model`` on every later one.
    """
    from ._io import state_sha256
    from .store import save_surface

    batches = as_landscape_batches(data)
    loss_fn = default_loss(batches, loss)
    folder = Path(folder)
    path = folder / f"{name}.json"
    if pin_weights:
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / f"{name}.pt"
        if regen:
            weights.unlink(missing_ok=True)
        sha = pin_weights_(model, weights)
    else:
        sha = state_sha256(model.state_dict())
    values, surface = landscape_metrics(model, batches, loss_fn, spec)
    extra = {"landscape": {"grid": spec.grid, "span": spec.span, "directions": spec.directions,
                           "hessian": spec.hessian, "samples": sum(len(y) for _, y in batches),
                           "pinned_weights": f"{name}.pt" if pin_weights else None}}
    source = {**bl.provenance(str(next(model.parameters()).device)), "weights_sha256": sha}
    exists = path.exists()
    stored_sha = bl.load_baseline(path).get("source", {}).get("weights_sha256") if exists else None
    tolerances = None
    if not exists or regen:
        tolerances = measured_tolerances(model, batches, loss_fn, spec, values)
    outcome = bl.check(path, values, config_id=name, scale="landscape", source=source, regen=regen,
                       tolerances=tolerances, extra=extra)
    if outcome.status in ("created", "updated"):
        save_surface(folder / f"{name}.h5", surface)
        (folder / f"{name}.obtained.h5").unlink(missing_ok=True)
    elif outcome.status == "failed":
        save_surface(folder / f"{name}.obtained.h5", surface)
        if stored_sha and stored_sha != sha:
            why = WEIGHTS_DIFFER.format(stored=stored_sha[:12], obtained=sha[:12])
        elif stored_sha:
            why = SAME_WEIGHTS_MOVED.format(obtained=sha[:12])
        else:
            why = ""
        if why:
            outcome = bl.Outcome(outcome.status, outcome.path, outcome.rows, f"{why}\n{outcome.message}", outcome.tier)
    else:
        (folder / f"{name}.obtained.h5").unlink(missing_ok=True)
    return outcome
