"""One config of a scale's matrix end to end: trained model -> 2D surface file -> metrics.

Shared by the regression tests, the benchmarks (which time :func:`compute_config_surface`) and the
tolerance derivation (``python -m lossbench baselines``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import RunConfig, Scale
from .data import ImageData
from .metrics import surface_metrics
from .pipeline import SurfaceSpec, surface_file
from .surface import Surface, parse_axis

#: A net "reached a minimum" when it fits its training set this well (eval mode, fraction correct).
CONVERGED_TRAIN_ACC = 0.9


def scale_spec(scale: Scale, *, dir_seed: int = 0) -> SurfaceSpec:
    """The scale's 2D surface: filter-normalised weights directions, biasbn ignored, train split."""
    return SurfaceSpec(x=parse_axis(scale.surface_x), y=parse_axis(scale.surface_y), norm="filter",
                       ignore="biasbn", dir_type="weights", seed=dir_seed, splits=("train",),
                       eval_samples=scale.eval_samples)


def converged(final: dict[str, float]) -> bool:
    return final.get("train_acc", 0.0) >= CONVERGED_TRAIN_ACC


def compute_config_surface(path: str | Path, model: nn.Module, data: ImageData, config: RunConfig, scale: Scale,
                           *, dir_seed: int = 0, progress: bool | None = None) -> Surface:
    """Compute the scale's surface of ``model`` into ``path`` from scratch (the timed part)."""
    spec = scale_spec(scale, dir_seed=dir_seed)
    attrs = {"config": config.to_dict(), "config_id": config.config_id, "scale": scale.name, "kind": "surface-2d"}
    surface = surface_file(path, model, data, spec, attrs=attrs, overwrite=True, allow_nonfinite=True,
                           progress=progress)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return surface


def config_metrics(surface: Surface) -> dict[str, float]:
    """The suite's metrics of a surface (train loss and accuracy)."""
    return surface_metrics(surface.alphas, surface.betas, surface.values["train_loss"], surface.values["train_acc"])


#: Curvature at the minimum in the suite: Hessian over the first 128 training images (HVPs are ~3x a
#: training step), Lanczos to 1 % relative residual, Hutchinson with 8 probes.
CURVATURE = {"samples": 128, "max_iter": 60, "tol": 1e-2, "probes": 8}


def curvature_metrics(model: nn.Module, data: ImageData, *, seed: int = 0) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, details): ``lam_max``, ``lam_min`` (NaN where Lanczos did not converge at that end),
    ``eig_ratio_center`` = |lam_min / lam_max| and the Hutchinson ``trace``; details hold the
    iterations, residuals and the trace's standard error."""
    from .evaluate import cross_entropy, make_batches
    from .hessian import hessian_eigs, hutchinson_trace

    device = next(model.parameters()).device
    n = CURVATURE["samples"]
    batches = make_batches(data.x_train[:n], data.y_train[:n], n, device=device)
    eig = hessian_eigs(model, cross_entropy(), batches, max_iter=CURVATURE["max_iter"], tol=CURVATURE["tol"], seed=seed)
    trace = hutchinson_trace(model, cross_entropy(), batches, probes=CURVATURE["probes"], seed=seed)
    metrics = {
        "lam_max": eig.eig_max if eig.converged_max else float("nan"),
        "lam_min": eig.eig_min if eig.converged_min else float("nan"),
        "eig_ratio_center": eig.eig_ratio,
        "trace": trace.trace,
    }
    details = {"lanczos_iterations": eig.iterations, "lanczos_converged": eig.converged,
               "residual_max": eig.residual_max, "residual_min": eig.residual_min, "trace_stderr": trace.stderr,
               **CURVATURE}
    return metrics, details


def suite_metrics(surface: Surface, model: nn.Module, data: ImageData, *, checkpoints: list[Path] | None = None,
                  curvature: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, details) the suite checks for one config: the surface's, plus the curvature at the
    minimum and the PCA path's explained variance when asked."""
    metrics = config_metrics(surface)
    details: dict[str, Any] = {}
    if curvature:
        more, details = curvature_metrics(model, data)
        metrics.update(more)
    if checkpoints:
        metrics.update(pca_metrics(checkpoints, [n for n, _ in model.named_parameters()]))
    return metrics, details


def pca_metrics(checkpoints: list[Path], names: list[str]) -> dict[str, float]:
    """Explained-variance ratios of the top two PCA directions of the training path over the weights
    ``names`` (``pca_var_1``, ``pca_var_2``; the paper reports 40-90 % together). The last checkpoint
    is the end point."""
    from .trajectory import load_path, pca_directions

    thetas, epochs = load_path(checkpoints, names)
    pca = pca_directions(thetas, thetas[-1], epochs=epochs)
    return {"pca_var_1": float(pca.explained_variance_ratio[0]), "pca_var_2": float(pca.explained_variance_ratio[1])}


@dataclass(frozen=True)
class Reproduction:
    """What one config of the matrix produced (JSON-safe via :meth:`to_json`)."""

    config: RunConfig
    scale: str
    final: dict[str, float]
    metrics: dict[str, float]
    surface_path: Path
    grid_seconds: float
    points: int
    eval_samples: int

    @property
    def converged(self) -> bool:
        return converged(self.final)

    def to_json(self) -> dict[str, Any]:
        return {
            "config_id": self.config.config_id, "config": self.config.to_dict(), "scale": self.scale,
            "final": self.final, "converged": self.converged, "metrics": self.metrics,
            "surface_path": str(self.surface_path), "grid_seconds": self.grid_seconds, "points": self.points,
            "eval_samples": self.eval_samples, "seconds_per_point": self.grid_seconds / max(self.points, 1),
        }


def reproduce(config: RunConfig, scale: Scale, *, model: nn.Module, final: dict[str, float], data: ImageData,
              results_dir: str | Path, dir_seed: int = 0, checkpoints: list[Path] | None = None,
              curvature: bool = True, progress: bool | None = None) -> Reproduction:
    """Surface + metrics of one trained config; the surface goes to ``results_dir/<config_id>/``.

    With ``curvature``, the Hessian numbers at the minimum are added; with ``checkpoints`` (the
    per-epoch weights), the PCA explained variance of the path.
    """
    path = Path(results_dir) / config.config_id / f"surface-2d-d{dir_seed}.h5"
    t0 = time.perf_counter()
    surface = compute_config_surface(path, model, data, config, scale, dir_seed=dir_seed, progress=progress)
    seconds = time.perf_counter() - t0
    if not np.all(np.isfinite(surface.values["train_loss"])):
        raise ValueError(f"{config.config_id}: the surface has non-finite losses; see {path}")
    metrics = suite_metrics(surface, model, data, checkpoints=checkpoints, curvature=curvature)[0]
    return Reproduction(config=config, scale=scale.name, final=dict(final), metrics=metrics,
                        surface_path=path, grid_seconds=seconds, points=int(surface.done.size),
                        eval_samples=int(min(scale.eval_samples, len(data.x_train))))


def derive_spread(config: RunConfig, scale: Scale, *, seeds: tuple[int, ...], dir_seeds: tuple[int, ...],
                  data: ImageData, results_dir: str | Path, train_fn, progress: bool | None = None,
                  ) -> tuple[Reproduction, dict[str, list[float]]]:
    """Metrics over training seeds x direction seeds, for tolerances from measured spread.

    Args:
        train_fn: ``train_fn(config) -> TrainResult`` (the cached trainer, bound to device and cache).

    Returns:
        (the reproduction at ``seeds[0]``, ``dir_seeds[0]`` -- the baseline value -- and
        metric -> list of values over all combinations).
    """
    if not seeds or not dir_seeds:
        raise ValueError("need at least one training seed and one direction seed")
    reference: Reproduction | None = None
    samples: dict[str, list[float]] = {}
    for seed in seeds:
        result = train_fn(config.replace(seed=seed))
        for dir_seed in dir_seeds:
            # curvature and the PCA path do not depend on the direction seed: once per training seed
            first = dir_seed == dir_seeds[0]
            rep = reproduce(result.config, scale, model=result.model, final=result.final, data=data,
                            results_dir=Path(results_dir) / f"seed{seed}", dir_seed=dir_seed,
                            checkpoints=result.checkpoints if first else None, curvature=first, progress=progress)
            if reference is None:
                reference = rep
            for name, value in rep.metrics.items():
                samples.setdefault(name, []).append(value)
    return reference, samples  # type: ignore[return-value]  (set in the first iteration)


SPREAD_METHOD = (
    "value: the metric at training seed {seeds[0]} and direction seed {dir_seeds[0]}; "
    "atol: the per-kind floor of lossbench.baselines.DEFAULT_TOLERANCES plus 3 x the sample standard "
    "deviation over training seeds {seeds} x direction seeds {dir_seeds}; rtol: the floor's"
)
