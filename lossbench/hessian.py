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
#: float32 Hessian-vector products of a net differ from float64 ones by ~1e-6 of |H v| (docs/guide/own-model.md).
EIG_FLOOR = 1e-6

#: Lanczos stops on a lambda_min below the floor only once its Ritz value has stayed there this many steps
#: in a row. A Ritz value near 0 with a small residual is *an* eigenvalue near 0, not the smallest: on the
#: authors' plain ResNet-56 at training seed 6 (lambda_max 3.4e6) step 2 gave 0 +- 1.6 under a floor of
#: 3.4, and without stopping the lower end reached -141 at step 6 and converged at -207.5 at step 16.
TINY_STEPS = 10


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
            run stops when both are (or when lambda_min has stayed below ``floor`` for
            :data:`TINY_STEPS` steps in a row).
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
    tiny_run = 0  # consecutive steps at whose end lambda_min's Ritz value lay below the floor
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
        tiny_run = tiny_run + 1 if tiny_min else 0
        if (ok_max and (ok_min or tiny_run >= TINY_STEPS or ends == "max")) or last:
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
    matvec, like = _operator(model, loss_fn, batches, ignore)
    dim = sum(p.numel() for p in like.values())
    device = next(iter(like.values())).device
    return lanczos(matvec, dim, max_iter=max_iter, tol=tol, floor=floor, seed=seed, device=device, ends=ends)


def _operator(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], ignore: str
              ) -> tuple[Callable[[Tensor], Tensor], dict[str, Tensor]]:
    """(matvec over flat float64 vectors, the Hessian's parameters by name (detached)) after checking the
    inputs: what every Lanczos run over a model's Hessian multiplies with. One run's products keep the
    first batches' gradient graphs (the weights do not move between them)."""
    batches = as_batches(batches)
    check_model_loss(model, loss_fn, batches)
    like = {n: p.detach() for n, p in hessian_params(model, ignore).items()}
    dtype = next(iter(like.values())).dtype
    graphs: list = []

    def matvec(x: Tensor) -> Tensor:
        hv = _hvp(model, loss_fn, batches, _unflatten(x.to(dtype), like), ignore=ignore, graphs=graphs)
        return _flatten(hv, list(like)).to(torch.float64)

    return matvec, like


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




# --- the whole spectrum: stochastic Lanczos quadrature and eigenvector pairs -------------------------


@dataclass(frozen=True)
class LanczosRun:
    """A Lanczos tridiagonalisation T = Q^T A Q from one start vector (full reorthogonalisation).

    Attributes:
        alphas: (m,) diagonal of T.
        betas: (m,) off-diagonal of T, then the last residual norm ``betas[-1]`` (0 when the Krylov space
            closed: T's eigenvalues are then exact eigenvalues of A).
        basis: (m, dim) the Lanczos vectors Q^T (float64), or None when not kept.
    """

    alphas: np.ndarray
    betas: np.ndarray
    basis: Tensor | None

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """(theta (m,), S (m, m)): the Ritz values ascending and T's eigenvectors as columns."""
        m = len(self.alphas)
        T = np.diag(self.alphas) + np.diag(self.betas[: m - 1], 1) + np.diag(self.betas[: m - 1], -1)
        return np.linalg.eigh(T)

    def residuals(self, S: np.ndarray) -> np.ndarray:
        """(m,) the residual bound |beta_m s_{m,j}| = ||A y_j - theta_j y_j|| of each Ritz pair (Parlett)."""
        return np.abs(self.betas[-1] * S[-1, :])


def lanczos_tridiagonal(matvec: Callable[[Tensor], Tensor], start: Tensor, steps: int, *, keep_basis: bool = False,
                        stop: Callable[[LanczosRun], bool] | None = None) -> LanczosRun:
    """Up to ``steps`` Lanczos steps of a symmetric ``matvec`` from ``start`` (any norm), in float64 with
    full reorthogonalisation (twice, as :func:`lanczos`): without it the Ritz values of a long run come
    in spurious copies and a spectral density counts an outlier several times.

    Stops early when the Krylov space closes (its Ritz values are then exact) or when ``stop(run so
    far)`` is true (checked after every step; ``keep_basis`` is then needed to make eigenvectors)."""
    if steps < 1:
        raise ValueError(f"steps={steps}: expected at least 1 Lanczos step")
    dim = start.numel()
    steps = min(steps, dim)
    q = start.reshape(-1).to(torch.float64)
    norm = float(q.norm())
    if not norm > 0:
        raise ValueError("the start vector is zero")
    full = torch.empty(steps + 1, dim, dtype=torch.float64, device=q.device)  # every vector: reorthogonalisation
    full[0] = q / norm
    alphas: list[float] = []
    betas: list[float] = []
    for k in range(steps):
        w = matvec(full[k]).to(torch.float64).reshape(-1)
        a = float(torch.dot(w, full[k]))
        alphas.append(a)
        basis = full[: k + 1]
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        b = float(w.norm())
        scale = max(abs(x) for x in alphas) or 1.0
        closed = b <= 1e-12 * scale
        run = LanczosRun(np.asarray(alphas), np.asarray(betas + [0.0 if closed else b]),
                         full[: k + 1] if keep_basis else None)
        if closed or k + 1 == steps or (stop is not None and stop(run)):
            return run
        betas.append(b)
        full[k + 1] = w / b
    raise AssertionError("unreachable: the loop returns at its last step")


@dataclass(frozen=True)
class Spectrum:
    """A stochastic-Lanczos-quadrature estimate of a symmetric operator's eigenvalue density
    (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019).

    Each probe v (Rademacher, then unit norm) gives a Gauss quadrature of the spectral measure
    sum_i (q_i . v)^2 delta(t - lambda_i): nodes = the Ritz values of its Lanczos run, weights = the
    squared first components of T's eigenvectors (they sum to 1). For any f, the probe's
    sum_j w_j f(theta_j) is exact for polynomials up to degree 2m - 1 and its mean over probes is an
    unbiased estimate of tr f(H) / n.

    Attributes:
        nodes: (probes, steps) Ritz values (units of the operator: nats / unit^2 for a loss Hessian);
            NaN where a probe's Krylov space closed before ``steps``.
        weights: (probes, steps) quadrature weights, each row summing to 1; 0 where ``nodes`` is NaN.
        dim: n, the operator's size.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int

    @property
    def probes(self) -> int:
        return int(self.nodes.shape[0])

    def _per_probe(self, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        nodes = np.nan_to_num(self.nodes)
        return np.sum(self.weights * f(nodes), axis=1)

    def _mean(self, per_probe: np.ndarray) -> tuple[float, float]:
        err = float(per_probe.std(ddof=1) / math.sqrt(len(per_probe))) if len(per_probe) > 1 else math.inf
        return float(per_probe.mean()), err

    def moment(self, k: int) -> tuple[float, float]:
        """(estimate, standard error over probes) of tr(H^k) / n: k = 1 the mean eigenvalue, k = 2 the
        mean squared eigenvalue. Exact per probe for k <= 2m - 1; the error is the probes' sampling."""
        return self._mean(self._per_probe(lambda t: t ** k))

    def _edge_bound(self, t: float) -> float:
        """The quadrature error bound of a step at ``t``, averaged over probes: by the
        Chebyshev-Markov-Stieltjes inequalities a probe's true spectral measure below t lies between its
        quadrature's sums without and with the two nodes beside t, so its error is at most the larger of
        their two weights (Szego; Golub & Meurant, "Matrices, Moments and Quadrature", ch. 6)."""
        bounds = []
        for nodes, weights in zip(self.nodes, self.weights):
            ok = ~np.isnan(nodes)
            if not ok.all():  # the Krylov space closed: the measure is the quadrature's, exactly
                bounds.append(0.0)
                continue
            nodes, weights = nodes[ok], weights[ok]
            below, above = weights[nodes < t], weights[nodes >= t]
            bounds.append(max(below[np.argmax(nodes[nodes < t])] if len(below) else 0.0,
                              above[np.argmin(nodes[nodes >= t])] if len(above) else 0.0))
        return float(np.mean(bounds))

    def count(self, lo: float, hi: float) -> tuple[float, float, float]:
        """(estimate, standard error over probes, quadrature bound) of the number of eigenvalues in
        [lo, hi). The bound (:meth:`_edge_bound` at each end, x n) is what the Gauss quadrature of a
        step function can miss: small where an end lies in a gap of the spectrum, up to a node's weight
        where it cuts through the bulk."""
        if not lo < hi:
            raise ValueError(f"lo={lo} must be below hi={hi}")
        estimate, err = self._mean(self._per_probe(lambda t: (t >= lo) & (t < hi)))
        return self.dim * estimate, self.dim * err, self.dim * (self._edge_bound(lo) + self._edge_bound(hi))

    def density(self, grid: np.ndarray, sigma: float) -> np.ndarray:
        """(len(grid),) the density of eigenvalues per unit of lambda, each Ritz node broadened to a
        Gaussian of standard deviation ``sigma``: it integrates to 1 over the real line."""
        if not sigma > 0:
            raise ValueError(f"sigma={sigma}: expected a positive width")
        grid = np.asarray(grid, float)
        z = (grid[None, None, :] - np.nan_to_num(self.nodes)[:, :, None]) / sigma
        kernel = np.exp(-0.5 * z ** 2) / (sigma * math.sqrt(2 * math.pi))
        return np.sum(self.weights[:, :, None] * kernel, axis=1).mean(axis=0)

    def span(self) -> tuple[float, float]:
        """(lowest, highest) Ritz node over all probes."""
        return float(np.nanmin(self.nodes)), float(np.nanmax(self.nodes))

    def default_sigma(self, width: float = 0.01) -> float:
        """The broadening used unless one is asked for: ``width`` of the span of the Ritz nodes (PyHessian
        and Ghorbani et al. draw with a width of this order); stored with the density."""
        lo, hi = self.span()
        return width * max(hi - lo, abs(hi), 1e-300)

    def negative_mass(self, resolution: float = 1e-3) -> tuple[float, float, float]:
        """(estimate, standard error over probes, quadrature bound) of the fraction of eigenvalues below
        ``-resolution x max |theta|`` (Ghorbani et al.'s "negative mass", counted on the quadrature's
        nodes, not on the broadened density: a net's bulk sits within a fraction of a percent of 0, and any
        broadening wide enough to draw the outliers puts half of it below 0). The threshold keeps the
        bulk's rounding-level eigenvalues (float32 products resolve ~1e-6 of lambda_max) out of it; the
        bound is :meth:`_edge_bound` there (the edge cuts through the bulk: more steps shrink it)."""
        edge = -resolution * float(np.nanmax(np.abs(self.nodes)))
        estimate, err = self._mean(self._per_probe(lambda t: t < edge))
        return estimate, err, self._edge_bound(edge)

    def negative_share(self) -> tuple[float, float, float]:
        """(estimate, standard error over probes, quadrature bound) of the share of the squared spectrum
        that is negative, sum_{lambda < 0} lambda^2 / sum lambda^2 (= tr(H_-^2) / tr(H^2)).

        Unlike the negative mass, it does not depend on which side of 0 a near-null cluster's rounding
        falls: an eigenvalue counts by its square. The denominator is the second moment, exact per probe;
        the numerator's quadrature error is bounded through the Chebyshev-Markov-Stieltjes bounds of the
        distribution function F (:meth:`_edge_bound`): sum_{lambda<0} lambda^2 / n = int_0^inf 2 s F(-s) ds, and
        between two nodes F's bound is constant, so the bound is the sum of (b^2 - a^2) x that bound over
        the node intervals below 0, divided by the second moment. It takes no eigenvalue to lie below the
        lowest node (Lanczos's extreme Ritz values converge first; below them F's bound would be the lowest
        node's weight out to lambda_min). The estimate is the ratio of the probes' means; its standard
        error is the probes' (delta method)."""
        nodes = np.nan_to_num(self.nodes)
        num = np.sum(self.weights * np.where(nodes < 0, nodes ** 2, 0.0), axis=1)
        den = np.sum(self.weights * nodes ** 2, axis=1)
        if not np.all(den > 0):
            return math.nan, math.nan, math.nan
        share = float(num.mean() / den.mean())
        if len(num) > 1:
            resid = (num - share * den) / den.mean()
            err = float(resid.std(ddof=1) / math.sqrt(len(num)))
        else:
            err = math.inf
        below = np.sort(np.unique(nodes[nodes < 0]))
        cuts = np.concatenate([below, [0.0]])  # interval ends, most negative first
        bound = 0.0
        for a, b in zip(cuts[:-1], cuts[1:]):  # F(t) for t in (a, b) is bounded by the bound at their middle
            bound += (a * a - b * b) * self._edge_bound(0.5 * (a + b))
        return share, err, float(bound / den.mean())


#: Top eigenvalues the outlier rule of :func:`spectrum_summary` searches for the bulk's edge.
SUMMARY_TOP_K = 16


def spectrum_summary(top_values: Sequence[float], top_converged: Sequence[bool], spectrum: Spectrum,
                     *, resolution: float = 1e-3) -> dict[str, float]:
    """The spectrum's summary numbers, by a stated rule.

    **Outliers and the bulk's edge.** Of the top eigenvalues lambda_1 >= ... >= lambda_k (Lanczos,
    each converged), the outliers are those above the largest *ratio* gap lambda_i / lambda_(i+1),
    i = 1 .. k-1 (a trained net's outliers and its bulk differ in scale, not by a fixed distance: the
    gap is judged relative to the eigenvalues, so the rule does not depend on the loss's units).
    ``outliers`` = i*, ``bulk_edge`` = lambda_(i*+1), ``outlier_ratio`` = lambda_1 / bulk_edge. The
    split decides only with the edge inside the list, every eigenvalue down to lambda_(i*+2) positive
    and every one down to the edge converged; otherwise the three are NaN (raise k). ``gap_ratio`` is the chosen gap
    lambda_i* / lambda_(i*+1) and ``gap_runner_up`` the next largest ratio among the k: how clearly
    the split stands out.

    **A cross-check by the density.** ``slq_count_above_edge`` is the SLQ count of eigenvalues at or
    above the geometric middle of the chosen gap, with its standard error over probes
    (``_err``) and its quadrature bound (``_bound``): it must agree with ``outliers`` within them.

    **Negative mass.** :meth:`Spectrum.negative_mass` at ``resolution`` (``negative_mass``,
    ``negative_mass_err``, ``negative_mass_bound``), and the negative share of the squared spectrum,
    :meth:`Spectrum.negative_share` (``negative_share`` with its ``_err`` and ``_bound``): at a minimum
    whose Hessian is nearly null, most of the mass sits within rounding of 0 and its side of 0 is
    noise, so the mass's bound there is most of it; the share weighs each eigenvalue by its square.

    Args:
        top_values: (k,) the top eigenvalues, largest first (nats / unit^2).
        top_converged: (k,) whether each converged.
        spectrum: the SLQ run of the same Hessian.
    Returns:
        flat name -> number (NaN where the rule does not decide).
    """
    lam = np.asarray(top_values, float)
    ok = np.asarray(top_converged, bool)
    if lam.ndim != 1 or lam.shape != ok.shape or len(lam) < 3:
        raise ValueError(f"expected k >= 3 top eigenvalues with a converged flag each; got {lam.shape} and {ok.shape}")
    if np.any(np.diff(lam) > 0):
        raise ValueError("top_values must be sorted largest first")
    out = dict.fromkeys(("outliers", "bulk_edge", "outlier_ratio", "gap_ratio", "gap_runner_up",
                         "slq_count_above_edge", "slq_count_above_edge_err", "slq_count_above_edge_bound"), math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where((lam[:-1] > 0) & (lam[1:] > 0), lam[:-1] / lam[1:], np.nan)
    if np.isfinite(ratios).any():
        i = int(np.nanargmax(ratios))
        if i + 2 < len(lam) and ok[: i + 2].all() and lam[i + 2] > 0:
            rest = np.delete(ratios, i)
            out.update(outliers=float(i + 1), bulk_edge=float(lam[i + 1]), outlier_ratio=float(lam[0] / lam[i + 1]),
                       gap_ratio=float(ratios[i]), gap_runner_up=float(np.nanmax(rest)) if np.isfinite(rest).any()
                       else math.nan)
            count, err, bound = spectrum.count(math.sqrt(lam[i] * lam[i + 1]), math.inf)
            out.update(slq_count_above_edge=count, slq_count_above_edge_err=err, slq_count_above_edge_bound=bound)
    mass, err, bound = spectrum.negative_mass(resolution)
    out.update(negative_mass=mass, negative_mass_err=err, negative_mass_bound=bound)
    share, err, bound = spectrum.negative_share()
    out.update(negative_share=share, negative_share_err=err, negative_share_bound=bound)
    return out


#: Defaults of :func:`spectrum_slq` and ``python -m lossbench spectrum``: 80 steps resolve the outliers of
#: a ResNet's Hessian to the residual tolerance and make every probe's first 159 moments exact; 4 probes
#: give the moments' standard error (the sampling over probes, reported with every number).
SLQ_STEPS = 80
SLQ_PROBES = 4


def spectrum_slq(matvec: Callable[[Tensor], Tensor], dim: int, *, probes: int = SLQ_PROBES, steps: int = SLQ_STEPS,
                 seed: int = 0, device: torch.device | str = "cpu", resume: Spectrum | None = None,
                 on_probe: Callable[[Spectrum], None] | None = None) -> Spectrum:
    """:class:`Spectrum` of a symmetric ``matvec`` over flat float64 vectors of size ``dim``: ``probes``
    Rademacher start vectors (drawn in turn from one CPU generator seeded ``seed``), ``steps`` Lanczos
    steps each.

    ``resume``: the probes of an interrupted run with the same settings are kept (its generator is
    advanced past their draws, so the result is the uninterrupted run's); ``on_probe`` is called with
    the spectrum so far after every probe (e.g. to write it to a file)."""
    if probes < 1:
        raise ValueError(f"probes={probes}: expected at least 1 (2 or more for a standard error)")
    g = torch.Generator().manual_seed(seed)
    steps = min(steps, dim)
    nodes = np.full((probes, steps), np.nan)
    weights = np.zeros((probes, steps))
    first = 0
    if resume is not None:
        if resume.dim != dim or resume.nodes.shape[1] != steps or resume.probes > probes:
            raise ValueError(f"cannot resume: the stored run has {resume.probes} probes of {resume.nodes.shape[1]} "
                             f"steps on an operator of size {resume.dim}; this one asks for {probes} x {steps} on "
                             f"size {dim}")
        first = resume.probes
        nodes[:first], weights[:first] = resume.nodes, resume.weights
    for p in range(probes):
        v = torch.randint(0, 2, (dim,), generator=g) * 2 - 1
        if p < first:
            continue  # drawn only to advance the generator as the first run did
        theta, S = lanczos_tridiagonal(matvec, v.to(device=device, dtype=torch.float64), steps).ritz()
        nodes[p, : len(theta)] = theta
        weights[p, : len(theta)] = S[0, :] ** 2
        if on_probe is not None:
            on_probe(Spectrum(nodes[: p + 1].copy(), weights[: p + 1].copy(), dim))
    return Spectrum(nodes, weights, dim)


@dataclass(frozen=True)
class EigenPairs:
    """Eigenpairs of the loss Hessian from one Lanczos run.

    Attributes:
        values: (k,) eigenvalues (nats / unit^2), in the order asked for (``top``: largest first;
            ``minmax``: largest, then smallest).
        vectors: k directions keyed by parameter name, unit norm over the Hessian's parameters.
        residuals: (k,) ||H v - lambda v|| of each pair (Parlett's bound, nats / unit^2).
        gaps: (k,) distance to the nearest other Ritz value: the vector's angle to the true eigenvector
            is at most residual / gap (Davis-Kahan).
        converged: (k,) residual <= tol * |lambda| for each pair.
        iterations: Lanczos steps taken.
    """

    values: np.ndarray
    vectors: list[Direction]
    residuals: np.ndarray
    gaps: np.ndarray
    converged: np.ndarray
    iterations: int
    tol: float

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))


EIGENPAIR_KINDS = ("top", "minmax")


def _wanted(k: int, which: str, m: int) -> list[int]:
    if which == "top":
        return [m - 1 - j for j in range(min(k, m))]
    if which == "minmax":
        return [m - 1, 0] if m > 1 else [0]
    raise ValueError(f"which={which!r}: expected one of {EIGENPAIR_KINDS}")


def hessian_eigenpairs(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, k: int = 2,
                       which: str = "top", ignore: str = "biasbn", max_iter: int = 200, tol: float = 1e-3,
                       seed: int = 0) -> EigenPairs:
    """The top ``k`` eigenpairs of the loss Hessian (``which="top"``), or its largest and smallest
    (``"minmax"``, k = 2), from one Lanczos run whose basis is kept (max_iter x n float64 numbers)
    and which stops once every wanted pair's residual is below ``tol`` x its own |lambda|."""
    check_choice("which", which, EIGENPAIR_KINDS)
    if which == "minmax" and k != 2:
        raise ValueError(f"k={k}: which='minmax' gives the largest and the smallest, k=2")
    if k < 1:
        raise ValueError(f"k={k}: expected at least 1 eigenpair")
    if not 0 < tol < 1:
        raise ValueError(f"tol={tol} must be in (0, 1)")
    matvec, like = _operator(model, loss_fn, batches, ignore)
    dim = sum(p.numel() for p in like.values())
    if k > dim:
        raise ValueError(f"k={k} but the Hessian has {dim} rows")
    device = next(iter(like.values())).device

    def done(run: LanczosRun) -> bool:
        if len(run.alphas) < k + 1:
            return False
        theta, S = run.ritz()
        res = run.residuals(S)
        return all(res[j] <= tol * abs(theta[j]) for j in _wanted(k, which, len(theta)))

    start = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)
    run = lanczos_tridiagonal(matvec, start, max_iter, keep_basis=True, stop=done)
    theta, S = run.ritz()
    res = run.residuals(S)
    idx = _wanted(k, which, len(theta))
    gaps = np.array([np.min(np.abs(np.delete(theta, j) - theta[j])) if len(theta) > 1 else math.inf for j in idx])
    vectors = []
    for j in idx:
        y = run.basis.T @ torch.as_tensor(S[:, j], dtype=torch.float64, device=run.basis.device)
        y = y / y.norm()
        vectors.append({n: t.to(like[n].dtype).clone() for n, t in _unflatten(y, like).items()})
    converged = np.array([res[j] <= tol * abs(theta[j]) for j in idx])
    return EigenPairs(theta[idx], vectors, res[idx], gaps, converged, len(run.alphas), tol)


def hessian_spectrum(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], *, probes: int = SLQ_PROBES,
                     steps: int = SLQ_STEPS, ignore: str = "biasbn", seed: int = 0, resume: Spectrum | None = None,
                     on_probe: Callable[[Spectrum], None] | None = None) -> Spectrum:
    """:func:`spectrum_slq` of the loss Hessian of ``model`` at its weights (the products of :func:`hvp`:
    eval mode, the whole of ``batches``, over :func:`hessian_params`)."""
    matvec, like = _operator(model, loss_fn, batches, ignore)
    dim = sum(p.numel() for p in like.values())
    device = next(iter(like.values())).device
    return spectrum_slq(matvec, dim, probes=probes, steps=steps, seed=seed, device=device, resume=resume,
                        on_probe=on_probe)


def eigenvector_directions(model: nn.Module, pairs: EigenPairs, *, allow_unconverged: bool = False
                           ) -> tuple[Direction, Direction]:
    """(delta, eta) for a surface on the plane of two Hessian eigenvectors: each keyed by every
    parameter (a ``weights`` direction), the eigenvector on the Hessian's parameters and 0 elsewhere
    (biases and BN under ``ignore="biasbn"``). Unit norm: alpha is a distance in parameter space, where a
    filter-normalised direction has the norm of theta's weights (compare alpha with that, not with 1).

    Unconverged vectors are refused (their plane is not the eigenvectors' plane) unless asked for."""
    if len(pairs.vectors) != 2:
        raise ValueError(f"a plane needs 2 eigenvectors; got {len(pairs.vectors)}")
    if not pairs.all_converged and not allow_unconverged:
        raise ValueError("the eigenvectors did not converge (residuals "
                         + ", ".join(f"{r:.2g}" for r in pairs.residuals)
                         + f" against tol {pairs.tol:g} x |lambda| after {pairs.iterations} Lanczos steps): "
                         "raise max_iter (CLI: --max-iter) or loosen tol")
    theta = {n: p.detach() for n, p in model.named_parameters()}

    def full(v: Direction) -> Direction:
        return {n: (v[n].to(t) if n in v else torch.zeros_like(t)) for n, t in theta.items()}

    return full(pairs.vectors[0]), full(pairs.vectors[1])
