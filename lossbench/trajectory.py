"""Optimisation trajectories on a PCA plane (Li et al. 2018, section 7, Figures 8 and 9).

Random directions barely see the path an optimiser takes: in high dimension two random vectors are
nearly orthogonal to anything, so the projected path hardly moves (their Figure 8). The top two
principal directions of the matrix of ``theta_epoch - theta_final`` (one row per saved epoch) capture
most of its variation (they report 40-90 %), and a loss surface on that plane shows the path walking
into its minimum (Figure 9).

As in the authors' code (which uses sklearn's PCA), the rows are centred before the decomposition
and 1-D tensors (biases, BN) are left out (``ignore="biasbn"``). The PCA runs on the E x E Gram
matrix in float64 (E epochs), so it needs no copy of the E x P matrix beyond the rows themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .directions import IGNORES, Direction, inner
from .errors import check_choice
from .models import is_biasbn


@dataclass(frozen=True)
class PCAResult:
    """Top principal directions of a trajectory.

    Attributes:
        delta, eta: the first and second components as directions (unit norm; 1-D entries zero).
        explained_variance_ratio: (k,) share of the path's variance along each component.
        coords: (E, 2) projection of ``theta_e - theta_final`` onto (delta, eta), epochs in order.
        epochs: the epoch of each row.
    """

    delta: Direction
    eta: Direction
    explained_variance_ratio: np.ndarray
    coords: np.ndarray
    epochs: tuple[int, ...]


def _masked(theta: Mapping[str, Tensor], ignore: str) -> list[str]:
    return [n for n, t in theta.items() if t.is_floating_point() and not (ignore == "biasbn" and is_biasbn(t))]


def pca_directions(thetas: Sequence[Mapping[str, Tensor]], final: Mapping[str, Tensor], *,
                   epochs: Sequence[int] | None = None, ignore: str = "biasbn", k: int = 2) -> PCAResult:
    """PCA of ``theta_e - final`` over the saved epochs.

    Args:
        thetas: one weights dict per saved epoch (same names and shapes as ``final``).
        final: the end point (the minimum the surface is centred on).
        epochs: labels of the rows (default 0..E-1).
        ignore: ``biasbn`` drops 1-D tensors (as the authors), ``none`` keeps every floating tensor.
    """
    check_choice("ignore", ignore, IGNORES)
    if len(thetas) < k + 1:
        raise ValueError(f"need at least {k + 1} checkpoints for {k} principal directions; got {len(thetas)}")
    names = _masked(final, ignore)
    rows = [torch.cat([(t[n].double() - final[n].double()).reshape(-1) for n in names]) for t in thetas]
    X = torch.stack(rows)  # (E, P)
    Xc = X - X.mean(0, keepdim=True)
    gram = (Xc @ Xc.T).numpy()  # (E, E)
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    total = evals.sum()
    if total <= 0:
        raise ValueError("the trajectory does not move: every checkpoint equals the final weights")
    comps = []
    for i in range(k):
        c = Xc.T @ torch.from_numpy(evecs[:, i])  # (P,)
        comps.append(c / c.norm())
    ratio = evals[:k] / total

    def to_direction(vec: Tensor) -> Direction:
        out, i = {}, 0
        for n, t in final.items():
            if n in names:
                out[n] = vec[i : i + t.numel()].view(t.shape).to(t.dtype)
                i += t.numel()
            else:
                out[n] = torch.zeros_like(t)
        return out

    delta, eta = to_direction(comps[0]), to_direction(comps[1])
    coords = np.stack([(X @ comps[0]).numpy(), (X @ comps[1]).numpy()], axis=1)
    return PCAResult(delta, eta, ratio, coords, tuple(epochs if epochs is not None else range(len(thetas))))


def project(thetas: Sequence[Mapping[str, Tensor]], final: Mapping[str, Tensor], delta: Direction,
            eta: Direction) -> np.ndarray:
    """(E, 2) coordinates of ``theta_e - final`` along delta and eta: ``<d, delta> / ||delta||^2``.

    For orthonormal directions this is the plain projection; for a random plane it says how far, in
    units of the (normalised) directions, the path moves.
    """
    dd, ee = inner(delta, delta), inner(eta, eta)
    out = []
    for t in thetas:
        diff = {n: t[n] - final[n] for n in final if final[n].is_floating_point()}
        out.append((inner(diff, delta) / dd, inner(diff, eta) / ee))
    return np.asarray(out)


def load_path(checkpoints: Sequence[str | Path], names: Sequence[str], *, labels: list[str] | None = None
              ) -> tuple[list[dict[str, Tensor]], list[int]]:
    """The weights ``names`` of each checkpoint, and their epochs, in the given order: ``lossbench
    train``'s per-epoch files (their epoch), or plain weight files (numbered 0, 1, ... in order).
    ``labels``, if given, gets what to call each point: ``epoch N`` or the file's name."""
    from .errors import CheckpointError, NotACheckpointError
    from .train import load_checkpoint
    from .user_inputs import read_state_dict

    thetas, epochs = [], []
    for i, path in enumerate(checkpoints):
        try:
            _, state, epoch = load_checkpoint(path)
            label = f"epoch {epoch}"
        except NotACheckpointError:
            state, epoch = read_state_dict(path), i
            label = Path(path).name
        if labels is not None:
            labels.append(label)
        missing = [n for n in names if n not in state]
        if missing:
            raise CheckpointError(f"{path} lacks {len(missing)} of the net's weights ({', '.join(missing[:3])}); "
                                  "every file of the path must be a state of the same net")
        thetas.append({n: state[n] for n in names})
        epochs.append(epoch)
    return thetas, epochs


def path_extent(coords: np.ndarray, *, margin: float = 0.3) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis ranges that cover the projected path with ``margin`` (a fraction of its span) on each side."""
    lo, hi = coords.min(0), coords.max(0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - margin * span, hi + margin * span
    return (float(min(lo[0], 0.0)), float(max(hi[0], 0.0))), (float(min(lo[1], 0.0)), float(max(hi[1], 0.0)))


def random_walk_shares(checkpoints: int, *, dim: int = 4096, walks: int = 200, seed: int = 0) -> np.ndarray:
    """Top-2 PCA share of random walks sampled at ``checkpoints`` evenly spaced times: the share a path
    without any low-dimensional structure gets from the same PCA (rows centred, as above), the null
    model for the paper's 40-90 %.

    Each walk is ``checkpoints - 1`` i.i.d. Gaussian increments in ``dim`` dimensions (a Brownian path
    sampled at equal times; ``dim`` >> ``checkpoints``, so the dimension no longer matters).

    Returns:
        (walks,) float64 shares in (0, 1].
    """
    if checkpoints < 3:
        raise ValueError(f"checkpoints={checkpoints}; need at least 3 for two principal directions")
    rng = np.random.default_rng(seed)
    out = np.empty(walks)
    for w in range(walks):
        steps = rng.standard_normal((checkpoints - 1, dim))
        path = np.vstack([np.zeros((1, dim)), np.cumsum(steps, axis=0)])  # (E, dim)
        centred = path - path.mean(0, keepdims=True)
        evals = np.clip(np.linalg.eigvalsh(centred @ centred.T)[::-1], 0, None)
        out[w] = evals[:2].sum() / evals.sum()
    return out
