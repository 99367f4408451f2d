import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lossbench.metrics import line_metrics, roughness, surface_metrics

AX = np.linspace(-1, 1, 41)
A, B = np.meshgrid(AX, AX, indexing="ij")
SHIFT_INVARIANT = ("curv_max", "curv_min", "basin_radius", "basin_area", "nonconvex_fraction", "local_minima",
                   "roughness")


def bowl(a=1.0, b=1.0, l0=0.5):
    return l0 + a * A**2 + b * B**2


def test_convex_quadratic():
    m = surface_metrics(AX, AX, bowl(1.0, 3.0))
    assert m["curv_max"] == pytest.approx(6.0, rel=1e-6) and m["curv_min"] == pytest.approx(2.0, rel=1e-6)
    assert m["nonconvex_fraction"] == 0.0 and m["local_minima"] == 0.0
    assert m["roughness"] == pytest.approx(1.0)
    assert m["loss_center"] == pytest.approx(0.5)
    # eps-sharpness: the box corner (eps, eps) is the maximum
    assert m["sharpness_0.5"] == pytest.approx(100 * (0.25 + 0.75) / 1.5)


def test_isotropic_bowl_basin_matches_the_circle():
    m = surface_metrics(AX, AX, bowl(2.0, 2.0))
    r = math.sqrt(0.1 / 2.0)  # 2 r^2 = tau
    assert m["basin_radius"] == pytest.approx(r, rel=0.03)
    assert m["basin_area"] == pytest.approx(math.pi * r * r, rel=0.25)  # counted in grid cells


def test_saddle_is_nonconvex_everywhere():
    m = surface_metrics(AX, AX, A**2 - B**2)
    assert m["curv_min"] == pytest.approx(-2.0, rel=1e-6)
    assert m["nonconvex_fraction"] == 1.0
    assert m["roughness"] > 1.5


def test_rippled_bowl_is_rough_with_local_minima():
    ripple = bowl() + 0.1 * np.sin(12 * A) * np.sin(12 * B)
    smooth, rough = surface_metrics(AX, AX, bowl()), surface_metrics(AX, AX, ripple)
    # the ripples add variation on top of the bowl's rise of ~2 nats per line: a few percent here
    assert smooth["roughness"] == pytest.approx(1.0) and rough["roughness"] > 1.03
    assert rough["local_minima"] >= 4 and rough["nonconvex_fraction"] > 0.2


def test_a_flat_surface_has_the_whole_grid_as_basin():
    m = surface_metrics(AX, AX, np.full(A.shape, 2.3))
    assert m["roughness"] == 1.0 and m["nonconvex_fraction"] == 0.0 and m["sharpness_1"] == 0.0
    assert m["basin_area"] == pytest.approx(4.0, rel=0.06)


@given(
    a=st.floats(0.1, 10), b=st.floats(0.1, 10), c=st.floats(-1, 1).filter(lambda v: abs(v) < 0.9),
    shift=st.floats(-100, 100),
)
def test_recovers_curvature_and_ignores_constant_shifts(a, b, c, shift):
    """Any convex quadratic (cross term bounded so it stays convex); metrics that should be shift-free are."""
    cross = c * math.sqrt(a * b)
    z = 0.3 + a * A**2 + b * B**2 + 2 * cross * A * B
    m, shifted = surface_metrics(AX, AX, z), surface_metrics(AX, AX, z + shift)
    expected = np.linalg.eigvalsh(2 * np.array([[a, cross], [cross, b]]))
    assert m["curv_min"] == pytest.approx(expected[0], rel=1e-5, abs=1e-8)
    assert m["curv_max"] == pytest.approx(expected[1], rel=1e-5)
    assert m["nonconvex_fraction"] == 0.0 and m["roughness"] == pytest.approx(1.0)
    for key in SHIFT_INVARIANT:
        # grid points lying exactly on the level L(0) + tau may flip under float rounding: a few cells
        slack = 16 * 0.05**2 if key == "basin_area" else 1e-6
        assert shifted[key] == pytest.approx(m[key], rel=1e-6, abs=slack), key


def test_line_metrics():
    x = np.linspace(-1, 1, 51)
    m = line_metrics(x, 1 + 2 * x**2, acc=np.full(51, 0.9))
    assert m["curv"] == pytest.approx(4.0) and m["roughness"] == pytest.approx(1.0)
    assert m["basin_radius"] == pytest.approx(math.sqrt(0.05), rel=0.02)
    assert m["acc_center"] == 0.9 and m["local_minima"] == 0
    wiggly = line_metrics(x, 1 + 2 * x**2 + 0.2 * np.sin(30 * x))
    assert wiggly["roughness"] > 1.5 and wiggly["local_minima"] >= 2


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="non-finite"):
        surface_metrics(AX, AX, np.where(A > 0.5, np.nan, bowl()))
    with pytest.raises(ValueError, match="shape \\(41, 40\\)"):
        surface_metrics(AX, AX, bowl()[:, :-1])
    coarse = np.linspace(-1, 1, 5)
    with pytest.raises(ValueError, match="finer grid or a larger patch"):
        surface_metrics(coarse, coarse, np.zeros((5, 5)), patch=0.1)


def test_roughness_of_unimodal_lines_is_one():
    assert roughness(np.array([3.0, 1.0, 0.0, 0.5, 4.0])) == 1.0
    assert roughness(np.array([3.0, 1.0, 2.0, 0.0, 4.0])) > 1.0


def test_eig_ratio_centre_is_the_grid_point_nearest_the_origin_on_an_asymmetric_grid():
    """The middle index of [-1, 0, 1, 2, 3] is alpha = 1; the centre is alpha = 0 (index 1)."""
    from lossbench.metrics import eig_ratio_summary

    alphas = np.array([-1.0, 0.0, 1.0, 2.0, 3.0])
    betas = np.array([-2.0, -1.0, 0.0])
    max_eig = np.ones((5, 3))
    min_eig = np.full((5, 3), -0.5)
    min_eig[1, 2] = -0.01  # the origin
    out = eig_ratio_summary(alphas, betas, min_eig, max_eig)
    assert out["eig_ratio_center"] == pytest.approx(0.01)


def test_interpolation_summary_counts_extrapolated_nans_and_measures_the_barrier():
    from lossbench.metrics import interpolation_summary

    alphas = np.linspace(-0.5, 1.5, 9)  # -0.5, -0.25, 0, ..., 1.5
    loss = np.array([np.nan, 0.4, 0.1, 0.5, 0.9, 0.6, 0.2, 0.7, np.nan])
    s = interpolation_summary(alphas, loss)
    assert s == {"loss_start": 0.1, "loss_end": 0.2, "barrier": pytest.approx(0.7), "nonfinite_points": 2.0}
    loss[4] = np.nan  # between the solutions: a real failure
    with pytest.raises(ValueError, match="not finite between the two solutions"):
        interpolation_summary(alphas, loss)


def test_nonconvex_fraction_counts_only_below_the_level():
    """Issue 21: a convex bowl whose loss saturates far up the walls (the bend of a diverging net) has
    no non-convexity in the landscape the paper reads; the same wiggles low in the bowl do count."""
    from lossbench.metrics import NONCONVEX_LEVEL, nonconvex_fraction, nonconvex_region

    x = np.linspace(-1, 1, 21)
    a, b = np.meshgrid(x, x, indexing="ij")
    r2 = a**2 + b**2
    walls = 40 * np.tanh(r2 / 0.2)  # convex near 0, concave where it saturates (loss > 25 nats there)
    assert nonconvex_fraction(x, x, walls) == 0.0
    assert nonconvex_fraction(x, x, walls, level=np.inf) > 0.2  # mutant: the level removed
    low = 0.5 * r2 + 0.3 * np.cos(9 * a) * np.cos(9 * b)  # chaos below the level
    assert nonconvex_fraction(x, x, low) > 0.2
    assert nonconvex_region(x, x, walls).sum() < nonconvex_region(x, x, low).sum()
    assert NONCONVEX_LEVEL == pytest.approx(np.log(10))
