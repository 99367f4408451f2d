"""Curvature: Hessian-vector products, extreme eigenvalues by Lanczos, Hutchinson's trace, and the
eigenvalue-ratio maps of Li et al. 2018, section 6 (their Figure 7).

The Hessian is that of the mean loss over the whole evaluation set, in eval mode: each batch's
contribution is weighted by its size / N (the "sum of per-batch sums / N" rule, as PyHessian does).
By default it is taken with respect to the tensors with at least 2 dimensions only (conv and linear
weights), as the authors do (``ignore="biasbn"``); ``ignore="none"`` uses every parameter.

:func:`lanczos` knows nothing of models: it works on any symmetric ``matvec`` over flat vectors, so it
is tested against ``torch.linalg.eigvalsh`` on explicit matrices.

**lambda_min.** The authors find lambda_max by power iteration, then run it again on H - lambda_max I
to reach lambda_min. We run one Lanczos process with full reorthogonalisation and read both ends of
its Ritz spectrum: Lanczos converges at both extremes of the spectrum at once, and a small or
positive lambda_min is found as reliably as a negative one (no shift to choose). Each end has its own
residual bound ``|beta_k s_k|`` (Parlett); an end whose bound exceeds ``tol * max |lambda|`` (the spectrum's scale) after
``max_iter`` steps is reported with ``converged=False``; :func:`eig_ratio_map` then stores NaN there
rather than a number that is not an answer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .directions import IGNORES, Direction
from .errors import check_choice
from .evaluate import Batch, LossFn, as_batches, check_loss_fn
from .metrics import eig_ratio
from .models import is_biasbn
from .surface import Surface, compute_grid


def hessian_params(model: nn.Module, ignore: str = "biasbn") -> dict[str, nn.Parameter]:
    """The parameters the Hessian is taken over, by name in model order: the same set a ``weights``
    direction with this ``ignore`` moves (frozen parameters included: the surface perturbs them too),
    so the curvature and the surface describe the same space. An empty set is an error."""
    check_choice("ignore", ignore, IGNORES)
    params = {n: p for n, p in model.named_parameters() if not (ignore == "biasbn" and is_biasbn(p))}
    if not params:
        raise ValueError(f"the model has no parameters to take the Hessian over (ignore={ignore!r} leaves none"
                         + ("; try ignore='none'" if ignore == "biasbn" else "") + ")")
    return params


@contextlib.contextmanager
def _differentiable(tensors: Sequence[Tensor]):
    """Let autograd differentiate frozen parameters for the block; restore their flags afterwards."""
    frozen = [t for t in tensors if not t.requires_grad]
    for t in frozen:
        t.requires_grad_(True)
    try:
        yield
    finally:
        for t in frozen:
            t.requires_grad_(False)


def hvp(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], v: Mapping[str, Tensor], *,
        ignore: str = "biasbn") -> Direction:
    """H v, the Hessian of the mean loss over ``batches`` times ``v`` (keyed like :func:`hessian_params`).

    Eval mode (restored afterwards); batches weighted by size / N. Each batch's product is computed in
    the model's dtype and the sum over batches is accumulated, and returned, in float64 (as the loss
    is): summed in float32 over hundreds of batches the rounding grew with their number.
    """
    check_loss_fn(loss_fn)
    return _hvp(model, loss_fn, as_batches(batches), v, ignore=ignore)


def _hvp(model: nn.Module, loss_fn: LossFn, batches: list[Batch], v: Mapping[str, Tensor], *,
         ignore: str) -> Direction:
    """:func:`hvp` on inputs already checked: what Lanczos and Hutchinson call at every step."""
    params = hessian_params(model, ignore)
    missing = [n for n in params if n not in v]
    if missing:
        raise ValueError(f"v lacks {missing[:5]}; it must be keyed by the Hessian's parameters (ignore={ignore!r})")
    names = list(params)
    tensors = [params[n] for n in names]
    vs = [v[n].to(params[n]) for n in names]
    n_total = sum(len(t) for _, t in batches)
    if n_total == 0:
        raise ValueError("batches are empty")
    out = [torch.zeros_like(p, dtype=torch.float64) for p in tensors]
    was_training = model.training
    model.eval()
    try:
        with _differentiable(tensors), torch.enable_grad():
            for inputs, targets in batches:
                loss = loss_fn(model(inputs), targets) * (len(targets) / n_total)
                grads = torch.autograd.grad(loss, tensors, create_graph=True)
                dot = sum((g * u).sum() for g, u in zip(grads, vs))
                hv = torch.autograd.grad(dot, tensors)
                for acc, h in zip(out, hv):
                    acc.add_(h.detach().to(torch.float64))
    finally:
        model.train(was_training)
    return dict(zip(names, out))


@dataclass(frozen=True)
class EigenResult:
    """Extreme eigenvalues from Lanczos.

    Attributes:
        eig_max, eig_min: largest and smallest Ritz values (nats / unit^2 for a loss Hessian).
        iterations: Lanczos steps taken.
        converged: both ends within tolerance.
        converged_max, converged_min: each end separately.
        residual_max, residual_min: the residual bounds |beta_k s_k| of the two Ritz pairs.
        tol: the relative tolerance asked for.
    """

    eig_max: float
    eig_min: float
    iterations: int
    converged: bool
    converged_max: bool
    converged_min: bool
    residual_max: float
    residual_min: float
    tol: float

    @property
    def eig_ratio(self) -> float:
        """|lambda_min / lambda_max| (the paper's convexity measure), NaN unless both ends converged."""
        return float(eig_ratio(self.eig_min, self.eig_max)) if self.converged else math.nan


def lanczos(matvec: Callable[[Tensor], Tensor], dim: int, *, max_iter: int = 100, tol: float = 1e-3,
            generator: torch.Generator | None = None, seed: int = 0, dtype: torch.dtype = torch.float64,
            device: torch.device | str = "cpu") -> EigenResult:
    """Extreme eigenvalues of a symmetric operator of size ``dim`` by Lanczos with full reorthogonalisation.

    Args:
        matvec: ``v (dim,) -> A v (dim,)``.
        max_iter: at most this many steps (capped at ``dim``).
        tol: stop when both extreme Ritz pairs have residual bound <= tol * (the spectrum's scale,
            max |lambda|): judged against its own |lambda|, a lambda_min near 0 would rarely converge
            and turn NaN exactly where the surface is convex.
        generator, seed: the start vector is Gaussian from ``generator`` (or a new one seeded ``seed``).
    """
    if dim < 1:
        raise ValueError(f"dim={dim} must be positive")
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    q = q / q.norm()
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    steps = min(max_iter, dim)
    result = None
    for k in range(steps):
        w = matvec(basis[-1]).to(dtype)
        a = float(torch.dot(w, basis[-1]))
        alphas.append(a)
        w = w - a * basis[-1] - (betas[-1] * basis[-2] if betas else 0.0)
        Q = torch.stack(basis)  # (k+1, dim): full reorthogonalisation, twice for stability
        for _ in range(2):
            w = w - Q.T @ (Q @ w)
        b = float(w.norm())
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, S = np.linalg.eigh(T)
        res = np.abs(b * S[-1, :])  # residual bound of each Ritz pair
        scale = max(abs(theta[-1]), abs(theta[0]), 1e-30)
        ok_max = res[-1] <= tol * scale
        ok_min = res[0] <= tol * scale
        invariant = b <= 1e-12 * scale  # Krylov space exhausted: the Ritz values are exact
        result = EigenResult(float(theta[-1]), float(theta[0]), k + 1, bool((ok_max and ok_min) or invariant),
                             bool(ok_max or invariant), bool(ok_min or invariant), float(res[-1]), float(res[0]), tol)
        if result.converged:
            break
        betas.append(b)
        basis.append(w / b)
    return result  # type: ignore[return-value]  (steps >= 1)


def _flatten(d: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    return torch.cat([d[n].reshape(-1) for n in names])


def _unflatten(x: Tensor, like: Mapping[str, Tensor]) -> Direction:
    out, i = {}, 0
    for n, t in like.items():
        out[n] = x[i : i + t.numel()].view_as(t)
        i += t.numel()
    return out


def hessian_eigs(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, ignore: str = "biasbn",
                 max_iter: int = 100, tol: float = 1e-3, seed: int = 0) -> EigenResult:
    """lambda_max and lambda_min of the loss Hessian of ``model`` at its current weights."""
    batches = as_batches(batches)
    check_loss_fn(loss_fn)
    params = hessian_params(model, ignore)
    like = {n: p.detach() for n, p in params.items()}
    dim = sum(p.numel() for p in like.values())
    dtype = next(iter(like.values())).dtype
    device = next(iter(like.values())).device

    def matvec(x: Tensor) -> Tensor:
        hv = _hvp(model, loss_fn, batches, _unflatten(x.to(dtype), like), ignore=ignore)
        return _flatten(hv, list(like)).to(torch.float64)

    return lanczos(matvec, dim, max_iter=max_iter, tol=tol, seed=seed, device=device)


@dataclass(frozen=True)
class TraceResult:
    """Hutchinson estimate of tr(H): mean of v^T H v over Rademacher probes, and its standard error."""

    trace: float
    stderr: float
    probes: int


def hutchinson_trace(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, probes: int = 32,
                     ignore: str = "biasbn", seed: int = 0) -> TraceResult:
    """tr(H) ~ E[v^T H v] with v uniform on {-1, +1}^n (drawn from a seeded CPU generator)."""
    if probes < 2:
        raise ValueError(f"probes={probes}; need at least 2 for a standard error")
    batches = as_batches(batches)
    check_loss_fn(loss_fn)
    params = hessian_params(model, ignore)
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(probes):
        v = {n: (torch.randint(0, 2, p.shape, generator=g) * 2 - 1).to(p) for n, p in params.items()}
        hv = _hvp(model, loss_fn, batches, v, ignore=ignore)
        samples.append(float(sum((hv[n] * v[n]).sum() for n in params)))
    arr = np.asarray(samples)
    return TraceResult(float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(probes)), probes)


EIG_KEYS = ("max_eig", "min_eig", "eig_converged")


def eig_ratio_map(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, delta: Direction, eta: Direction,
                  alphas: np.ndarray, betas: np.ndarray, ignore: str = "biasbn", max_iter: int = 100,
                  tol: float = 1e-3, seed: int = 0, resume: Surface | None = None, attrs=None,
                  on_checkpoint=None, checkpoint_seconds: float = 30.0, progress: bool | None = None) -> Surface:
    """lambda_max and lambda_min at every point of a 2D grid (the same directions as a loss surface).

    Values ``max_eig``, ``min_eig`` (the authors' names; NaN where that end did not converge) and
    ``eig_converged`` (1.0 or 0.0); the convexity map is ``|min_eig / max_eig|``
    (:func:`eig_ratio`). Resumable like a loss surface.
    """
    batches = as_batches(batches)
    check_loss_fn(loss_fn)

    def measure(m: nn.Module) -> dict[str, float]:
        r = hessian_eigs(m, loss_fn, batches, ignore=ignore, max_iter=max_iter, tol=tol, seed=seed)
        return {"max_eig": r.eig_max if r.converged_max else math.nan,
                "min_eig": r.eig_min if r.converged_min else math.nan,
                "eig_converged": float(r.converged)}

    return compute_grid(model, measure, EIG_KEYS, delta=delta, eta=eta, alphas=alphas, betas=betas,
                        dir_type="weights", resume=resume, attrs=attrs, on_checkpoint=on_checkpoint,
                        checkpoint_seconds=checkpoint_seconds, progress=progress, desc="hessian")


