"""File-backed, resumable surfaces for a model and an :class:`~lossbench.data.ImageData`.

This is the glue the CLI, the benchmarks and the report share: it draws (or loads) the directions,
evaluates the grid with :func:`lossbench.surface.compute_surface`, and keeps the HDF5 file up to date
(atomically, every few seconds and on exit), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._io import output_lock, remove_stale_temporaries, state_sha256, tensors_sha256
from .data import ImageData
from .directions import (
    DIR_TYPES,
    IGNORES,
    NORMS,
    Direction,
    check_choice,
    cosine_similarity,
    get_theta,
    normalize_direction,
    orthogonalize,
    random_direction,
    target_direction,
)
from .evaluate import LossFn, check_model_loss, cross_entropy, loss_name, make_batches
from .store import load_directions, load_surface, save_surface
from .surface import Axis, Surface, compute_surface

log = logging.getLogger(__name__)

SPLITS = ("train", "test")


@dataclass(frozen=True)
class SurfaceSpec:
    """What to compute: the grid, the directions and the evaluation data.

    Attributes:
        x, y: grid axes (y None for a 1D line).
        norm, ignore, dir_type: direction settings (see :mod:`lossbench.directions`).
        seed: seed of delta; eta uses ``seed + 1``.
        orthogonalize: make eta orthogonal to delta after normalisation.
        splits: which data splits to evaluate (``train``, ``test``).
        eval_samples: use the first N images of each split (None: all).
        eval_batch: images per forward pass (does not change the result).
        interpolation: delta = theta2 - theta1 over states instead of a random direction (1D only).
    """

    x: Axis
    y: Axis | None = None
    norm: str = "filter"
    ignore: str = "biasbn"
    dir_type: str = "weights"
    seed: int = 0
    orthogonalize: bool = False
    splits: tuple[str, ...] = ("train",)
    eval_samples: int | None = None
    eval_batch: int = 500
    interpolation: bool = False

    def __post_init__(self) -> None:
        check_choice("norm", self.norm, NORMS)
        check_choice("ignore", self.ignore, IGNORES)
        check_choice("dir_type", self.dir_type, DIR_TYPES)
        for split in self.splits:
            check_choice("split", split, SPLITS)
        if not self.splits:
            raise ValueError("splits is empty; expected train and/or test")
        if self.eval_samples is not None and (isinstance(self.eval_samples, bool) or self.eval_samples < 1):
            raise ValueError(f"eval_samples={self.eval_samples!r}: expected a positive number of images (or None: all)")
        if self.eval_batch < 1:
            raise ValueError(f"eval_batch={self.eval_batch!r}: expected a positive number of images per forward pass")
        if self.interpolation and self.y is not None:
            raise ValueError("interpolation is a 1D line; drop y")
        if self.interpolation and self.dir_type != "states":
            raise ValueError("interpolation needs dir_type='states' (BN running statistics move too)")

    def to_attrs(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["x"] = str(self.x)
        out["y"] = None if self.y is None else str(self.y)
        out["splits"] = list(self.splits)
        return out


def make_directions(model: nn.Module, spec: SurfaceSpec, *, target: nn.Module | None = None
                    ) -> tuple[Direction, Direction | None]:
    """(delta, eta) for ``spec``: seeded, normalised random directions, or theta2 - theta1."""
    theta = get_theta(model, spec.dir_type)
    if spec.interpolation:
        if target is None:
            raise ValueError("interpolation needs a second model (target)")
        return target_direction(theta, get_theta(target, spec.dir_type)), None
    delta = normalize_direction(random_direction(theta, seed=spec.seed), theta, norm=spec.norm, ignore=spec.ignore)
    if spec.y is None:
        return delta, None
    eta = normalize_direction(random_direction(theta, seed=spec.seed + 1), theta, norm=spec.norm, ignore=spec.ignore)
    if spec.orthogonalize:
        eta = orthogonalize(eta, delta)
    log.info("cosine similarity of delta and eta: %.4f", cosine_similarity(delta, eta))
    return delta, eta


def input_hashes(model: nn.Module, datasets: dict[str, list], *, engine: str,
                 directions: tuple[Direction, Direction | None] | None = None,
                 target: nn.Module | None = None) -> dict[str, Any]:
    """What identifies a surface's inputs: sha256 of the centre state, of each split's evaluation
    tensors, of directions given from outside and of an interpolation's target state; and the engine."""
    out: dict[str, Any] = {
        "theta_sha256": state_sha256(model.state_dict()),
        "data_sha256": {split: tensors_sha256(t for batch in batches for t in batch)
                        for split, batches in datasets.items()},
        "engine": engine,
    }
    if directions is not None:
        out["directions_sha256"] = tensors_sha256(t for d in directions if d is not None for t in d.values())
    if target is not None:
        out["target_sha256"] = state_sha256(target.state_dict())
    return out


_INPUT_WORDS = {"theta_sha256": "the centre weights", "data_sha256": "the evaluation data",
                "directions_sha256": "the directions given", "target_sha256": "the target net",
                "engine": "the engine"}


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between a file's metadata and this run's, in words: input hashes by what they
    identify, other settings as ``key (file value, now value)``, nested ones as ``spec.norm``."""
    out = []
    for key in sorted(wanted):
        was, now = stored.get(key), wanted[key]
        if was == now:
            continue
        if key == "inputs" and not isinstance(was, dict):
            out.append("the file records no input hashes (written by an older lossbench)")
        elif key == "inputs":
            out += [f"{_INPUT_WORDS.get(k, k)} changed" for k in now if was.get(k) != now[k]]
        elif isinstance(now, dict) and isinstance(was, dict):
            out += [f"{key}.{k} ({was.get(k)!r} in the file, {now.get(k)!r} now)"
                    for k in sorted(set(now) | set(was)) if was.get(k) != now.get(k)]
        else:
            out.append(f"{key} ({was!r} in the file, {now!r} now)")
    return out


def _settings_digest(meta: dict[str, Any]) -> str:
    """One string for "the same computation": what a second run on a locked output compares."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()


def _dtype_attr(model: nn.Module) -> dict[str, str]:
    """``{"dtype": "float64"}`` for a model evaluated in another dtype than float32 (nothing for float32,
    so the files made before the option existed resume as they did)."""
    dtype = next(model.parameters()).dtype
    return {} if dtype == torch.float32 else {"dtype": str(dtype).removeprefix("torch.")}


class OtherComputation(ValueError):
    """An output file holds points of another computation (other weights, data or settings): resuming
    would mix the two."""


def _resume_or_start(path: Path, meta: dict[str, Any], overwrite: bool, make: Callable[[], tuple[Direction, Direction | None]]
                     ) -> tuple[Surface | None, Direction, Direction | None]:
    """An existing file with the same metadata is resumed (its directions reused); else new directions."""
    if path.exists() and not overwrite:
        resume = load_surface(path)
        # precision and dtype are stored only when they are not float32: compare with that default on both sides
        defaults = {"precision": "float32", "dtype": "float32"}
        wanted = {**defaults, **meta}
        stored = {k: resume.attrs.get(k, defaults.get(k)) for k in wanted}
        if stored != wanted:
            raise OtherComputation(
                f"{path} holds {int(resume.done.sum())} of {resume.done.size} points of another computation: "
                f"{'; '.join(_differences(stored, wanted))}. Resuming would mix the two: pass another output path, "
                "or start over with overwrite=True (CLI: --overwrite)"
            )
        delta, eta, _ = load_directions(path)
        log.info("resuming %s: %d of %d points done", path, int(resume.done.sum()), resume.done.size)
        return resume, delta, eta
    delta, eta = make()
    return None, delta, eta


def _batches(data: ImageData, spec: SurfaceSpec, device: torch.device) -> dict[str, list]:
    out = {}
    for split in spec.splits:
        x, y = data.split(split)
        if spec.eval_samples is not None and spec.eval_samples > len(x):
            raise ValueError(f"eval_samples={spec.eval_samples} but the {split} split holds {len(x)} images; "
                             f"expected 1 to {len(x)}")
        n = len(x) if spec.eval_samples is None else spec.eval_samples
        out[split] = make_batches(x[:n], y[:n], spec.eval_batch, device=device)
    return out


def shard_paths(path: Path) -> list[Path]:
    """Per-rank partial files of a sharded run: ``<name>.rank<r>-of-<w>.h5`` beside ``path``."""
    return sorted(path.parent.glob(f"{path.name}.rank*-of-*.h5"))


def merge_shards(path: str | Path, *, remove: bool = True) -> Surface | None:
    """Fold every shard file of ``path`` into ``path`` (union of their done points), atomically; the
    shard files are removed afterwards. Returns the merged surface, or None when there is nothing."""
    path = Path(path)
    shards = shard_paths(path)
    if not shards:
        return load_surface(path) if path.exists() else None
    base = load_surface(path) if path.exists() else None
    delta, eta, _ = load_directions(shards[0] if base is None else path)
    for shard in shards:
        part = load_surface(shard)
        if base is None:
            base = part
            continue
        if part.shape != base.shape or not np.array_equal(part.alphas, base.alphas):
            raise ValueError(f"shard {shard} is on another grid than {path}; delete it or the output")
        for key, values in part.values.items():
            base.values.setdefault(key, np.full(base.shape, np.nan))[part.done] = values[part.done]
        base.done[part.done] = True
    save_surface(path, base, delta=delta, eta=eta)
    if remove:
        for shard in shards:
            shard.unlink()
    return base


def surface_file(
    path: str | Path,
    model: nn.Module,
    data: ImageData,
    spec: SurfaceSpec,
    *,
    target: nn.Module | None = None,
    directions: tuple[Direction, Direction | None] | None = None,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    allow_nonfinite: bool = False,
    checkpoint_seconds: float = 10.0,
    progress: bool | None = None,
    engine: str = "reference",
    engine_options: dict[str, Any] | None = None,
    shard: tuple[int, int] = (0, 1),
    barrier: Callable[[], None] | None = None,
    loss_fn: LossFn | None = None,
) -> Surface:
    """Compute (or finish) the surface of ``model`` described by ``spec`` in the HDF5 file ``path``.

    An existing file made with the same spec and metadata is resumed: its finished points are kept and
    its stored directions reused. One made with other settings is an error unless ``overwrite``.
    ``directions`` (delta, eta) replaces the spec's random directions (e.g. PCA directions; say so in
    ``attrs``). ``loss_fn`` is a batch-mean loss (default: the paper's cross-entropy); the file
    records its :func:`~lossbench.evaluate.loss_name` (``attrs["loss"]`` overrides the spelling), and
    a resume with another loss is refused.

    What identifies the inputs is part of the metadata (``inputs``): the sha256 of the centre weights
    (the full state, BN statistics included), of the evaluation tensors of each split, of directions
    passed in, and the engine. A file is resumed only when all of them match, so a resume can never mix
    two models, two data sets or two direction sets.

    Sharding: with ``shard=(rank, world)``, world > 1, every rank takes its share of the unfinished
    points and checkpoints them to its own ``<name>.rank<r>-of-<w>.h5``; after ``barrier()`` (e.g.
    ``torch.distributed.barrier``) rank 0 merges the shards into ``path`` and the others wait for it.
    A rank that dies loses only the points it had not yet checkpointed: the next run merges every shard
    file it finds before it splits the remaining work.
    """
    path = Path(path)
    started = time.time()
    rank, world = shard
    device = next(model.parameters()).device
    datasets = _batches(data, spec, device)
    inputs = input_hashes(model, datasets, engine=engine, directions=directions, target=target)
    meta = {"spec": spec.to_attrs(), "inputs": inputs, "loss": loss_name(loss_fn), **_dtype_attr(model),
            **(attrs or {})}
    if world > 1:
        if barrier is None:
            raise ValueError("a sharded run needs barrier= (e.g. torch.distributed.barrier)")
        if rank == 0:
            if overwrite:
                for stale in [path, *shard_paths(path)]:
                    stale.unlink(missing_ok=True)
            else:
                merge_shards(path)  # earlier, interrupted shards first, so nobody recomputes their points
        barrier()
        overwrite = False  # rank 0 has cleared or merged; everyone now reads the same file
    # refuse bad inputs before anything is written: a refused run leaves no file behind
    for split, batches in datasets.items():
        check_model_loss(model, loss_fn or cross_entropy(), batches, what=f"the {split} split")
    lock = output_lock(path, _settings_digest(meta), say=log.warning) if world == 1 else contextlib.nullcontext()
    with lock:
        resume, delta, eta = _resume_or_start(
            path, meta, overwrite,
            (lambda: directions) if directions else (lambda: make_directions(model, spec, target=target)),
        )
        meta["eval_samples"] = {split: sum(len(t) for _, t in b) for split, b in datasets.items()}
        out = path if world == 1 else path.with_name(f"{path.name}.rank{rank}-of-{world}.h5")
        written = {"points": False}

        def flush(partial: Surface) -> None:
            save_surface(out, partial, delta=delta, eta=eta)
            written["points"] = written["points"] or bool(np.any(partial.done))

        fresh = resume is None and world == 1
        if fresh:  # a full disk or an unwritable folder shows before the first point
            keys = [f"{split}_{kind}" for split in datasets for kind in ("loss", "acc")]
            flush(Surface.empty(spec.x.coords(), None if spec.y is None else spec.y.coords(), keys, attrs=meta))
        try:
            surface = compute_surface(
                model, loss_fn or cross_entropy(), datasets, delta=delta, eta=eta, alphas=spec.x.coords(),
                betas=None if spec.y is None else spec.y.coords(), dir_type=spec.dir_type, resume=resume,
                attrs=meta, on_checkpoint=flush, checkpoint_seconds=checkpoint_seconds,
                allow_nonfinite=allow_nonfinite, progress=progress, engine=engine, engine_options=engine_options,
                shard=shard,
            )
        except Exception:
            if fresh and not written["points"]:  # refused before its first point: nothing worth resuming
                path.unlink(missing_ok=True)
            raise
        if world == 1:
            remove_stale_temporaries(path, before=started)  # a finished file: a killed earlier write's leftovers go
            return surface
    flush(surface)
    barrier()
    if rank == 0:
        merge_shards(path)
    barrier()
    return load_surface(path)


def eig_map_file(
    path: str | Path,
    model: nn.Module,
    data: ImageData,
    spec: SurfaceSpec,
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    checkpoint_seconds: float = 10.0,
    progress: bool | None = None,
    loss_fn: LossFn | None = None,
    prefill: Surface | None = None,
) -> Surface:
    """The Hessian eigenvalue map (``max_eig``, ``min_eig``) over ``spec``'s 2D grid, file-backed and
    resumable like :func:`surface_file`. Same seed and normalisation give the same plane as the loss
    surface, so the two maps line up. The metadata records the Hessian's parameter set (``hessian``:
    ``ignore``, tensor and parameter counts) and the input hashes. ``prefill``: a map whose ``done``
    points are taken as they are (with ``overwrite``; say so in ``attrs``), only the others computed."""
    from .hessian import eig_ratio_map, hessian_params

    if spec.y is None or spec.dir_type != "weights" or len(spec.splits) != 1:
        raise ValueError("an eigenvalue map needs a 2D grid (y), dir_type='weights' and exactly one split")
    path = Path(path)
    device = next(model.parameters()).device
    scope = hessian_params(model, spec.ignore)
    batches = _batches(data, spec, device)[spec.splits[0]]
    meta = {"spec": spec.to_attrs(),
            "hessian": {"max_iter": max_iter, "tol": tol, "ignore": spec.ignore, "tensors": len(scope),
                        "parameters": sum(p.numel() for p in scope.values())},
            "inputs": input_hashes(model, {spec.splits[0]: batches}, engine="reference"),
            "loss": loss_name(loss_fn), **_dtype_attr(model), **(attrs or {})}
    with output_lock(path, _settings_digest(meta), say=log.warning):
        resume, delta, eta = _resume_or_start(path, meta, overwrite, lambda: make_directions(model, spec))
        if prefill is not None:
            if not overwrite:
                raise ValueError("prefill takes the given points as they are: it needs overwrite=True")
            resume = prefill
        meta["eval_samples"] = {spec.splits[0]: sum(len(t) for _, t in batches)}

        def flush(partial: Surface) -> None:
            save_surface(path, partial, delta=delta, eta=eta)

        return eig_ratio_map(model, loss_fn or cross_entropy(), batches, delta=delta, eta=eta,
                             alphas=spec.x.coords(), betas=spec.y.coords(), ignore=spec.ignore, max_iter=max_iter,
                             tol=tol, seed=spec.seed, resume=resume, attrs=meta, on_checkpoint=flush,
                             checkpoint_seconds=checkpoint_seconds, progress=progress)


def trajectory_file(path: str | Path, model: nn.Module, checkpoints: list[Path], data: ImageData, *,
                    config=None, name: str | None = None, grid: int = 21, eval_samples: int | None = None,
                    seed: int = 0, attrs: dict[str, Any] | None = None, overwrite: bool = False,
                    progress: bool | None = None, loss_fn: LossFn | None = None) -> Surface:
    """PCA of the training path ``checkpoints`` (``lossbench train``'s per-epoch files, or plain weight
    files in training order) around ``model``'s weights, the loss surface on that plane (a ``grid`` x
    ``grid`` box around the path) and, for contrast, the path projected on a random filter-normalised
    plane scaled to unit norm (the PCA directions have unit norm too). The path, explained variance and
    random-plane path are stored in the file's metadata; ``config`` (a RunConfig) or ``name`` say whose."""
    from .directions import norm_of
    from .trajectory import load_path, path_extent, pca_directions, project

    device = next(model.parameters()).device
    final = {k: v.detach().cpu() for k, v in get_theta(model, "weights").items()}
    labels: list[str] = []
    thetas, epochs = load_path(checkpoints, list(final), labels=labels)
    pca = pca_directions(thetas, final, epochs=epochs)
    (x_lo, x_hi), (y_lo, y_hi) = path_extent(pca.coords)
    spec = SurfaceSpec(x=Axis(x_lo, x_hi, grid), y=Axis(y_lo, y_hi, grid), norm="none", eval_samples=eval_samples,
                       seed=seed)
    theta_cpu = {k: v for k, v in final.items()}
    rand = [normalize_direction(random_direction(theta_cpu, seed=seed + i), theta_cpu) for i in (0, 1)]
    rand = [{k: v / norm_of(d) for k, v in d.items()} for d in rand]
    random_coords = project(thetas, final, rand[0], rand[1])
    meta = {"config": config.to_dict() if config is not None else None,
            "config_id": config.config_id if config is not None else name, "kind": "trajectory",
            "directions": "pca", "explained_variance_ratio": pca.explained_variance_ratio.tolist(),
            "path": pca.coords.tolist(), "epochs": list(pca.epochs), "path_labels": labels,
            "random_path": random_coords.tolist(), **(attrs or {})}
    delta = {k: v.to(device) for k, v in pca.delta.items()}
    eta = {k: v.to(device) for k, v in pca.eta.items()}
    return surface_file(path, model, data, spec, directions=(delta, eta), attrs=meta, overwrite=overwrite,
                        allow_nonfinite=True, progress=progress, loss_fn=loss_fn)


def pca_plane_file(path: str | Path, model: nn.Module, pca, data: ImageData, *, config=None, grid: int = 21,
                   eval_samples: int | None = None, attrs: dict[str, Any] | None = None, overwrite: bool = False,
                   progress: bool | None = None) -> Surface:
    """The loss on the plane of a stored PCA of the training path (a shipped net's
    :class:`~lossbench.reference_nets.ShippedPCA`), over a ``grid`` x ``grid`` box around the path;
    the path, the explained variance and the random-plane path go into the file's metadata."""
    from .trajectory import path_extent

    if pca.delta is None or pca.eta is None:
        raise ValueError("this PCA was stored without its directions (only batch-128 seed-recipe nets ship them); "
                         "recompute it from the checkpoints with `python -m lossbench trajectory`")
    device = next(model.parameters()).device
    (x_lo, x_hi), (y_lo, y_hi) = path_extent(pca.coords)
    spec = SurfaceSpec(x=Axis(x_lo, x_hi, grid), y=Axis(y_lo, y_hi, grid), norm="none", eval_samples=eval_samples)
    meta = {"kind": "trajectory", "directions": "pca",
            "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio],
            "path": pca.coords.tolist(), "epochs": list(pca.epochs), "random_path": pca.random_coords.tolist(),
            "random_share": pca.random_share, **(attrs or {})}
    if config is not None:
        meta.update(config=config.to_dict(), config_id=config.config_id)
    theta = get_theta(model, "weights")
    delta = {k: pca.delta[k].to(device=device, dtype=v.dtype) for k, v in theta.items()}
    eta = {k: pca.eta[k].to(device=device, dtype=v.dtype) for k, v in theta.items()}
    return surface_file(path, model, data, spec, directions=(delta, eta), attrs=meta, overwrite=overwrite,
                        allow_nonfinite=True, progress=progress)


def device_of(name: str) -> torch.device:
    """``torch.device(name)``, with an error that says what to do when CUDA is asked for but absent."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return device


def spectrum_file(path: str | Path, model: nn.Module, batches: list, *, probes: int, steps: int, seed: int = 0,
                  ignore: str = "biasbn", top_k: int = 5, tol: float = 1e-3, max_iter: int = 200,
                  width: float = 0.01, attrs: dict[str, Any] | None = None, overwrite: bool = False,
                  loss_fn: LossFn | None = None, progress: bool | None = None) -> dict[str, Any]:
    """The Hessian's eigenvalue density by SLQ (:func:`lossbench.hessian.hessian_spectrum`) and its top
    ``top_k`` eigenpairs, in the HDF5 file ``path`` (:func:`lossbench.store.save_spectrum`), written
    after every probe: an interrupted run resumes at the next probe with the same numbers; a file made
    with other settings or inputs is refused unless ``overwrite``.

    Returns ``spectrum`` (:class:`~lossbench.hessian.Spectrum`), ``top``
    (:class:`~lossbench.hessian.EigenPairs`), ``grid``, ``density``, ``sigma`` (``width`` x the span
    of the Ritz values, in units of lambda) and ``summary`` (:func:`lossbench.hessian.spectrum_summary`
    with the top eigenpairs, {} with fewer than 3; also in the file's metadata)."""
    from ._progress import progress_bar
    from .hessian import Spectrum, hessian_eigenpairs, hessian_params, hessian_spectrum, spectrum_summary
    from .store import load_spectrum, save_spectrum

    path = Path(path)
    loss_fn = loss_fn or cross_entropy()
    check_model_loss(model, loss_fn, batches)
    scope = hessian_params(model, ignore)
    meta = {"slq": {"probes": probes, "steps": steps, "seed": seed, "ignore": ignore, "top_k": top_k, "tol": tol,
                    "max_iter": max_iter, "tensors": len(scope),
                    "parameters": sum(p.numel() for p in scope.values())},
            "inputs": input_hashes(model, {"train": batches}, engine="reference"), "loss": loss_name(loss_fn),
            "eval_samples": sum(len(t) for _, t in batches), **_dtype_attr(model), **(attrs or {})}
    meta = json.loads(json.dumps(meta, sort_keys=True, default=str))  # as the file will hold it
    with output_lock(path, _settings_digest(meta), say=log.warning):
        resume = None
        if path.exists() and not overwrite:
            stored = load_spectrum(path)
            wanted = {k: meta[k] for k in ("slq", "inputs", "loss", "eval_samples")}
            had = {k: stored["metadata"].get(k) for k in wanted}
            if had != wanted:
                raise ValueError(f"{path} holds a spectrum of another computation: "
                                 f"{'; '.join(_differences(had, wanted))}. Pass another output path, or start over "
                                 "with overwrite=True (CLI: --overwrite)")
            resume = Spectrum(stored["ritz_values"], stored["ritz_weights"], stored["dim"])
            log.info("resuming %s: %d of %d probes done", path, resume.probes, probes)
        bar = progress_bar(total=probes, initial=0 if resume is None else resume.probes, progress=progress,
                           desc="SLQ probes", unit="probe")

        def flush(partial: Spectrum) -> None:
            save_spectrum(path, nodes=partial.nodes, weights=partial.weights, dim=partial.dim,
                          attrs={**meta, "complete": False})
            bar.update(1)

        try:
            spectrum = hessian_spectrum(model, loss_fn, batches, probes=probes, steps=steps, ignore=ignore, seed=seed,
                                        resume=resume, on_probe=flush)
        finally:
            bar.close()
        top = hessian_eigenpairs(model, loss_fn, batches, k=min(top_k, spectrum.dim), which="top", ignore=ignore,
                                 max_iter=max_iter, tol=tol, seed=seed)
        summary = (spectrum_summary(top.values, top.converged, spectrum) if len(top.values) >= 3 else {})
        sigma = spectrum.default_sigma(width)
        lo, hi = spectrum.span()
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, 2001)
        density = spectrum.density(grid, sigma)
        save_spectrum(path, nodes=spectrum.nodes, weights=spectrum.weights, dim=spectrum.dim, grid=grid,
                      density=density, sigma=sigma,
                      top={"eigenvalues": top.values, "residuals": top.residuals, "gaps": top.gaps,
                           "converged": top.converged.astype(np.int8)},
                      attrs={**meta, "complete": True, "width": width, "top_iterations": top.iterations,
                             "summary": summary})
    return {"spectrum": spectrum, "top": top, "grid": grid, "density": density, "sigma": sigma, "summary": summary}


def connect_file(path: str | Path, model: nn.Module, data: ImageData, *, theta_a: Direction, theta_b: Direction,
                 epochs: float = 10.0, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
                 seed: int = 0, points: int = 21, splits: tuple[str, ...] = ("train", "test"),
                 eval_samples: int | None = None, eval_batch: int = 500, train_batch: int = 128,
                 attrs: dict[str, Any] | None = None, overwrite: bool = False, loss_fn: LossFn | None = None,
                 checkpoint_seconds: float = 10.0, progress: bool | None = None) -> dict[str, Any]:
    """A quadratic Bezier curve between ``theta_a`` and ``theta_b`` (parameters of ``model``'s
    architecture) trained for ``epochs`` passes over the first ``eval_samples`` training images
    (:func:`lossbench.connect.train_curve`), then the loss and accuracy of each split along it and along
    the straight line at ``points`` values of t, BatchNorm statistics recomputed at each
    (:func:`lossbench.connect.path_values`), in the HDF5 file ``path``
    (:func:`lossbench.store.save_connection`).

    Training checkpoints to ``<path>.curve.pt`` at least every ``checkpoint_seconds`` and when stopped
    (Ctrl-C, SIGTERM, an error): the same call resumes from it with the same steps; a finished file is
    returned as it is; one made with other settings or inputs is refused unless ``overwrite``.

    Returns the file's content (:func:`lossbench.store.load_connection`)."""
    from ._io import torch_save_atomic
    from ._progress import progress_bar
    from .connect import CurveState, barrier, barrier_error, combine_parts, path_values, split_parts, train_curve
    from .store import load_connection, save_connection

    path = Path(path)
    loss_fn = loss_fn or cross_entropy()
    device = next(model.parameters()).device
    spec = SurfaceSpec(x=Axis(0.0, 1.0, points), splits=splits, eval_samples=eval_samples, eval_batch=eval_batch)
    datasets = _batches(data, spec, device)
    for split, batches in datasets.items():
        check_model_loss(model, loss_fn, batches, what=f"the {split} split")
    n_train = sum(len(t) for _, t in datasets["train"]) if "train" in datasets else None
    if n_train is None:
        raise ValueError("a curve is trained on the train split: include train in splits")
    x, y = data.split("train")
    train_batches = make_batches(x[:n_train], y[:n_train], train_batch, device=device)
    steps = max(1, round(epochs * len(train_batches)))
    settings = {"epochs": epochs, "steps": steps, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                "seed": seed, "points": points, "train_batch": train_batch, "splits": list(splits),
                "eval_samples": {s: sum(len(t) for _, t in b) for s, b in datasets.items()}}
    meta = {"connect": settings, "loss": loss_name(loss_fn),
            "inputs": {"theta_a_sha256": tensors_sha256(theta_a.values()),
                       "theta_b_sha256": tensors_sha256(theta_b.values()),
                       **input_hashes(model, datasets, engine="reference")},
            **_dtype_attr(model), **(attrs or {})}
    meta = json.loads(json.dumps(meta, sort_keys=True, default=str))
    keys = ("connect", "loss", "inputs")
    ckpt = path.with_name(path.name + ".curve.pt")
    with output_lock(path, _settings_digest(meta), say=log.warning):
        if path.exists() and not overwrite:
            stored = load_connection(path)
            had = {k: stored["metadata"].get(k) for k in keys}
            if had == {k: meta[k] for k in keys}:
                return stored
            raise ValueError(f"{path} holds a connection of another computation: "
                             f"{'; '.join(_differences(had, {k: meta[k] for k in keys}))}. Pass another output "
                             "path, or start over with overwrite=True (CLI: --overwrite)")
        state = None
        if ckpt.exists() and not overwrite:
            saved = torch.load(ckpt, map_location=device, weights_only=True)
            if saved.get("meta") != json.dumps({k: meta[k] for k in keys}, sort_keys=True):
                raise ValueError(f"{ckpt} is the training of another curve; delete it or pass --overwrite")
            state = CurveState(saved["theta_c"], saved["momentum"], int(saved["step"]), list(saved["losses"]))
            log.info("resuming the curve's training at step %d of %d", state.step, steps)
        last = {"saved": time.monotonic(), "state": state}

        def save(s: CurveState) -> None:
            torch_save_atomic({"theta_c": s.theta_c, "momentum": s.momentum, "step": s.step, "losses": s.losses,
                               "meta": json.dumps({k: meta[k] for k in keys}, sort_keys=True)}, ckpt)
            last["saved"] = time.monotonic()

        bar = progress_bar(total=steps, initial=0 if state is None else state.step, progress=progress,
                           desc="curve training", unit="step")

        def on_step(s: CurveState) -> None:
            last["state"] = s
            bar.update(1)
            if time.monotonic() - last["saved"] >= checkpoint_seconds:
                save(s)

        try:
            if state is None or state.step < steps:
                state = train_curve(model, loss_fn, train_batches, theta_a=theta_a, theta_b=theta_b, steps=steps,
                                    lr=lr, momentum=momentum, weight_decay=weight_decay, seed=seed, state=state,
                                    on_step=on_step)
        except BaseException:
            if last["state"] is not None:
                save(last["state"])  # an interrupted training resumes from its last step
            raise
        finally:
            bar.close()
        ts = spec.x.coords()
        bn_batches = datasets["train"]
        # the training split in disjoint parts: its numbers are their weighted means, and the parts' spread
        # is the barrier's sampling error (nothing evaluated twice)
        parts = split_parts(datasets["train"])
        sizes = [sum(len(t) for _, t in part) for part in parts]
        evaluated = {**{f"train#{i}": part for i, part in enumerate(parts)},
                     **{s: b for s, b in datasets.items() if s != "train"}}
        paths, errors = {}, {}
        for name, control in (("line", None), ("curve", state.theta_c)):
            raw = path_values(model, loss_fn, evaluated, theta_a=theta_a, theta_b=theta_b, theta_c=control,
                              ts=ts, bn_batches=bn_batches)
            per_part = [{k: raw[f"train#{i}_{k}"] for k in ("loss", "acc")} for i in range(len(parts))]
            whole = combine_parts(per_part, sizes)
            paths[name] = {"train_loss": whole["loss"], "train_acc": whole["acc"],
                           **{k: v for k, v in raw.items() if not k.startswith("train#")}}
            errors[name] = {"train": barrier_error(ts, [p["loss"] for p in per_part])}
        meta["barrier"] = {name: {split: barrier(ts, values[f"{split}_loss"]) for split in datasets}
                           for name, values in paths.items()}
        meta["barrier_error"] = errors
        meta["barrier_parts"] = {"train": sizes}
        save_connection(path, ts=ts, paths=paths, control=state.theta_c, training_loss=np.asarray(state.losses),
                        attrs=meta)
        ckpt.unlink(missing_ok=True)
    return load_connection(path)


def adaptive_file(path: str | Path, model: nn.Module, data: ImageData, spec: SurfaceSpec, *,
                  level: float | None, directions: tuple[Direction, Direction | None] | None = None,
                  attrs: dict[str, Any] | None = None, overwrite: bool = False, engine: str = "reference",
                  engine_options: dict[str, Any] | None = None, loss_fn: LossFn | None = None,
                  checkpoint_seconds: float = 10.0, progress: bool | None = None) -> Surface:
    """:func:`lossbench.adaptive.adaptive_surface` of ``model`` over ``spec`` (one split: train) in the
    HDF5 file ``path``: the finished surface with its directions, ``train_loss_stderr`` and
    ``train_exact`` beside the loss and accuracy, and ``adaptive`` in the metadata (the level, the
    points finished, the image evaluations against the full grid's). The two passes checkpoint to
    ``<path>.slice.h5`` and ``<path>.rest.h5``: an interrupted run resumes from them with the same
    slice; a finished file with other settings is refused unless ``overwrite``."""
    from .adaptive import adaptive_surface

    path = Path(path)
    if spec.splits != ("train",) or spec.interpolation:
        raise ValueError("an adaptive grid evaluates the train split of a random or given plane: use --dataset "
                         "train, and no --target")
    device = next(model.parameters()).device
    loss_fn = loss_fn or cross_entropy()
    datasets = _batches(data, spec, device)
    check_model_loss(model, loss_fn, datasets["train"], what="the train split")
    meta = {"spec": spec.to_attrs(), "adaptive_level": level, "loss": loss_name(loss_fn),
            "inputs": input_hashes(model, datasets, engine=engine, directions=directions), **_dtype_attr(model),
            **(attrs or {})}
    meta = json.loads(json.dumps(meta, sort_keys=True, default=str))
    partial = {part: path.with_name(f"{path.name}.{part}.h5") for part in ("slice", "rest")}
    with output_lock(path, _settings_digest(meta), say=log.warning):
        if path.exists() and not overwrite:
            done = load_surface(path)
            keys = ("spec", "adaptive_level", "loss", "inputs")
            if {k: done.attrs.get(k) for k in keys} == {k: meta[k] for k in keys}:
                return done
            raise ValueError(f"{path} holds a surface of another computation; pass another output path, or "
                             "start over with overwrite=True (CLI: --overwrite)")
        delta, eta = directions if directions else make_directions(model, spec)
        resume = []
        for part in ("slice", "rest"):
            p = partial[part]
            old = load_surface(p) if p.exists() and not overwrite else None
            resume.append(old if old is not None and old.attrs.get("partial_of") == _settings_digest(meta) else None)
        last = {"t": time.monotonic()}

        def checkpoint(part: str, s: Surface) -> None:
            if time.monotonic() - last["t"] >= checkpoint_seconds or s.complete:
                s.attrs["partial_of"] = _settings_digest(meta)
                save_surface(partial[part], s)
                last["t"] = time.monotonic()

        surface = adaptive_surface(model, loss_fn, datasets["train"], delta=delta, eta=eta, alphas=spec.x.coords(),
                                   betas=None if spec.y is None else spec.y.coords(), level=level,
                                   eval_batch=spec.eval_batch, engine=engine, engine_options=engine_options,
                                   resume=(resume[0], resume[1]), on_checkpoint=checkpoint, progress=progress)
        surface.attrs.update(meta)
        surface.attrs["eval_samples"] = {"train": surface.attrs["adaptive"]["images"]}
        save_surface(path, surface, delta=delta, eta=eta)
        for p in partial.values():
            p.unlink(missing_ok=True)
    return surface
