"""One config of a scale's matrix end to end: trained model -> 2D surface file -> metrics.

Shared by the regression tests, the benchmarks (which time :func:`compute_config_surface`) and the
tolerance derivation (``python -m lossbench baselines``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
                       eval_samples=scale.eval_samples, eval_batch=scale.eval_batch)


def converged(final: dict[str, float]) -> bool:
    return final.get("train_acc", 0.0) >= CONVERGED_TRAIN_ACC


def compute_config_surface(path: str | Path, model: nn.Module, data: ImageData, config: RunConfig, scale: Scale,
                           *, dir_seed: int = 0, progress: bool | None = None) -> Surface:
    """Compute the scale's surface of ``model`` into ``path`` from scratch (the timed part)."""
    spec = scale_spec(scale, dir_seed=dir_seed)
    attrs = {"config": config.to_dict(), "config_id": config.config_id, "scale": scale.name, "kind": "surface-2d"}
    surface = surface_file(path, model, data, spec, attrs=attrs, overwrite=True, allow_nonfinite=True,
                           progress=progress, engine=scale.engine)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return surface


def config_metrics(surface: Surface) -> dict[str, float]:
    """The suite's metrics of a surface (train loss and accuracy)."""
    return surface_metrics(surface.alphas, surface.betas, surface.values["train_loss"], surface.values["train_acc"])


#: Curvature at the minimum in the suite, besides the images (the scale's ``hessian_samples`` in
#: batches of ``hessian_batch``; HVPs are ~3x a training step): Lanczos until each end's residual is
#: within 1e-3 of its own |lambda| (:func:`lossbench.hessian.lanczos`; an end that does not get there
#: is NaN, unresolved), Hutchinson with 8 probes.
CURVATURE = {"max_iter": 200, "tol": 1e-3, "probes": 8}

#: The Hessian at the minimum is also taken over this many disjoint image subsets of the same size
#: (images [k n, (k+1) n)) when a baseline is written: their sd is the sampling error of each
#: Hessian number (the main job recomputes subset 0).
HESSIAN_SUBSETS = 3


def _subset_batches(model: nn.Module, data: ImageData, samples: int, subset: int, batch: int | None = None):
    """Training images [subset x samples, (subset + 1) x samples) in batches of ``batch`` (default one
    batch), on the model's device: a Hessian's image subset."""
    from .evaluate import make_batches

    lo, hi = subset * samples, (subset + 1) * samples
    if hi > len(data.x_train):
        raise ValueError(f"Hessian image subset {subset} needs images {lo}:{hi}; the train split holds "
                         f"{len(data.x_train)}")
    device = next(model.parameters()).device
    return make_batches(data.x_train[lo:hi], data.y_train[lo:hi], batch or samples, device=device)


def curvature_metrics(model: nn.Module, data: ImageData, *, samples: int, batch: int, seed: int = 0,
                      subset: int = 0) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, details) of the Hessian over ``samples`` training images (subset k: images
    [k samples, (k+1) samples)) in batches of ``batch``: ``eig_max``, ``eig_min`` (NaN where Lanczos did
    not resolve that end), ``eig_ratio_center`` = |eig_min / eig_max| (NaN unless both resolved) and the
    Hutchinson ``trace``; details hold the iterations, residuals, why an end is unresolved, and the
    trace's standard error."""
    from .evaluate import cross_entropy
    from .hessian import hessian_eigs, hutchinson_trace

    lo, hi = subset * samples, (subset + 1) * samples
    batches = _subset_batches(model, data, samples, subset, batch)
    eig = hessian_eigs(model, cross_entropy(), batches, max_iter=CURVATURE["max_iter"], tol=CURVATURE["tol"], seed=seed)
    trace = hutchinson_trace(model, cross_entropy(), batches, probes=CURVATURE["probes"], seed=seed)
    eig_max, eig_min = eig.values
    metrics = {"eig_max": eig_max, "eig_min": eig_min, "eig_ratio_center": eig.eig_ratio, "trace": trace.trace}
    details = {"lanczos_iterations": eig.iterations, "lanczos_converged": eig.converged,
               "residual_max": eig.residual_max, "residual_min": eig.residual_min,
               "unresolved_max": eig.note_max, "unresolved_min": eig.note_min, "trace_stderr": trace.stderr,
               "trace_terms": list(trace.samples), "trace_conditioning": trace.conditioning,
               "samples": samples, "images": [lo, hi], "batch": batch, **CURVATURE}
    return metrics, details


def curvature_sampling(model: nn.Module, data: ImageData, scale: Scale, *, subsets: int = HESSIAN_SUBSETS
                       ) -> dict[str, dict[str, Any]]:
    """The Hessian numbers at the minimum over ``subsets`` disjoint image subsets: per metric the values
    (subset 0 first, the one the suite uses), their sd (the sampling error of one subset's number), the
    subset count and size. A NaN subset (an end Lanczos could not resolve there) makes the sd NaN."""
    runs = [curvature_metrics(model, data, samples=scale.hessian_samples, batch=scale.hessian_batch, subset=k)[0]
            for k in range(subsets)]
    return subset_sampling(runs, images=scale.hessian_samples)


def subset_sampling(runs: list[dict[str, float]], *, images: int) -> dict[str, dict[str, Any]]:
    """Per metric of ``runs`` (one dict per disjoint image subset of ``images`` images, subset 0
    first): the values, their sd (the sampling error of one subset's number; NaN if any value is not
    finite or there is one subset), the subset count and size."""
    import statistics

    out = {}
    for name in runs[0]:
        values = [r[name] for r in runs]
        finite = all(np.isfinite(values))
        out[name] = {"sd": statistics.stdev(values) if finite and len(runs) > 1 else float("nan"),
                     "subsets": len(runs), "images": images, "values": values}
    return out


def scale_curvature(model: nn.Module, data: ImageData, scale: Scale, *, batch: int | None = None
                    ) -> tuple[dict[str, float], dict[str, Any]]:
    """:func:`curvature_metrics` over the scale's Hessian images (``batch`` overrides its batch)."""
    return curvature_metrics(model, data, samples=scale.hessian_samples, batch=batch or scale.hessian_batch)


def suite_metrics(surface: Surface, model: nn.Module, data: ImageData, scale: Scale, *,
                  checkpoints: list[Path] | None = None, curvature: bool = True
                  ) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, details) the suite checks for one config: the surface's, plus the curvature at the
    minimum and the PCA path's explained variance when asked."""
    metrics = config_metrics(surface)
    details: dict[str, Any] = {}
    if curvature:
        more, details = scale_curvature(model, data, scale)
        metrics.update(more)
    if checkpoints:
        metrics.update(pca_metrics(checkpoints, [n for n, _ in model.named_parameters()]))
    return metrics, details


@functools.lru_cache(maxsize=8)
def random_walk_share(checkpoints: int) -> tuple[float, float]:
    """(mean, sd) of the top-2 PCA share of random walks sampled at ``checkpoints`` times: the null model
    of the PCA claim (:func:`lossbench.trajectory.random_walk_shares`, 200 walks, seed 0)."""
    from .trajectory import random_walk_shares

    shares = random_walk_shares(checkpoints)
    return float(shares.mean()), float(shares.std(ddof=1))


def pca_metrics(checkpoints: list[Path], names: list[str]) -> dict[str, float]:
    """Explained-variance ratios of the top two PCA directions of the training path over the weights
    ``names`` (``pca_var_1``, ``pca_var_2``; the paper reports 40-90 % together). The last checkpoint
    is the end point."""
    from .trajectory import load_path, pca_directions

    thetas, epochs = load_path(checkpoints, names)
    pca = pca_directions(thetas, thetas[-1], epochs=epochs)
    return {"pca_var_1": float(pca.explained_variance_ratio[0]), "pca_var_2": float(pca.explained_variance_ratio[1])}


#: What may legitimately vary when the same metrics are recomputed on the same weights; the largest
#: deviation over these, times a safety factor, is a baseline's recompute tolerance.
RECOMPUTE_VARIANTS: tuple[dict[str, Any], ...] = (
    # model and data in double precision: how far float32 rounding alone moves each metric (its
    # conditioning), which is what another CPU or a GPU in float32 changes too
    {"dtype": "float64", "parts": ("surface", "curvature")},
    {"threads": 2},
    {"engine": "fast", "parts": ("surface",)},  # the engine only evaluates surfaces
    {"eval_batch": 96, "hessian_batch": 48, "parts": ("surface", "curvature")},  # unequal last batches
    {"parts": ("surface",)},  # a repeated run
)


#: The names of :data:`RECOMPUTE_VARIANTS` as a baseline's ``jitter_variants`` lists them.
RECOMPUTE_VARIANT_NAMES: tuple[str, ...] = tuple(
    ",".join(f"{k}={val}" for k, val in v.items() if k != "parts") or "repeat" for v in RECOMPUTE_VARIANTS)


def _with_threads(n: int | None):
    import contextlib

    @contextlib.contextmanager
    def ctx():
        before = torch.get_num_threads()
        if n:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return ctx()


def recompute_jitter(config: RunConfig, scale: Scale, *, model: nn.Module, data: ImageData,
                     results_dir: str | Path, checkpoints: list[Path] | None = None, dir_seed: int = 0,
                     base_threads: int = 1, trace_terms: dict[str, list[float]] | None = None
                     ) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]]]:
    """Recompute the suite's metrics of one net under :data:`RECOMPUTE_VARIANTS`.

    Args:
        trace_terms: filled with the Hutchinson terms of the base (``"base"``) and of every variant that
            computes the Hessian, for :func:`terms_deviation`.

    Returns:
        (the base metrics with ``base_threads`` threads, the reference engine and the spec's batch;
        metric -> largest |deviation| from them over the variants (inf where only some are NaN);
        variant name -> its metrics).
    """
    import copy
    import dataclasses

    def run(threads: int, engine: str = "reference", eval_batch: int | None = None,
            hessian_batch: int | None = None, parts: tuple[str, ...] = ("surface", "curvature", "pca"),
            dtype: str = "float32") -> dict[str, float]:
        spec = scale_spec(scale, dir_seed=dir_seed)
        if eval_batch:
            spec = dataclasses.replace(spec, eval_batch=eval_batch)
        path = Path(results_dir) / config.config_id / f"jitter-d{dir_seed}.h5"
        m, d = model, data
        if dtype != "float32":
            m, d = copy.deepcopy(model).to(getattr(torch, dtype)), data.to(getattr(torch, dtype))
        metrics: dict[str, float] = {}
        with _with_threads(threads):
            if "surface" in parts:
                surface = surface_file(path, m, d, spec, attrs={"config_id": config.config_id},
                                       overwrite=True, allow_nonfinite=True, engine=engine)
                metrics.update(config_metrics(surface))
            if "curvature" in parts:
                more, details = scale_curvature(m, d, scale, batch=hessian_batch)
                metrics.update(more)
                metrics_terms.append(details["trace_terms"])
            if "pca" in parts and checkpoints:
                metrics.update(pca_metrics(checkpoints, [n for n, _ in model.named_parameters()]))
        return metrics

    metrics_terms: list[list[float]] = []
    terms = trace_terms if trace_terms is not None else {}
    base = run(base_threads)
    if metrics_terms:
        terms["base"] = metrics_terms.pop()
    variants: dict[str, dict[str, float]] = {}
    for v in RECOMPUTE_VARIANTS:
        name = ",".join(f"{k}={val}" for k, val in v.items() if k != "parts") or "repeat"
        variants[name] = run(v.get("threads", base_threads), v.get("engine", "reference"), v.get("eval_batch"),
                             v.get("hessian_batch"), v.get("parts", ("surface", "curvature", "pca")),
                             v.get("dtype", "float32"))
        if metrics_terms:
            terms[name] = metrics_terms.pop()
    jitter = _max_deviation(base, variants)
    return base, jitter, variants


def terms_deviation(base: list[float], others: dict[str, list[float]]) -> float:
    """The largest mean |deviation| of the Hutchinson terms v_p^T H v_p over ``others`` (variant -> terms,
    probe for probe): how far the trace would move if no term's error cancelled another's.

    The trace is the mean of the terms, so |d trace| <= mean_p |d term_p|: where the terms have mixed
    signs the trace is ill-conditioned (:attr:`lossbench.hessian.TraceResult.conditioning`) and a
    measured |d trace| may be small by luck of the signs; this bound is not."""
    worst = 0.0
    for terms in others.values():
        if len(terms) != len(base) or not base:
            continue
        worst = max(worst, float(np.mean(np.abs(np.asarray(terms, float) - np.asarray(base, float)))))
    return worst


def pair_seed(k: int) -> int:
    """Direction pair k uses seeds 2k (delta) and 2k + 1 (eta): no direction is shared between pairs."""
    return 2 * k


def pair_suffix(k: int) -> str:
    """Metric-name suffix of direction pair k in a flat baseline: none for pair 0 (``curv_max``),
    ``/p1`` for pair 1 (``curv_max/p1``), ..."""
    return "" if k == 0 else f"/p{k}"


def not_recomputed(record: Mapping[str, Any]) -> list[str]:
    """The flat metric names (``curv_max/p1``, ...) of the direction pairs a net's study took from its
    baseline instead of recomputing them (``record["stored_pairs"]``, see :func:`stored_pairs`): what a
    check against that baseline leaves out rather than calling missing."""
    return [f"{name}{pair_suffix(k)}" for k in record.get("stored_pairs", ()) for name in record["pairs"][k]]


def raw_alpha_scale(model: nn.Module, delta: dict[str, torch.Tensor]) -> float:
    """||theta|| / ||delta|| over the tensors ``delta`` moves: the step along an unnormalised direction
    that perturbs the weights as much, relative to their size, as a unit step along a filter-normalised
    one (whose norm is theta's)."""
    from .directions import get_theta

    theta = get_theta(model, "weights")
    moved = [k for k, d in delta.items() if bool(d.any())]
    num = sum(float(theta[k].double().pow(2).sum()) for k in moved)
    den = sum(float(delta[k].double().pow(2).sum()) for k in moved)
    return math.sqrt(num / den)


def line_file(path: str | Path, model: nn.Module, data: ImageData, config: RunConfig, scale: Scale, *, norm: str,
              dir_seed: int, progress: bool | None = None) -> Surface:
    """A 1D random line through the minimum, ``norm``-normalised (paper section 4: ``filter`` against
    ``none``), over the scale's ``line_x`` and evaluation images.

    An unnormalised (``none``) Gaussian direction is sqrt(P) long, hundreds of times the weights, so its
    line runs over ``line_x`` times :func:`raw_alpha_scale` (stored as ``alpha_scale``): the same
    perturbations relative to the weights as the filter-normalised line, inside the basin, as the
    paper's Figure 3 (top row) shows them. Its alphas stay in units of the raw direction."""
    from .pipeline import make_directions
    from .surface import Axis

    axis = parse_axis(scale.line_x)
    spec = SurfaceSpec(x=axis, norm=norm, ignore="biasbn", dir_type="weights", seed=dir_seed,
                       splits=("train",), eval_samples=scale.eval_samples, eval_batch=scale.eval_batch)
    attrs = {"config": config.to_dict(), "config_id": config.config_id, "scale": scale.name, "kind": "line-1d",
             "alpha_scale": 1.0}
    directions = None
    if norm == "none":
        delta, _ = make_directions(model, spec)
        r = raw_alpha_scale(model, delta)
        spec = dataclasses.replace(spec, x=Axis(axis.lo * r, axis.hi * r, axis.num))
        attrs["alpha_scale"], directions = r, (delta, None)
    return surface_file(path, model, data, spec, attrs=attrs, overwrite=True, allow_nonfinite=True,
                        progress=progress, engine=scale.engine, directions=directions)


def line_metrics_of(line: Surface) -> dict[str, float]:
    """The 1D metrics of a :func:`line_file` line: measured on the relative axis alpha / alpha_scale
    (the filter-normalised line's geometry: curvature over |alpha| <= 0.25 of it, sharpness within 0.5),
    with the curvature ``curv`` reported per unit of the line's own direction (raw units for ``none``)."""
    from .metrics import line_metrics

    r = float(line.attrs.get("alpha_scale", 1.0))
    out = line_metrics(np.asarray(line.alphas) / r, line.values["train_loss"], line.values["train_acc"])
    out["curv"] = out["curv"] / r**2
    return out


def interpolation_file(path: str | Path, small: nn.Module, large: nn.Module, data: ImageData, scale: Scale, *,
                       attrs: dict[str, Any] | None = None, progress: bool | None = None) -> Surface:
    """The 1D linear interpolation theta(alpha) = theta_small + alpha (theta_large - theta_small) over
    states (BN statistics too), train and test splits (paper section 4, Figure 2 left)."""
    spec = SurfaceSpec(x=parse_axis(scale.interp_x), dir_type="states", norm="none", ignore="none",
                       splits=("train", "test"), eval_samples=scale.eval_samples,
                       eval_batch=scale.eval_batch, interpolation=True)
    return surface_file(path, small, data, spec, target=large, attrs={"kind": "interpolation", **(attrs or {})},
                        overwrite=True, allow_nonfinite=True, progress=progress)


def grid_values(surface: Surface, keys: tuple[str, ...] | None = None, *,
                by_index: bool = False) -> dict[str, float]:
    """Every point of a surface as flat metrics: ``train_loss@+0.25`` (1D, alpha to 2 decimals) or
    ``train_loss@+0.25,-1.00`` (2D); NaN where a point is not finite. ``by_index`` names a point by its
    place in the grid instead (``train_loss@i03,j07``): for a grid whose extent follows the net (the PCA
    plane spans each net's own path), so that another net's grid has the same names."""
    out = {}
    for key in keys or tuple(surface.values):
        values = np.asarray(surface.values[key], float)
        for idx in np.ndindex(values.shape):
            if by_index:
                name = ",".join(f"{axis}{i:02d}" for axis, i in zip("ij", idx))
            else:
                where = [surface.alphas[idx[0]]] + ([] if surface.betas is None else [surface.betas[idx[1]]])
                name = ",".join(f"{c:+.2f}" for c in where)
            out[f"{key}@{name}"] = float(values[idx])
    return out


def interpolation_metrics(path: str | Path, small: nn.Module, large: nn.Module, data: ImageData, scale: Scale,
                          *, attrs: dict[str, Any] | None = None, progress: bool | None = None) -> dict[str, float]:
    """The interpolation's baseline metrics: loss and accuracy of both splits at every alpha, and the
    summary (the two ends and the barrier between them, :func:`lossbench.metrics.interpolation_summary`)."""
    from .metrics import interpolation_summary

    line = interpolation_file(path, small, large, data, scale, attrs=attrs, progress=progress)
    return {**grid_values(line), **interpolation_summary(line.alphas, line.values["train_loss"])}


#: The seed pairs a config's minima are joined by curves between (the connectivity claim's sample).
CONNECT_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))


def connection_curve(path: str | Path, model: nn.Module, theta_a: dict[str, torch.Tensor],
                     theta_b: dict[str, torch.Tensor], data: ImageData, scale: Scale, *, batch_size: int,
                     attrs: dict[str, Any] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """A mode-connecting curve between two minima of ``model``'s architecture with the scale's settings
    (:func:`lossbench.pipeline.connect_file`: ``connect_epochs`` over the first ``connect_samples``
    training images in minibatches of ``batch_size``, SGD at ``connect_lr``; both paths at
    ``connect_points`` values of t over ``connect_samples`` images of each split); resumable in ``path``.
    Returns the file's content (barriers and their sampling errors in its metadata)."""
    from .pipeline import connect_file

    return connect_file(path, model, data, theta_a=theta_a, theta_b=theta_b, epochs=scale.connect_epochs,
                        lr=scale.connect_lr, points=scale.connect_points, eval_samples=scale.connect_samples,
                        eval_batch=scale.eval_batch, train_batch=batch_size, attrs=attrs, progress=progress)


def curve_check_metrics(model: nn.Module, theta_a: dict[str, torch.Tensor], theta_b: dict[str, torch.Tensor],
                        theta_c: dict[str, torch.Tensor], data: ImageData, scale: Scale) -> dict[str, float]:
    """What the main job checks of a stored curve: the train loss (nats) and accuracy at each t of the
    scale's ``connect_check_t`` on theta(t) = (1-t)^2 theta_a + 2t(1-t) theta_c + t^2 theta_b, BatchNorm
    statistics recomputed over the first ``connect_samples`` training images, which it is evaluated on.
    Names: ``curve_train_loss@t0.50``, ``curve_train_acc@t0.50``."""
    from .connect import path_values
    from .evaluate import cross_entropy, make_batches

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x, y = data.split("train")
    n = scale.connect_samples
    batches = make_batches(x[:n].to(dtype), y[:n], scale.eval_batch, device=device)
    cast = {name: {k: v.to(device=device, dtype=dtype) for k, v in theta.items()}
            for name, theta in (("a", theta_a), ("b", theta_b), ("c", theta_c))}
    ts = np.asarray(scale.connect_check_t, float)
    values = path_values(model, cross_entropy(), {"train": batches}, theta_a=cast["a"], theta_b=cast["b"],
                         theta_c=cast["c"], ts=ts, bn_batches=batches)
    return {f"curve_train_{k}@t{t:.2f}": float(values[f"train_{k}"][i]) for i, t in enumerate(ts) for k in ("loss", "acc")}


def trajectory_metrics(path: str | Path, model: nn.Module, net, data: ImageData, scale: Scale, *,
                       progress: bool | None = None) -> dict[str, float]:
    """The PCA-plane surface's baseline metrics: the train loss and accuracy at every grid point (named
    by grid index: the plane's extent is the net's own path's, so a net retrained on another CPU has
    other coordinates but the same points) and the top-2 explained variance. ``net`` carries the PCA (a
    shipped net) or the checkpoints of its path; ``model`` is what is evaluated (``net.model``, or a
    float64 copy of it)."""
    surface = trajectory_surface(path, model, net, data, scale, progress=progress)
    ev = surface.attrs["explained_variance_ratio"]
    return {**grid_values(surface, ("train_loss", "train_acc"), by_index=True),
            "pca_var_1": float(ev[0]), "pca_var_2": float(ev[1])}


def trajectory_surface(path: str | Path, model: nn.Module, net, data: ImageData, scale: Scale, *,
                       progress: bool | None = None) -> Surface:
    """The loss on the PCA plane of ``net``'s training path (the paper's Figure 9), over the scale's
    trajectory grid: from the shipped PCA where there is one, else from the checkpoints."""
    from .pipeline import pca_plane_file, trajectory_file

    kwargs = dict(grid=scale.trajectory_grid, eval_samples=scale.eval_samples, overwrite=True, config=net.config,
                  progress=progress)
    if hasattr(net, "pca"):  # a shipped net: its PCA was computed from the checkpoints when it was shipped
        return pca_plane_file(path, model, net.pca(), data, **kwargs)
    return trajectory_file(path, model, net.checkpoints, data, **kwargs)


def wants_lines(config: RunConfig) -> bool:
    """Whether a net's study draws the 1D ``filter`` and ``none`` lines: the SGD nets of the
    filter-normalisation experiment. The authors' depth matrix trains with SGD too (their init), but no
    claim reads its lines, and they would be a minute of the main job."""
    return config.optimizer == "sgd" and config.init != "authors"


def study_net(config: RunConfig, scale: Scale, *, net, data: ImageData, results_dir: str | Path,
              first_surface: Surface | None = None, lines: bool | None = None,
              progress: bool | None = None, log: Callable[[str], None] | None = None,
              rest: tuple[dict[str, Any], dict[str, float]] | None = None
              ) -> tuple[dict[str, Any], dict[str, float]]:
    """Everything the claims need from one net, and the flat metrics its baseline checks.

    Args:
        net: a :class:`~lossbench.train.TrainResult` or a shipped
            :class:`~lossbench.reference_nets.ReferenceNet` (its stored PCA is used).
        first_surface: pair 0's surface if the caller computed it already (the benchmark times it).
        lines: compute the 1D ``filter`` and ``none`` lines (default: :func:`wants_lines`).
        log: called with one line after each finished step (e.g. the pytest terminal).
        rest: :func:`study_rest`'s result if another process computed it (the main job's helpers).

    Returns:
        (record for :func:`lossbench.claims.evaluate_claims`, flat metrics: pair k's surface metrics
        with :func:`pair_suffix`, the curvature at the minimum, the PCA shares and the lines' metrics).
    """
    say = log or (lambda message: None)
    t0 = time.perf_counter()
    surface = first_surface if first_surface is not None else compute_config_surface(
        Path(results_dir) / config.config_id / "surface-2d-p0.h5", net.model, data, config, scale,
        dir_seed=pair_seed(0), progress=progress)
    first = config_metrics(surface)
    say(f"{config.config_id}: surface, direction pair 1 of {scale.dir_pairs} ({time.perf_counter() - t0:.0f} s)")
    part, rest_flat = rest if rest is not None else study_rest(config, scale, net=net, data=data,
                                                               results_dir=results_dir, lines=lines,
                                                               progress=progress, log=log)
    flat = {f"{name}{pair_suffix(0)}": v for name, v in first.items()} | rest_flat
    record: dict[str, Any] = {"config_id": config.config_id, "config": config.to_dict(), "scale": scale.name,
                              "final": dict(net.final), "converged": converged(net.final),
                              "pairs": [first, *part["pairs"]]}
    record.update({k: v for k, v in part.items() if k != "pairs"})
    return record, flat


def stored_pairs(doc: Mapping[str, Any], *, weights_sha256: str, scale: Scale) -> dict[int, dict[str, float]]:
    """The direction pairs the main job takes from a net's baseline ``doc`` instead of computing them:
    pairs ``scale.pair_check`` .. ``dir_pairs - 1``, each only where ``doc`` was measured on these weights
    and stores every surface metric of pair 0 for it; {} for ``pair_check`` None (every pair computed).

    Returns:
        pair index -> {surface metric name (as :func:`config_metrics` names it): stored value}.
    """
    if scale.pair_check is None or (doc.get("source") or {}).get("weights_sha256") != weights_sha256:
        return {}
    metrics = doc.get("metrics") or {}
    names = [n for n in metrics if "/" not in n and f"{n}{pair_suffix(1)}" in metrics and not n.startswith("line_")]
    out = {}
    for k in range(max(scale.pair_check, 1), scale.dir_pairs):
        keys = {n: f"{n}{pair_suffix(k)}" for n in names}
        if names and all(key in metrics for key in keys.values()):
            out[k] = {n: float(metrics[key]["value"]) for n, key in keys.items()}
    return out


def study_rest(config: RunConfig, scale: Scale, *, net, data: ImageData, results_dir: str | Path,
               lines: bool | None = None, stored: Mapping[int, Mapping[str, float]] | None = None,
               progress: bool | None = None, log: Callable[[str], None] | None = None
               ) -> tuple[dict[str, Any], dict[str, float]]:
    """:func:`study_net` without direction pair 0 (the part the main job's helper processes take): pairs
    1 .. ``scale.dir_pairs - 1``, the curvature at the minimum, the PCA and the lines.

    Args:
        stored: pairs taken as stored instead of computed (:func:`stored_pairs`): in the record's
            ``pairs`` (the claims use them) and listed in its ``stored_pairs``, not in the flat metrics
            (nothing recomputed to compare).

    Returns:
        (``pairs`` (pair 1 on), ``stored_pairs``, ``curvature``, ``curvature_details`` and, where
        measured, ``pca`` and ``lines``; their flat metrics). Plain Python values (they cross processes).
    """
    stored = stored or {}
    say = log or (lambda message: None)
    t0 = time.perf_counter()

    def done(step: str) -> None:
        say(f"{config.config_id}: {step} ({time.perf_counter() - t0:.0f} s)")

    folder = Path(results_dir) / config.config_id
    model = net.model
    flat: dict[str, float] = {}
    pairs = []
    for k in range(1, scale.dir_pairs):
        if k in stored:
            pairs.append(dict(stored[k]))
            continue
        surface = compute_config_surface(folder / f"surface-2d-p{k}.h5", model, data, config, scale,
                                         dir_seed=pair_seed(k), progress=progress)
        m = config_metrics(surface)
        pairs.append(m)
        flat.update({f"{name}{pair_suffix(k)}": v for name, v in m.items()})
        done(f"surface, direction pair {k + 1} of {scale.dir_pairs}")
    if stored:
        done(f"direction pair{'s' if len(stored) > 1 else ''} {', '.join(str(k + 1) for k in sorted(stored))} "
             "as stored in the baseline")
    curvature, details = scale_curvature(model, data, scale)
    flat.update(curvature)
    done("Hessian at the minimum")
    part: dict[str, Any] = {"pairs": pairs, "stored_pairs": sorted(stored), "curvature": curvature,
                            "curvature_details": details}
    if hasattr(net, "pca"):
        pca = net.pca()
        walk = random_walk_share(len(pca.epochs))
        part["pca"] = {"share": float(pca.explained_variance_ratio[:2].sum()), "random_share": pca.random_share,
                       "checkpoints": len(pca.epochs), "pca_var_1": float(pca.explained_variance_ratio[0]),
                       "pca_var_2": float(pca.explained_variance_ratio[1]),
                       "random_walk_share": walk[0], "random_walk_sd": walk[1]}
        flat.update({"pca_var_1": part["pca"]["pca_var_1"], "pca_var_2": part["pca"]["pca_var_2"],
                     "pca_share": part["pca"]["share"], "pca_random_share": pca.random_share})
    elif getattr(net, "checkpoints", None):
        flat.update(pca_metrics(net.checkpoints, [n for n, _ in model.named_parameters()]))
    if lines if lines is not None else wants_lines(config):
        part["lines"] = {}
        for norm in ("filter", "none"):
            per = []
            for k in range(scale.dir_pairs):
                line = line_file(folder / f"line-{norm}-p{k}.h5", model, data, config, scale, norm=norm,
                                 dir_seed=pair_seed(k), progress=progress)
                lm = line_metrics_of(line)
                per.append(lm)
                flat.update({f"line_{norm}_{name}{pair_suffix(k)}": v for name, v in lm.items()
                             if name in ("curv", "loss_center", "sharpness_0.5")})
            part["lines"][norm] = per
            done(f"1D lines, norm={norm}")
    return part, flat


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
    details: dict[str, Any] = field(default_factory=dict)  # the Hessian's (iterations, Hutchinson terms, ...)

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
    metrics, details = suite_metrics(surface, model, data, scale, checkpoints=checkpoints, curvature=curvature)
    return Reproduction(config=config, scale=scale.name, final=dict(final), metrics=metrics,
                        surface_path=path, grid_seconds=seconds, points=int(surface.done.size),
                        eval_samples=int(min(scale.eval_samples, len(data.x_train))), details=details)


TOL_METHOD = (
    "value: the metric at training seed 0, one thread, the reference engine, float32 (pair k of the surface "
    "metrics: direction seeds 2k, 2k+1; the Hessian: image subset 0); "
    "tol: {factor:g} x the largest deviation of the same computation on the same weights across a float64 "
    "recompute of model and data, 2 threads, an evaluation batch of 96 (Hessian batch 48), and for the surface "
    "metrics the fast engine and a repeated run (later pairs get pair 0's relative jitter), and of every metric "
    "across other machines' code paths of the same libraries, each in a subprocess (jitter_variants: MKL_CBWR "
    "branches, ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, as far as the writing CPU allows; one that computes bit "
    "for bit as the default or as another on that CPU, by an arithmetic digest, counted as it: code_path_twins); "
    "the trace's deviation "
    "is at least the mean |deviation| of its Hutchinson terms (its conditioning: terms of mixed sign cancel, "
    "their errors need not); stored as 'jitter'; or the per-kind floor of lossbench.baselines.TOL_FLOORS where "
    "that is larger; "
    "sampling: sd of the Hessian numbers over {subsets} disjoint image subsets; "
    "spread: every metric at each training seed (python -m lossbench baselines --spread)"
)


def eig_map_spec(scale: Scale) -> SurfaceSpec:
    """The eigen-ratio map of the suite: the scale's ``eig_map`` axis on both directions (direction
    seed 0), the Hessian over the first ``scale.eig_samples`` training images in one batch."""
    axis = parse_axis(scale.eig_map)
    return SurfaceSpec(x=axis, y=axis, eval_samples=scale.eig_samples, eval_batch=scale.eig_samples)


#: The top eigenvalues the main job recomputes of a net's stored spectrum (``spec_top1`` .. ``spec_top3``).
SPECTRUM_CHECK_K = 3


def spectrum_check_metrics(model: nn.Module, data: ImageData, scale: Scale, *, subset: int = 0,
                           batch: int | None = None) -> dict[str, float]:
    """The top :data:`SPECTRUM_CHECK_K` eigenvalues of the Hessian over image subset ``subset`` of
    ``scale.spectrum_samples`` images (``spec_top1`` the largest; NaN where Lanczos did not converge
    to ``CURVATURE["tol"]`` of its own size): the cheap part of a stored spectrum that the main job
    recomputes."""
    from .evaluate import cross_entropy
    from .hessian import hessian_eigenpairs

    batches = _subset_batches(model, data, scale.spectrum_samples, subset, batch)
    top = hessian_eigenpairs(model, cross_entropy(), batches, k=SPECTRUM_CHECK_K, which="top",
                             max_iter=CURVATURE["max_iter"], tol=CURVATURE["tol"])
    return {f"spec_top{k + 1}": float(v) if ok else float("nan")
            for k, (v, ok) in enumerate(zip(top.values, top.converged))}


def spectrum_run(model: nn.Module, data: ImageData, scale: Scale, *, subset: int = 0):
    """(metrics, spectrum, top) of the Hessian over image subset ``subset``: the summary numbers of
    :func:`spectrum_summary_metrics`, the SLQ run (:class:`lossbench.hessian.Spectrum` of
    ``scale.spectrum_probes`` x ``scale.spectrum_steps``) and the top
    :data:`lossbench.hessian.SUMMARY_TOP_K` eigenpairs (:class:`lossbench.hessian.EigenPairs`)."""
    from .evaluate import cross_entropy
    from .hessian import SUMMARY_TOP_K, hessian_eigenpairs, hessian_spectrum, spectrum_summary

    batches = _subset_batches(model, data, scale.spectrum_samples, subset)
    s = hessian_spectrum(model, cross_entropy(), batches, probes=scale.spectrum_probes, steps=scale.spectrum_steps)
    top = hessian_eigenpairs(model, cross_entropy(), batches, k=SUMMARY_TOP_K, which="top",
                             max_iter=CURVATURE["max_iter"], tol=CURVATURE["tol"])
    out = spectrum_summary(top.values, top.converged, s)
    out["lambda_max"] = float(top.values[0]) if top.converged[0] else math.nan
    out["mean_eig"], out["mean_eig_err"] = s.moment(1)
    out["top_converged"] = float(top.all_converged)
    return {f"spec_{k}": float(v) for k, v in out.items()}, s, top


def spectrum_summary_metrics(model: nn.Module, data: ImageData, scale: Scale, *, subset: int = 0
                             ) -> dict[str, float]:
    """The spectrum's summary numbers over image subset ``subset`` (:func:`lossbench.hessian.spectrum_summary`
    of an SLQ run of ``scale.spectrum_probes`` x ``scale.spectrum_steps`` and the top
    :data:`lossbench.hessian.SUMMARY_TOP_K` eigenpairs), with the largest eigenvalue ``lambda_max``
    (NaN unless it converged), the density's mean eigenvalue ``mean_eig`` (tr(H)/n) and its standard
    error over the probes; names prefixed ``spec_``."""
    return spectrum_run(model, data, scale, subset=subset)[0]


#: The stored eigenvector plane spans +-r along both unit eigenvectors, r the distance along the top
#: eigenvector at which the train loss has risen by PLANE_RISE nats above the minimum (measured on a
#: geometric line, :func:`plane_radius`). Not the quadratic model's sqrt(2 PLANE_RISE / lambda_1): at these
#: minima the loss is ~1e-5 nats, the softmax saturated and lambda_1 ~1e-2, and the loss rises by orders of
#: magnitude more than the quadratic model says long before that distance (1e5 nats at r for the shipped
#: ResNet-20), so a plane at the quadratic scale would show nothing but its walls.
PLANE_RISE = 1.0
#: The geometric line of :func:`plane_radius`: this many distances from 1e-3 ||theta|| to ||theta||.
PLANE_LINE = 31


def plane_radius(model: nn.Module, batches, direction, theta_norm: float, *, rise: float = PLANE_RISE,
                 engine: str = "reference") -> tuple[float, bool]:
    """(r, reached): the distance along the unit ``direction`` at which the loss over ``batches`` first
    rises by ``rise`` nats above its value at the centre, interpolated geometrically between the
    :data:`PLANE_LINE` distances from 1e-3 ||theta|| to ||theta|| it evaluates; where it never rises that far,
    ||theta|| (the extent of a filter-normalised plane at alpha = 1) and ``reached`` False."""
    from .evaluate import cross_entropy
    from .surface import compute_surface

    d = np.geomspace(1e-3 * theta_norm, theta_norm, PLANE_LINE)
    line = compute_surface(model, cross_entropy(), {"train": batches}, delta=direction,
                           alphas=np.concatenate([[0.0], d]), allow_nonfinite=True, progress=False, engine=engine)
    loss = np.asarray(line.values["train_loss"], float)
    up = np.nan_to_num(loss[1:] - loss[0], nan=np.inf) >= rise
    if not up.any():
        return float(theta_norm), False
    i = int(np.argmax(up))
    if i == 0:
        return float(d[0]), True
    lo, hi = loss[i] - loss[0], loss[i + 1] - loss[0]  # the rise at d[i - 1] (below) and d[i] (at or above)
    f = (rise - lo) / (hi - lo) if hi > lo else 1.0
    return float(d[i - 1] * (d[i] / d[i - 1]) ** f), True


def eigenvector_plane(path: str | Path, model: nn.Module, data: ImageData, scale: Scale, top, *,
                      grid: int = 11, rise: float = PLANE_RISE) -> dict[str, Any]:
    """The train loss on the plane of the top two Hessian eigenvectors of ``top``
    (:class:`lossbench.hessian.EigenPairs`, both converged: an unconverged pair is refused) over the
    scale's evaluation images, a ``grid`` x ``grid`` surface into ``path`` (resumable) over +-r in
    parameter distance, r from :func:`plane_radius` along the top eigenvector.

    Returns ``alpha`` / ``beta`` ((grid,) distances over ||theta||, the unit of a filter-normalised
    plane's axes), ``train_loss`` ((grid, grid) nats, [i_alpha][j_beta]), ``radius`` (r, parameter
    distance), ``reached`` (whether the loss rose by ``rise`` within ||theta||), ``theta_norm``
    (||theta|| over the Hessian's parameters), ``eigenvalues`` (lambda_1, lambda_2 in nats / unit^2),
    ``residuals`` and ``rise``."""
    from .axis import Axis
    from .evaluate import make_batches
    from .hessian import eigenvector_directions, hessian_params

    pair = dataclasses.replace(top, values=top.values[:2], vectors=top.vectors[:2], residuals=top.residuals[:2],
                               gaps=top.gaps[:2], converged=top.converged[:2])
    delta, eta = eigenvector_directions(model, pair)
    theta_norm = math.sqrt(sum(float(p.detach().double().norm()) ** 2
                               for p in hessian_params(model, "biasbn").values()))
    n = min(scale.eval_samples, len(data.x_train))
    device = next(model.parameters()).device
    batches = make_batches(data.x_train[:n], data.y_train[:n], scale.eval_batch, device=device)
    r, reached = plane_radius(model, batches, delta, theta_norm, rise=rise, engine=scale.engine)
    axis = Axis(-r, r, grid)
    spec = SurfaceSpec(x=axis, y=axis, norm="none", ignore="biasbn", dir_type="weights", splits=("train",),
                       eval_samples=scale.eval_samples, eval_batch=scale.eval_batch)
    surface = surface_file(path, model, data, spec, directions=(delta, eta), attrs={"kind": "surface-hessian"},
                           allow_nonfinite=True, engine=scale.engine, progress=False, overwrite=True)
    return {"alpha": [float(a) / theta_norm for a in surface.alphas],
            "beta": [float(b) / theta_norm for b in surface.betas],
            "train_loss": np.asarray(surface.values["train_loss"], float).tolist(),
            "radius": r, "reached": reached, "theta_norm": theta_norm, "rise": rise,
            "eigenvalues": [float(v) for v in pair.values], "residuals": [float(v) for v in pair.residuals]}


def eig_map_points(surface: Surface, mask: np.ndarray | None = None) -> dict[str, float]:
    """Per grid point of an eigen-ratio map, ``max_eig@i,j`` and ``min_eig@i,j`` (i: the alpha index, j:
    the beta index; NaN where that end did not converge), at the points of ``mask`` (default all)."""
    out = {}
    for i, j in zip(*np.nonzero(np.ones(surface.shape, bool) if mask is None else mask)):
        for key in ("max_eig", "min_eig"):
            out[f"{key}@{i},{j}"] = float(surface.values[key][i, j])
    return out


def eig_map_check_mask(shape: tuple[int, int], stride: int) -> np.ndarray:
    """The points the main job recomputes: every ``stride``-th along each axis, from the first."""
    i, j = np.indices(shape)
    return (i % stride == 0) & (j % stride == 0)


def eig_map_summary(path: str | Path, model: nn.Module, data: ImageData, scale: Scale, *, eval_batch: int | None = None,
                    attrs: dict[str, Any] | None = None, progress: bool | None = None, points: bool = False,
                    stored: Mapping[str, float] | None = None, resume: bool = False
                    ) -> tuple[Surface, dict[str, float]]:
    """Compute the suite's eigen-ratio map into ``path`` and its summary numbers
    (:func:`lossbench.metrics.eig_ratio_summary`).

    Args:
        points: also return every point's eigenvalues (:func:`eig_map_points`): what a baseline stores
            where the main job checks part of the map (``scale.eig_map_check`` > 1).
        stored: a baseline's per-point values of this map. With ``scale.eig_map_check`` > 1 and every
            point stored, only the points of :func:`eig_map_check_mask` are computed, the others are
            the stored values (the file's ``prefilled`` attribute counts them); the summary is that of
            the whole map, and the per-point values returned are the recomputed ones only.
        resume: continue a file of the same computation (a regeneration's variant, interrupted) instead
            of starting over; a file of another computation raises
            :class:`~lossbench.pipeline.OtherComputation`.
    """
    import dataclasses

    from .hessian import EIG_KEYS
    from .metrics import eig_ratio_summary
    from .pipeline import eig_map_file

    spec = eig_map_spec(scale)
    if eval_batch:
        spec = dataclasses.replace(spec, eval_batch=eval_batch)
    alphas, betas = spec.x.coords(), spec.y.coords()
    shape = (len(alphas), len(betas))
    mask = eig_map_check_mask(shape, scale.eig_map_check)
    names = [f"{k}@{i},{j}" for i in range(shape[0]) for j in range(shape[1]) for k in ("max_eig", "min_eig")]
    prefill = None
    if stored and scale.eig_map_check > 1 and all(n in stored for n in names):
        prefill = Surface.empty(alphas, betas, EIG_KEYS)
        for i, j in zip(*np.nonzero(~mask)):
            hi, lo = float(stored[f"max_eig@{i},{j}"]), float(stored[f"min_eig@{i},{j}"])
            prefill.values["max_eig"][i, j], prefill.values["min_eig"][i, j] = hi, lo
            prefill.values["eig_converged"][i, j] = float(np.isfinite(hi) and np.isfinite(lo))
        prefill.done[:] = ~mask
        attrs = {**(attrs or {}), "prefilled": {"points": int((~mask).sum()), "from": "the baseline's stored values",
                                                 "stride": scale.eig_map_check}}
    if resume and prefill is not None:
        raise ValueError("resume continues a file computed in full; stored values prefill a new one: pass one")
    surface = eig_map_file(path, model, data, spec, max_iter=scale.eig_max_iter, tol=CURVATURE["tol"],
                           overwrite=not resume, attrs=attrs, progress=progress, prefill=prefill)
    summary = eig_ratio_summary(surface.alphas, surface.betas, surface.values["min_eig"], surface.values["max_eig"])
    if prefill is not None:
        summary.update(eig_map_points(surface, mask))
    elif points:
        summary.update(eig_map_points(surface))
    return surface, summary


def _max_deviation(base: dict[str, float], variants: dict[str, dict[str, float]]) -> dict[str, float]:
    jitter: dict[str, float] = {}
    for name, value in base.items():
        worst = 0.0
        for m in variants.values():
            if name not in m:  # a variant that does not touch this metric
                continue
            other = m[name]
            if np.isnan(value) and np.isnan(other):
                continue
            worst = max(worst, abs(other - value) if not (np.isnan(value) or np.isnan(other)) else float("inf"))
        jitter[name] = worst
    return jitter


EIG_MAP_VARIANTS = ("dtype=float64", "threads=2", "hessian_batch=half", "repeat")


def eig_map_jitter(config: RunConfig, scale: Scale, *, model: nn.Module, data: ImageData, results_dir: str | Path,
                   base_threads: int = 1, variants: tuple[str, ...] = EIG_MAP_VARIANTS, points: bool = False
                   ) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]]]:
    """The eigen-ratio map summary recomputed in float64, with 2 threads, the Hessian's batch split in two
    and once more (or the ``variants`` named): (base summary, largest deviations, variant -> summary);
    ``points``: every point's eigenvalues too (:func:`eig_map_summary`). Each run has its own file under
    ``<results_dir>/<config_id>/eig-map-jitter/``, so an interrupted regeneration resumes where it stopped
    (a file of other weights or settings is started over)."""
    import copy

    from .pipeline import OtherComputation

    unknown = set(variants) - set(EIG_MAP_VARIANTS)
    if unknown:
        raise ValueError(f"unknown eigen-map variant(s) {sorted(unknown)}; expected some of {EIG_MAP_VARIANTS}")
    folder = Path(results_dir) / config.config_id / "eig-map-jitter"

    def run(name: str, m: nn.Module, d: ImageData, threads: int, batch: int | None) -> dict[str, float]:
        path = folder / f"{name}.h5"
        with _with_threads(threads):
            try:
                return eig_map_summary(path, m, d, scale, eval_batch=batch, points=points, resume=True)[1]
            except OtherComputation:  # an earlier regeneration's file (other weights or settings)
                path.unlink()
                return eig_map_summary(path, m, d, scale, eval_batch=batch, points=points)[1]

    base = run("base", model, data, base_threads, None)
    half = max(1, scale.eig_samples // 2)  # the base takes the Hessian's images in one batch
    runs = {"threads=2": (2, None), "hessian_batch=half": (base_threads, half), "repeat": (base_threads, None),
            "dtype=float64": (base_threads, None)}
    out = {}
    for name in variants:
        threads, batch = runs[name]
        m, d = model, data
        if name == "dtype=float64":
            m, d = copy.deepcopy(model).double(), data.to(torch.float64)
        out[name] = run(name, m, d, threads, batch)
    return base, _max_deviation(base, out), out
