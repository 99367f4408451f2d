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
its Ritz spectrum: Lanczos converges at both extremes of the spectrum at once (no shift to choose).
Each end has its own residual bound ``|beta_k s_k|`` (Parlett) and is judged against *its own*
``|lambda|``: a lambda_min of 1e-3 lambda_max accepted at 1e-2 of lambda_max (the former rule) can
have the wrong sign. An end whose bound exceeds ``tol * |lambda|`` after ``max_iter`` steps is
``converged=False``; a lambda_min whose size is below ``floor * max |lambda|`` (1e-6 by default) is
below the resolution of float32 Hessian-vector products and is reported as unresolved too. Callers
store NaN (with the reason) for an end that did not converge, never a number that is not an answer.
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
from .evaluate import Batch, LossFn, as_batches, check_model_loss, cuda_math
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
    batches = as_batches(batches)
    check_model_loss(model, loss_fn, batches)
    return _hvp(model, loss_fn, as_batches(batches), v, ignore=ignore)


#: Images whose first-order graphs one Lanczos or Hutchinson run keeps between its products (the first
#: batches up to this many; the rest are rebuilt at every product). A kept graph spares each later
#: product the forward pass and the first backward: a third to a half of its time on the CPU
#: (benchmarks/RESULTS.md), at the cost of those batches' activations held in memory for the run.
KEEP_GRAPH_IMAGES = 256


def _hvp(model: nn.Module, loss_fn: LossFn, batches: list[Batch], v: Mapping[str, Tensor], *,
         ignore: str, graphs: list | None = None) -> Direction:
    """:func:`hvp` on inputs already checked: what Lanczos and Hutchinson call at every step.

    ``graphs``: a list owned by one run of products at the same weights (empty at its first product):
    the gradient graph of each of the first batches (up to :data:`KEEP_GRAPH_IMAGES` images) is kept
    in it and differentiated again by the next products instead of being rebuilt. The operations are
    the same, so the products are the same to the bit; changing the weights in place between two
    products makes autograd refuse the kept graph (a version-counter error), never a stale answer.
    """
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
        # IEEE float32 on CUDA: cuDNN's default lets the convolutions' backward use TF32 (~1e-3)
        with _differentiable(tensors), torch.enable_grad(), cuda_math(tensors[0].device):
            seen = 0
            for i, (inputs, targets) in enumerate(batches):
                seen += len(targets)
                keep = graphs is not None and seen <= KEEP_GRAPH_IMAGES
                if keep and i < len(graphs):
                    grads = graphs[i]
                else:
                    loss = loss_fn(model(inputs), targets) * (len(targets) / n_total)
                    grads = torch.autograd.grad(loss, tensors, create_graph=True)
                    if keep:
                        graphs.append(grads)
                dot = sum((g * u).sum() for g, u in zip(grads, vs))
                hv = torch.autograd.grad(dot, tensors, retain_graph=keep)
                for acc, h in zip(out, hv):
                    acc.add_(h.detach().to(torch.float64))
    finally:
        model.train(was_training)
    return dict(zip(names, out))


#: Below this fraction of the spectrum's scale max |lambda| an eigenvalue is not resolved: the
#: float32 Hessian-vector products of a net differ from float64 ones by ~1e-6 of |H v| (README).
EIG_FLOOR = 1e-6


@dataclass(frozen=True)
class EigenResult:
    """Extreme eigenvalues from Lanczos.

    Attributes:
        eig_max, eig_min: largest and smallest Ritz values (nats / unit^2 for a loss Hessian).
        iterations: Lanczos steps taken.
        converged: both ends converged.
        converged_max, converged_min: each end separately: residual bound <= tol * its own |lambda|.
        residual_max, residual_min: the residual bounds |beta_k s_k| of the two Ritz pairs.
        tol: the relative tolerance asked for.
        note_max, note_min: why an end is not converged ("" when it is): too few steps, or (lambda_min)
            below ``floor`` times the spectrum's scale.
        min_below_floor: lambda_min is resolved to be that small (an answer, if not a number).
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
    note_max: str = ""
    note_min: str = ""
    min_below_floor: bool = False

    @property
    def eig_ratio(self) -> float:
        """|lambda_min / lambda_max| (the paper's convexity measure), NaN unless both ends converged."""
        return float(eig_ratio(self.eig_min, self.eig_max)) if self.converged else math.nan

    @property
    def values(self) -> tuple[float, float]:
        """(lambda_max, lambda_min), NaN at an end that did not converge."""
        return (self.eig_max if self.converged_max else math.nan, self.eig_min if self.converged_min else math.nan)


#: Bytes of Lanczos vectors allocated at the start of a run (for the 0.85 M weights of a ResNet-56 in float64:
#: 78 vectors, more than the ~20-40 steps its Hessian takes), so that the buffer rarely has to grow.
BASIS_BYTES = 512 << 20


def lanczos(matvec: Callable[[Tensor], Tensor], dim: int, *, max_iter: int = 200, tol: float = 1e-3,
            floor: float = EIG_FLOOR, generator: torch.Generator | None = None, seed: int = 0,
            dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu", ends: str = "both") -> EigenResult:
    """Extreme eigenvalues of a symmetric operator of size ``dim`` by Lanczos with full reorthogonalisation.

    Args:
        matvec: ``v (dim,) -> A v (dim,)``.
        max_iter: at most this many steps (capped at ``dim``).
        tol: an end is converged when its Ritz pair's residual bound is <= tol * its own |lambda|; the
            run stops when both are (or when lambda_min is resolved to lie below ``floor``).
        floor: a lambda_min with |theta_min| + residual <= floor * max |lambda| is unresolved: its size is
            below what the products resolve, so neither it nor its sign is reported.
        generator, seed: the start vector is Gaussian from ``generator`` (or a new one seeded ``seed``).
        ends: ``both``, or ``max`` to stop once lambda_max has converged (lambda_min is then reported as
            it stands, converged or not).
    """
    check_choice("ends", ends, ("both", "max"))
    if dim < 1:
        raise ValueError(f"dim={dim} must be positive")
    if not 0 < tol < 1:
        raise ValueError(f"tol={tol} must be in (0, 1)")
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    steps = min(max_iter, dim)
    # The Lanczos vectors are rows 0..k of one buffer (up to BASIS_BYTES at first, at least 16 rows) that
    # doubles when full: re-stacking k vectors at every step cost a quarter of a ResNet-56's Lanczos
    # time in fresh memory. Q[: k + 1] is the same contiguous matrix, so the products are a stack's.
    Q = torch.empty(min(steps + 1, max(16, BASIS_BYTES // (dim * dtype.itemsize))), dim, dtype=dtype, device=device)
    Q[0] = q / q.norm()
    alphas: list[float] = []
    betas: list[float] = []
    result = None
    for k in range(steps):
        w = matvec(Q[k]).to(dtype)
        a = float(torch.dot(w, Q[k]))
        alphas.append(a)
        w = w - a * Q[k] - (betas[-1] * Q[k - 1] if betas else 0.0)
        basis = Q[: k + 1]  # (k+1, dim): full reorthogonalisation, twice for stability
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        b = float(w.norm())
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, S = np.linalg.eigh(T)
        res = np.abs(b * S[-1, :])  # residual bound of each Ritz pair
        scale = max(abs(theta[-1]), abs(theta[0]), 1e-300)
        invariant = b <= 1e-12 * scale  # Krylov space exhausted: the Ritz values are exact
        ok_max = bool(invariant or res[-1] <= tol * abs(theta[-1]))
        ok_min = bool(invariant or res[0] <= tol * abs(theta[0]))
        tiny_min = not ok_min and abs(theta[0]) + res[0] <= floor * scale
        last = k + 1 == steps
        note_max = "" if ok_max else f"residual {res[-1]:.2g} > {tol:g} x |lambda_max| after {k + 1} steps"
        note_min = ("" if ok_min else
                    f"|lambda_min| < {floor:g} x max |lambda|: below the resolution of the products" if tiny_min else
                    f"residual {res[0]:.2g} > {tol:g} x |lambda_min| after {k + 1} steps")
        result = EigenResult(float(theta[-1]), float(theta[0]), k + 1, ok_max and ok_min, ok_max, ok_min,
                             float(res[-1]), float(res[0]), tol, note_max, note_min, bool(tiny_min))
        if (ok_max and (ok_min or tiny_min or ends == "max")) or last:
            break
        betas.append(b)
        if k + 2 > len(Q):
            Q = torch.cat([Q, torch.empty(min(len(Q), steps + 1 - len(Q)), dim, dtype=dtype, device=device)])
        Q[k + 1] = w / b
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
                 max_iter: int = 200, tol: float = 1e-3, floor: float = EIG_FLOOR, seed: int = 0,
                 ends: str = "both") -> EigenResult:
    """lambda_max and lambda_min of the loss Hessian of ``model`` at its current weights (:func:`lanczos`:
    each end to ``tol`` of its own size, NaN-worthy ends flagged)."""
    batches = as_batches(batches)
    check_model_loss(model, loss_fn, batches)
    params = hessian_params(model, ignore)
    like = {n: p.detach() for n, p in params.items()}
    dim = sum(p.numel() for p in like.values())
    dtype = next(iter(like.values())).dtype
    device = next(iter(like.values())).device

    graphs: list = []  # kept between the products of this run (the weights do not move)

    def matvec(x: Tensor) -> Tensor:
        hv = _hvp(model, loss_fn, batches, _unflatten(x.to(dtype), like), ignore=ignore, graphs=graphs)
        return _flatten(hv, list(like)).to(torch.float64)

    return lanczos(matvec, dim, max_iter=max_iter, tol=tol, floor=floor, seed=seed, device=device, ends=ends)


@dataclass(frozen=True)
class TraceResult:
    """Hutchinson estimate of tr(H): mean of v^T H v over Rademacher probes, and its standard error.

    ``samples``: each probe's v^T H v (the terms of the mean). Their signs differ where the Hessian has
    negative curvature, and the mean then cancels: :attr:`conditioning` = sum |v^T H v| / |sum v^T H v|
    is how much larger a rounding error of the terms becomes relative to the trace.
    """

    trace: float
    stderr: float
    probes: int
    samples: tuple[float, ...] = ()

    @property
    def conditioning(self) -> float:
        total = abs(sum(self.samples))
        return sum(abs(s) for s in self.samples) / total if total > 0 else math.inf


def hutchinson_trace(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, probes: int = 32,
                     ignore: str = "biasbn", seed: int = 0) -> TraceResult:
    """tr(H) ~ E[v^T H v] with v uniform on {-1, +1}^n (drawn from a seeded CPU generator)."""
    if probes < 2:
        raise ValueError(f"probes={probes}; need at least 2 for a standard error")
    batches = as_batches(batches)
    check_model_loss(model, loss_fn, batches)
    params = hessian_params(model, ignore)
    g = torch.Generator().manual_seed(seed)
    samples = []
    graphs: list = []
    for _ in range(probes):
        v = {n: (torch.randint(0, 2, p.shape, generator=g) * 2 - 1).to(p) for n, p in params.items()}
        hv = _hvp(model, loss_fn, batches, v, ignore=ignore, graphs=graphs)
        samples.append(float(sum((hv[n] * v[n]).sum() for n in params)))
    arr = np.asarray(samples)
    return TraceResult(float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(probes)), probes, tuple(samples))


EIG_KEYS = ("max_eig", "min_eig", "eig_converged")


def eig_ratio_map(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, delta: Direction, eta: Direction,
                  alphas: np.ndarray, betas: np.ndarray, ignore: str = "biasbn", max_iter: int = 200,
                  tol: float = 1e-3, seed: int = 0, resume: Surface | None = None, attrs=None,
                  on_checkpoint=None, checkpoint_seconds: float = 30.0, progress: bool | None = None) -> Surface:
    """lambda_max and lambda_min at every point of a 2D grid (the same directions as a loss surface).

    Values ``max_eig``, ``min_eig`` (the authors' names; NaN where that end did not converge) and
    ``eig_converged`` (1.0 or 0.0); the convexity map is ``|min_eig / max_eig|``
    (:func:`eig_ratio`). Resumable like a loss surface.
    """
    batches = as_batches(batches)
    check_model_loss(model, loss_fn, batches)

    def measure(m: nn.Module) -> dict[str, float]:
        r = hessian_eigs(m, loss_fn, batches, ignore=ignore, max_iter=max_iter, tol=tol, seed=seed)
        eig_max, eig_min = r.values
        return {"max_eig": eig_max, "min_eig": eig_min, "eig_converged": float(r.converged)}

    return compute_grid(model, measure, EIG_KEYS, delta=delta, eta=eta, alphas=alphas, betas=betas,
                        dir_type="weights", resume=resume, attrs=attrs, on_checkpoint=on_checkpoint,
                        checkpoint_seconds=checkpoint_seconds, progress=progress, desc="hessian")


