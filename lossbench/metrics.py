"""Sharpness and convexity numbers from surfaces: numpy arrays in, floats out.

All 2D inputs are indexed ``[i_alpha, j_beta]``; coordinates are in units of the (filter-normalised)
directions; losses in nats. Formulas (also printed in the report):

* ``loss_center``, ``acc_center``: the value at the grid point nearest (0, 0).
* ``curv_max``, ``curv_min``: eigenvalues of the Hessian H of the least-squares quadratic
  ``q = c + g.x + x^T H x / 2`` fitted to the points with ``|alpha|, |beta| <= patch`` (nats / unit^2).
* ``sharpness_<eps>``: Keskar et al.'s eps-sharpness on the grid,
  ``100 * (max_{|alpha|,|beta| <= eps} L - L(0)) / (1 + L(0))`` (percent).
* ``basin_radius``: mean over 64 rays from the centre of the distance to the first crossing of the
  level ``L(0) + tau`` (bilinear interpolation; a ray that leaves the grid first counts its length
  inside the grid); ``basin_area``: area (unit^2) of the connected set ``{L <= L(0) + tau}`` that
  contains the centre. tau = 0.1 is the paper's "0.1-level contour".
* ``nonconvex_fraction``: share of the interior points within ``radius`` of the centre *and below
  the level* ``L(0) + ln 10`` (2.30 nats: where the perturbed net still predicts better than a
  uniform guess over 10 classes; above it the surface rises into walls of 10-130 nats whose bends,
  where the loss saturates, are non-convex for every net and measure how soon a net diverges, not the
  chaos the paper's contours show) whose finite-difference 2x2 Hessian has
  ``lambda_min < -0.1 |lambda_max|`` and ``lambda_min < -1e-4`` (significantly negative: relative to
  the local curvature, and above float noise); ``nonconvex_points``: how many points that region holds
  (the fraction's binomial error).
* ``local_minima``: interior points strictly below all 8 neighbours, the centre point excluded.
* ``roughness``: total variation along every grid row and column divided by the least variation a
  unimodal line with the same end points and minimum would have,
  ``sum TV(line) / sum [(L_first - min) + (L_last - min)]``: exactly 1 when every grid line falls then
  rises (any convex or quasi-convex bowl), larger for oscillating, chaotic surfaces.

1D lines get ``loss_center``, ``acc_center``, ``curv`` (second derivative of a fitted parabola),
``sharpness_<eps>``, ``basin_radius`` (mean of the left and right crossing distances),
``local_minima`` and ``roughness``. Every metric but ``loss_center``, ``acc_center`` and the
sharpness (whose denominator is 1 + L(0), by Keskar's definition) is unchanged by adding a constant to
the surface.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

TAU = 0.1
EPSILONS = (0.25, 0.5, 1.0)
PATCH = 0.25
RADIUS = 1.0
NONCONVEX_LEVEL = math.log(10)
N_RAYS = 64
NONCONVEX_REL = 0.1
NONCONVEX_ABS = 1e-4


def _check_grid(alphas: np.ndarray, betas: np.ndarray | None, loss: np.ndarray) -> None:
    shape = (len(alphas),) if betas is None else (len(alphas), len(betas))
    if loss.shape != shape:
        raise ValueError(f"loss has shape {loss.shape}; the coordinates give {shape} ([i_alpha, j_beta])")
    if not np.all(np.isfinite(loss)):
        bad = int(np.sum(~np.isfinite(loss)))
        raise ValueError(f"surface has {bad} non-finite values; metrics need a finite surface")
    for name, c in (("alphas", alphas), ("betas", betas)):
        if c is not None and (len(c) < 3 or np.any(np.diff(c) <= 0)):
            raise ValueError(f"{name} must be increasing with at least 3 points; got {len(c)}")


def center_index(alphas: np.ndarray, betas: np.ndarray | None = None) -> tuple[int, ...]:
    i = int(np.argmin(np.abs(alphas)))
    return (i,) if betas is None else (i, int(np.argmin(np.abs(betas))))


def quadratic_fit_hessian(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray, *, patch: float = PATCH) -> np.ndarray:
    """The 2x2 Hessian (nats/unit^2) of the least-squares quadratic over ``|alpha|, |beta| <= patch``."""
    aa, bb = np.meshgrid(alphas, betas, indexing="ij")
    inside = (np.abs(aa) <= patch + 1e-12) & (np.abs(bb) <= patch + 1e-12)
    if inside.sum() < 6 or len(np.unique(aa[inside])) < 3 or len(np.unique(bb[inside])) < 3:
        raise ValueError(
            f"the central patch |alpha|, |beta| <= {patch} holds {int(inside.sum())} grid points; a quadratic fit "
            "needs at least 3 per axis: use a finer grid or a larger patch"
        )
    a, b, z = aa[inside], bb[inside], loss[inside]
    design = np.stack([np.ones_like(a), a, b, 0.5 * a * a, a * b, 0.5 * b * b], axis=1)
    coef, *_ = np.linalg.lstsq(design, z, rcond=None)
    return np.array([[coef[3], coef[4]], [coef[4], coef[5]]])


def sharpness(alphas: np.ndarray, betas: np.ndarray | None, loss: np.ndarray, eps: float) -> float:
    """Keskar eps-sharpness on the grid, in percent."""
    c = center_index(alphas, betas)
    l0 = float(loss[c])
    if betas is None:
        box = np.abs(alphas) <= eps + 1e-12
    else:
        aa, bb = np.meshgrid(alphas, betas, indexing="ij")
        box = (np.abs(aa) <= eps + 1e-12) & (np.abs(bb) <= eps + 1e-12)
    return 100.0 * (float(loss[box].max()) - l0) / (1.0 + l0)


def basin_radius(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray, *, tau: float = TAU,
                 n_rays: int = N_RAYS, samples: int = 400) -> float:
    """Mean distance from the centre to the level L(0) + tau along ``n_rays`` rays (units of alpha)."""
    interp = RegularGridInterpolator((alphas, betas), loss, method="linear")
    c = center_index(alphas, betas)
    a0, b0 = alphas[c[0]], betas[c[1]]
    level = loss[c] + tau
    radii = []
    for theta in np.linspace(0, 2 * np.pi, n_rays, endpoint=False):
        ca, sb = math.cos(theta), math.sin(theta)
        # distance to the grid's edge along this ray
        limits = []
        for start, step, lo, hi in ((a0, ca, alphas[0], alphas[-1]), (b0, sb, betas[0], betas[-1])):
            if step > 1e-12:
                limits.append((hi - start) / step)
            elif step < -1e-12:
                limits.append((lo - start) / step)
        r_max = min(limits)
        r = np.linspace(0, r_max, samples)
        values = interp(np.stack([a0 + r * ca, b0 + r * sb], axis=1))
        above = np.nonzero(values >= level)[0]
        if len(above) == 0:
            radii.append(r_max)
        else:
            k = above[0]
            if k == 0:
                radii.append(0.0)
            else:  # linear interpolation of the crossing between samples k-1 and k
                v0, v1 = values[k - 1], values[k]
                radii.append(r[k - 1] + (r[k] - r[k - 1]) * (level - v0) / (v1 - v0))
    return float(np.mean(radii))


def basin_area(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray, *, tau: float = TAU) -> float:
    """Area (unit^2) of the connected sublevel set {L <= L(0) + tau} containing the centre."""
    c = center_index(alphas, betas)
    labels, _ = ndimage.label(loss <= loss[c] + tau)
    cell = float(np.mean(np.diff(alphas)) * np.mean(np.diff(betas)))
    return float(np.sum(labels == labels[c])) * cell


def finite_difference_hessians(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """(n_alpha-2, n_beta-2, 2, 2) central-difference Hessians at the interior points."""
    da = np.diff(alphas).mean()
    db = np.diff(betas).mean()
    L = loss
    h11 = (L[2:, 1:-1] - 2 * L[1:-1, 1:-1] + L[:-2, 1:-1]) / da**2
    h22 = (L[1:-1, 2:] - 2 * L[1:-1, 1:-1] + L[1:-1, :-2]) / db**2
    h12 = (L[2:, 2:] - L[2:, :-2] - L[:-2, 2:] + L[:-2, :-2]) / (4 * da * db)
    return np.stack([np.stack([h11, h12], -1), np.stack([h12, h22], -1)], -2)


def nonconvex_region(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray, *, radius: float = RADIUS,
                     level: float = NONCONVEX_LEVEL) -> np.ndarray:
    """(n_alpha-2, n_beta-2) bool: the interior points within ``radius`` of the centre whose loss is at
    most ``level`` nats above the centre's."""
    aa, bb = np.meshgrid(alphas[1:-1], betas[1:-1], indexing="ij")
    c = center_index(alphas, betas)
    return (np.hypot(aa, bb) <= radius + 1e-12) & (loss[1:-1, 1:-1] <= loss[c] + level)


def nonconvex_fraction(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray, *, radius: float = RADIUS,
                       level: float = NONCONVEX_LEVEL) -> float:
    """Share of the :func:`nonconvex_region` whose local Hessian has a significantly negative eigenvalue."""
    eig = np.linalg.eigvalsh(finite_difference_hessians(alphas, betas, loss))  # ascending
    eig_min, eig_max = eig[..., 0], eig[..., 1]
    inside = nonconvex_region(alphas, betas, loss, radius=radius, level=level)
    if not inside.any():
        raise ValueError(f"no interior grid point lies within radius {radius} and {level} nats of the centre")
    bad = (eig_min < -NONCONVEX_REL * np.abs(eig_max)) & (eig_min < -NONCONVEX_ABS)
    return float(bad[inside].mean())


def local_minima(loss: np.ndarray, center: tuple[int, ...]) -> int:
    """Interior points strictly below all their neighbours (8 in 2D, 2 in 1D), the centre excluded."""
    if loss.ndim == 1:
        mins = (loss[1:-1] < loss[:-2]) & (loss[1:-1] < loss[2:])
        idx = [(i + 1,) for i in np.nonzero(mins)[0]]
    else:
        inner = loss[1:-1, 1:-1]
        mins = np.ones_like(inner, dtype=bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di or dj:
                    mins &= inner < loss[1 + di : loss.shape[0] - 1 + di, 1 + dj : loss.shape[1] - 1 + dj]
        idx = [(i + 1, j + 1) for i, j in zip(*np.nonzero(mins))]
    return sum(1 for i in idx if tuple(i) != tuple(center))


def _line_roughness(lines: list[np.ndarray]) -> float:
    tv = sum(float(np.abs(np.diff(x)).sum()) for x in lines)
    unimodal = sum(float((x[0] - x.min()) + (x[-1] - x.min())) for x in lines)
    if unimodal <= 0.0:
        return 1.0 if tv <= 0.0 else math.inf
    return tv / unimodal


def roughness(loss: np.ndarray) -> float:
    """Total variation over the grid lines / that of unimodal lines with the same ends and minimum."""
    if loss.ndim == 1:
        return _line_roughness([loss])
    return _line_roughness([*loss, *loss.T])


def surface_metrics(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray, acc: np.ndarray | None = None, *,
                    tau: float = TAU, epsilons: tuple[float, ...] = EPSILONS, patch: float = PATCH,
                    radius: float = RADIUS) -> dict[str, float]:
    """Every 2D metric of the module docstring, as a flat dict of floats."""
    alphas, betas, loss = np.asarray(alphas, float), np.asarray(betas, float), np.asarray(loss, float)
    _check_grid(alphas, betas, loss)
    c = center_index(alphas, betas)
    eig = np.linalg.eigvalsh(quadratic_fit_hessian(alphas, betas, loss, patch=patch))
    out = {
        "loss_center": float(loss[c]),
        "curv_max": float(eig[1]),
        "curv_min": float(eig[0]),
        "basin_radius": basin_radius(alphas, betas, loss, tau=tau),
        "basin_area": basin_area(alphas, betas, loss, tau=tau),
        "nonconvex_fraction": nonconvex_fraction(alphas, betas, loss, radius=radius),
        "nonconvex_points": float(nonconvex_region(alphas, betas, loss, radius=radius).sum()),
        "local_minima": float(local_minima(loss, c)),
        "roughness": roughness(loss),
    }
    if acc is not None:
        out["acc_center"] = float(np.asarray(acc)[c])
    for eps in epsilons:
        out[f"sharpness_{eps:g}"] = sharpness(alphas, betas, loss, eps)
    return out


def interpolation_summary(alphas: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """The 1D interpolation theta(alpha) = theta_a + alpha (theta_b - theta_a) in numbers: the loss (nats)
    at the two solutions (alpha 0 and 1), the barrier between them (the highest loss on [0, 1] above the
    higher end) and how many points are not finite. Extrapolating the BatchNorm running variances
    (alpha < 0 or > 1) can drive one below zero, so points outside [0, 1] may be NaN; they are counted,
    not fatal, and the barrier uses [0, 1] only (there the variances are convex combinations)."""
    alphas, loss = np.asarray(alphas, float), np.asarray(loss, float)
    if alphas.shape != loss.shape or alphas.ndim != 1:
        raise ValueError(f"alphas {alphas.shape} and loss {loss.shape} must be the same 1-D shape")
    i0, i1 = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(alphas - 1.0)))
    inside = (alphas >= -1e-12) & (alphas <= 1 + 1e-12)
    if not np.isfinite(loss[inside]).all():
        raise ValueError("the loss is not finite between the two solutions (alpha in [0, 1])")
    ends = max(loss[i0], loss[i1])
    return {"loss_start": float(loss[i0]), "loss_end": float(loss[i1]),
            "barrier": float(np.max(loss[inside]) - ends), "nonfinite_points": float((~np.isfinite(loss)).sum())}


def line_metrics(alphas: np.ndarray, loss: np.ndarray, acc: np.ndarray | None = None, *, tau: float = TAU,
                 epsilons: tuple[float, ...] = EPSILONS, patch: float = PATCH) -> dict[str, float]:
    """The 1D analogues along one direction."""
    alphas, loss = np.asarray(alphas, float), np.asarray(loss, float)
    _check_grid(alphas, None, loss)
    c = center_index(alphas)
    near = np.abs(alphas) <= patch + 1e-12
    if near.sum() < 3:
        raise ValueError(f"the central patch |alpha| <= {patch} holds {int(near.sum())} points; need 3")
    curv = 2.0 * np.polyfit(alphas[near], loss[near], 2)[0]
    level = loss[c] + tau
    dist = []
    for side in (slice(c[0], None), slice(c[0], None, -1)):
        a, v = alphas[side], loss[side]
        above = np.nonzero(v >= level)[0]
        if len(above) == 0:
            dist.append(abs(a[-1] - a[0]))
        else:
            k = above[0]
            frac = 0.0 if k == 0 else (level - v[k - 1]) / (v[k] - v[k - 1])
            dist.append(abs((a[k - 1] if k else a[0]) - a[0]) + frac * abs(a[k] - a[k - 1] if k else 0.0))
    out = {
        "loss_center": float(loss[c]),
        "curv": float(curv),
        "basin_radius": float(np.mean(dist)),
        "local_minima": float(local_minima(loss, c)),
        "roughness": roughness(loss),
    }
    if acc is not None:
        out["acc_center"] = float(np.asarray(acc)[c])
    for eps in epsilons:
        out[f"sharpness_{eps:g}"] = sharpness(alphas, None, loss, eps)
    return out


def eig_ratio(min_eig: np.ndarray | float, max_eig: np.ndarray | float) -> np.ndarray:
    """|lambda_min / lambda_max| elementwise, the paper's convexity measure (NaN where either is NaN or
    lambda_max is 0). Shapes broadcast; a 0-d array for scalars."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(np.asarray(min_eig, float) / np.asarray(max_eig, float))
    return np.where(np.isfinite(r), r, np.nan)


def eig_ratio_summary(alphas: np.ndarray, betas: np.ndarray, min_eig: np.ndarray, max_eig: np.ndarray,
                      loss: np.ndarray | None = None, *, tau: float = TAU) -> dict[str, float]:
    """Summaries of the convexity map r = |lambda_min / lambda_max| (points where the solve did not
    converge are NaN and left out): ``eig_ratio_mean``, ``eig_ratio_above_0.1`` (share of points with
    r > 0.1, i.e. markedly non-convex), ``eig_ratio_center``, and with ``loss`` the mean of r inside the
    0.1-level basin (``eig_ratio_basin``)."""
    r = eig_ratio(min_eig, max_eig)
    ok = np.isfinite(r)
    if not ok.any():
        raise ValueError("no grid point has a converged eigenvalue pair")
    c = center_index(np.asarray(alphas, float), np.asarray(betas, float))  # the grid point nearest (0, 0)
    out = {
        "eig_ratio_mean": float(np.nanmean(r)),
        "eig_ratio_above_0.1": float(np.mean(r[ok] > 0.1)),
        "eig_ratio_center": float(r[c]),
        "eig_converged_fraction": float(ok.mean()),
    }
    if loss is not None:
        basin = (np.asarray(loss) <= np.asarray(loss)[c] + tau) & ok
        out["eig_ratio_basin"] = float(np.mean(r[basin])) if basin.any() else float("nan")
    return out
