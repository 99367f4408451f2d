"""File-backed, resumable surfaces for a model and an :class:`~lossbench.data.ImageData`.

This is the glue the CLI, the benchmarks and the report share: it draws (or loads) the directions,
evaluates the grid with :func:`lossbench.surface.compute_surface`, and keeps the HDF5 file up to date
(atomically, every few seconds and on exit), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import ImageData
from .directions import (
    DIR_TYPES, IGNORES, NORMS, Direction, check_choice, cosine_similarity, get_theta, normalize_direction,
    orthogonalize, random_direction, target_direction,
)
from .evaluate import cross_entropy, make_batches
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


def _resume_or_start(path: Path, meta: dict[str, Any], overwrite: bool, make: Callable[[], tuple[Direction, Direction | None]]
                     ) -> tuple[Surface | None, Direction, Direction | None]:
    """An existing file with the same metadata is resumed (its directions reused); else new directions."""
    if path.exists() and not overwrite:
        resume = load_surface(path)
        stored = {k: resume.attrs.get(k) for k in meta}
        if stored != meta:
            changed = sorted(k for k in meta if stored.get(k) != meta[k])
            raise ValueError(
                f"{path} exists but was made with other settings ({', '.join(changed)}); "
                "pass another output path or overwrite=True (CLI: --overwrite)"
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
        n = len(x) if spec.eval_samples is None else min(spec.eval_samples, len(x))
        out[split] = make_batches(x[:n], y[:n], spec.eval_batch, device=device)
    return out


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
) -> Surface:
    """Compute (or finish) the surface of ``model`` described by ``spec`` in the HDF5 file ``path``.

    An existing file made with the same spec and metadata is resumed: its finished points are kept and
    its stored directions reused. One made with other settings is an error unless ``overwrite``.
    ``directions`` (delta, eta) replaces the spec's random directions (e.g. PCA directions; say so in
    ``attrs``).
    """
    path = Path(path)
    device = next(model.parameters()).device
    meta = {"spec": spec.to_attrs(), **(attrs or {})}
    resume, delta, eta = _resume_or_start(
        path, meta, overwrite, (lambda: directions) if directions else (lambda: make_directions(model, spec, target=target))
    )
    datasets = _batches(data, spec, device)
    meta["eval_samples"] = {split: sum(len(t) for _, t in b) for split, b in datasets.items()}

    def flush(partial: Surface) -> None:
        save_surface(path, partial, delta=delta, eta=eta)

    return compute_surface(
        model, cross_entropy(), datasets, delta=delta, eta=eta, alphas=spec.x.coords(),
        betas=None if spec.y is None else spec.y.coords(), dir_type=spec.dir_type, resume=resume,
        attrs=meta, on_checkpoint=flush, checkpoint_seconds=checkpoint_seconds,
        allow_nonfinite=allow_nonfinite, progress=progress,
    )


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
) -> Surface:
    """The Hessian eigenvalue map (``max_eig``, ``min_eig``) over ``spec``'s 2D grid, file-backed and
    resumable like :func:`surface_file`. Same seed and normalisation give the same plane as the loss
    surface, so the two maps line up."""
    from .hessian import eig_ratio_map

    if spec.y is None or spec.dir_type != "weights" or len(spec.splits) != 1:
        raise ValueError("an eigenvalue map needs a 2D grid (y), dir_type='weights' and exactly one split")
    path = Path(path)
    device = next(model.parameters()).device
    meta = {"spec": spec.to_attrs(), "hessian": {"max_iter": max_iter, "tol": tol}, **(attrs or {})}
    resume, delta, eta = _resume_or_start(path, meta, overwrite, lambda: make_directions(model, spec))
    batches = _batches(data, spec, device)[spec.splits[0]]
    meta["eval_samples"] = {spec.splits[0]: sum(len(t) for _, t in batches)}

    def flush(partial: Surface) -> None:
        save_surface(path, partial, delta=delta, eta=eta)

    return eig_ratio_map(model, cross_entropy(), batches, delta=delta, eta=eta, alphas=spec.x.coords(),
                         betas=spec.y.coords(), ignore=spec.ignore, max_iter=max_iter, tol=tol, seed=spec.seed,
                         resume=resume, attrs=meta, on_checkpoint=flush, checkpoint_seconds=checkpoint_seconds,
                         progress=progress)


def device_of(name: str) -> torch.device:
    """``torch.device(name)``, with an error that says what to do when CUDA is asked for but absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return device
