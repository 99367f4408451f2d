"""Directions in weight space (Li et al. 2018, section 4): random Gaussian, filter-normalised, target.

A direction is a ``Direction = dict[str, Tensor]`` keyed by parameter name (``dir_type="weights"``) or by
state-dict entry (``dir_type="states"``, which includes BatchNorm running statistics), in model order,
with the shapes of theta (the centre point, ``theta``). Functions return new tensors.

Normalisation, per tensor d of the direction and the matching tensor t of theta (the authors'
``net_plotter.normalize_direction``):

* ``filter``: every slice along dim 0 (a conv filter, a linear layer's output row) is rescaled,
  ``d_i <- d_i * ||t_i|| / (||d_i|| + 1e-10)``; this is what removes the scale invariance of
  BN-followed layers from the picture (section 4).
* ``layer``: ``d <- d * ||t|| / (||d|| + 1e-10)``.
* ``weight``: ``d <- d * t`` (elementwise).
* ``dfilter``: ``d_i <- d_i / (||d_i|| + 1e-10)``; ``dlayer``: ``d <- d / (||d|| + 1e-10)``.
* ``none``: unchanged.

The ``ignore`` policy applies to tensors with at most one dimension (biases, BN weights/biases and
running statistics; :func:`lossbench.models.is_biasbn`): ``biasbn`` gives them a zero direction, ``none``
copies theta into them, as the authors' code does; normalisation never touches them. Integer entries
(BN's ``num_batches_tracked``) always get a zero direction: a counter is not a coordinate.
The authors' ``layer`` and ``dlayer`` have no epsilon; ours adds 1e-10 so that a zero tensor stays
finite (otherwise identical).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from .config import DIR_TYPES, IGNORES, NORMS  # noqa: F401  (defined torch-free there: the command line offers them)
from .errors import check_choice
from .models import is_biasbn

Direction = dict[str, Tensor]
Norm = Literal["filter", "layer", "weight", "dfilter", "dlayer", "none"]
Ignore = Literal["biasbn", "none"]
DirType = Literal["weights", "states"]

EPS = 1e-10


def model_tensors(model: nn.Module, dir_type: str = "weights") -> dict[str, Tensor]:
    """The live tensors a direction of ``dir_type`` addresses, by name, in model order (not copies)."""
    check_choice("dir_type", dir_type, DIR_TYPES)
    if dir_type == "weights":
        return dict(model.named_parameters())
    else:
        return dict(model.state_dict(keep_vars=True))


def get_theta(model: nn.Module, dir_type: str = "weights") -> Direction:
    """theta: detached clones of the model's parameters (``weights``) or state-dict entries (``states``)."""
    return {name: t.detach().clone() for name, t in model_tensors(model, dir_type).items()}


def check_compatible(direction: Mapping[str, Tensor], theta: Mapping[str, Tensor], what: str = "direction") -> None:
    """Same names and shapes as theta, else a ``ValueError`` that names the first offending tensor."""
    missing = [k for k in theta if k not in direction]
    extra = [k for k in direction if k not in theta]
    if missing or extra:
        raise ValueError(
            f"{what} does not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}; was it made for another network or dir_type?"
        )
    for name, t in theta.items():
        if direction[name].shape != t.shape:
            raise ValueError(
                f"{what} tensor {name!r} has shape {tuple(direction[name].shape)}; the model's has {tuple(t.shape)}"
            )


def random_direction(
    theta: Mapping[str, Tensor], *, seed: int | None = None, generator: torch.Generator | None = None
) -> Direction:
    """i.i.d. standard Gaussian entries with theta's shapes, device and dtype.

    Drawn in float32 on a CPU ``torch.Generator`` and then moved, so the same seed gives the same
    direction on any device. Pass exactly one of ``seed`` or ``generator``.
    """
    if (seed is None) == (generator is None):
        raise ValueError("pass exactly one of seed= or generator=")
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    out: Direction = {}
    for name, t in theta.items():
        if t.is_floating_point():
            out[name] = torch.randn(t.shape, generator=g, dtype=torch.float32).to(device=t.device, dtype=t.dtype)
        else:
            out[name] = torch.zeros_like(t)
    return out


def normalize_tensor(d: Tensor, t: Tensor, norm: str) -> Tensor:
    """One tensor's normalisation (``d`` and ``t`` of the same shape, at least 2-D for ``filter``)."""
    if norm == "filter" or norm == "dfilter":
        d_norms = d.reshape(d.shape[0], -1).norm(dim=1)
        target = t.reshape(t.shape[0], -1).norm(dim=1) if norm == "filter" else torch.ones_like(d_norms)
        scale = target / (d_norms + EPS)
        return d * scale.view(-1, *([1] * (d.dim() - 1)))
    elif norm == "layer":
        return d * (t.norm() / (d.norm() + EPS))
    elif norm == "dlayer":
        return d / (d.norm() + EPS)
    elif norm == "weight":
        return d * t
    elif norm == "none":
        return d.clone()
    else:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")


def normalize_direction(
    direction: Mapping[str, Tensor], theta: Mapping[str, Tensor], *, norm: str = "filter", ignore: str = "biasbn"
) -> Direction:
    """A normalised copy of ``direction`` (see the module docstring for each ``norm`` and ``ignore``)."""
    check_choice("norm", norm, NORMS)
    check_choice("ignore", ignore, IGNORES)
    check_compatible(direction, theta)
    out: Direction = {}
    for name, t in theta.items():
        d = direction[name]
        if not t.is_floating_point():
            out[name] = torch.zeros_like(t)
        elif is_biasbn(t):
            out[name] = torch.zeros_like(d) if ignore == "biasbn" else t.detach().clone().to(d.dtype)
        else:
            out[name] = normalize_tensor(d, t, norm)
    return out


def filter_normalize(direction: Mapping[str, Tensor], theta: Mapping[str, Tensor], *, ignore: str = "biasbn") -> Direction:
    """:func:`normalize_direction` with ``norm="filter"``: the paper's filter normalisation."""
    return normalize_direction(direction, theta, norm="filter", ignore=ignore)


def create_random_direction(
    model: nn.Module, *, seed: int, dir_type: str = "weights", norm: str = "filter", ignore: str = "biasbn"
) -> Direction:
    """A seeded random direction for ``model``, normalised against its current weights (theta)."""
    theta = get_theta(model, dir_type)
    return normalize_direction(random_direction(theta, seed=seed), theta, norm=norm, ignore=ignore)


def target_direction(theta1: Mapping[str, Tensor], theta2: Mapping[str, Tensor]) -> Direction:
    """theta2 - theta1, for the 1D linear interpolation f(alpha) = L(theta1 + alpha (theta2 - theta1)).

    Use ``dir_type="states"`` for both, so BN running statistics are interpolated too (section 3).
    Integer entries get a zero direction.
    """
    check_compatible(theta2, theta1, what="second model")
    return {
        name: (theta2[name] - t) if t.is_floating_point() else torch.zeros_like(t) for name, t in theta1.items()
    }


def inner(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Euclidean inner product of two directions over all their (floating) entries, in float64."""
    return float(sum((a[k].double() * b[k].double()).sum() for k in a if a[k].is_floating_point()))


def norm_of(a: Mapping[str, Tensor]) -> float:
    return inner(a, a) ** 0.5


def cosine_similarity(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """cos of the angle between two directions (the authors print it for x and y)."""
    return inner(a, b) / (norm_of(a) * norm_of(b) + EPS)


def orthogonalize(eta: Mapping[str, Tensor], delta: Mapping[str, Tensor]) -> Direction:
    """eta minus its projection on delta (one Gram-Schmidt step over all entries).

    Applied after normalisation, so eta's filter norms no longer match theta's exactly; in high
    dimension two random directions are nearly orthogonal anyway (the paper relies on that).
    """
    check_compatible(eta, delta, what="eta")
    coef = inner(eta, delta) / max(inner(delta, delta), EPS)
    return {k: (eta[k] - coef * delta[k]) if eta[k].is_floating_point() else eta[k].clone() for k in eta}
