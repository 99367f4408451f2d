"""The adaptive grid on a shipped net: what it promises (contours below its level and the non-convexity
there are the full grid's), what it saves (image evaluations, counted), and a mutant that finishes too
few points failing the promise."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import lossbench.adaptive as adaptive
from lossbench.adaptive import adaptive_surface, neighbours, to_finish
from lossbench.data import load_dataset
from lossbench.directions import create_random_direction
from lossbench.evaluate import cross_entropy, make_batches
from lossbench.metrics import finite_difference_hessians
from lossbench.reference_nets import load_reference
from lossbench.surface import compute_surface

ROOT = Path(__file__).resolve().parents[1] / "baselines"
AXIS = np.linspace(-1.5, 1.5, 11)


@functools.lru_cache(maxsize=None)
def _case():
    """The shipped small ResNet-20 (batch 128) over 320 training images: the full grid once."""
    ref = load_reference("resnet20-bs128-s0", ROOT, "small")
    data = load_dataset(ref.config)
    batches = make_batches(data.x_train[:320], data.y_train[:320], 160)
    delta = create_random_direction(ref.model, seed=0)
    eta = create_random_direction(ref.model, seed=1)
    full = compute_surface(ref.model, cross_entropy(), {"train": batches}, delta=delta, eta=eta, alphas=AXIS,
                           betas=AXIS, engine="fast", progress=False)
    return ref.model, batches, delta, eta, full


def _adaptive(level=None):
    model, batches, delta, eta, _ = _case()
    return adaptive_surface(model, cross_entropy(), batches, delta=delta, eta=eta, alphas=AXIS, betas=AXIS,
                            level=level, engine="fast", progress=False)


def _contours(z, levels):
    fig = Figure()
    cs = fig.subplots().contour(AXIS, AXIS, z.T, levels=levels)
    return [np.concatenate(seg) if seg else np.zeros((0, 2)) for seg in cs.allsegs]


def _check_promise(s, full):
    level = s.attrs["adaptive"]["level"]
    exact = s.values["train_exact"].astype(bool)
    below = full.values["train_loss"] < level
    # every point below the level, and its neighbours, is exact and equals the full grid's
    assert exact[neighbours(below)].all()
    np.testing.assert_allclose(s.values["train_loss"][exact], full.values["train_loss"][exact], rtol=1e-6)
    # so contours below the level are the full grid's
    levels = np.linspace(float(np.nanmin(full.values["train_loss"])) + 0.05, level - 1e-3, 6)
    for mine, theirs in zip(_contours(s.values["train_loss"], levels), _contours(full.values["train_loss"], levels)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)  # float rounding of the sums
    # and the finite-difference Hessians (non-convexity) at points below the level
    inner = below.copy()
    inner[[0, -1], :] = inner[:, [0, -1]] = False
    h_mine = finite_difference_hessians(AXIS, AXIS, s.values["train_loss"])
    h_full = finite_difference_hessians(AXIS, AXIS, full.values["train_loss"])
    np.testing.assert_allclose(h_mine[inner[1:-1, 1:-1]], h_full[inner[1:-1, 1:-1]], rtol=1e-4, atol=1e-6)


def test_the_adaptive_grid_keeps_the_contours_below_its_level_and_saves_images():
    *_, full = _case()
    s = _adaptive()
    a = s.attrs["adaptive"]
    print({k: a[k] for k in ("level", "finished_points", "points", "image_evaluations", "full_grid_image_evaluations")})
    _check_promise(s, full)
    assert a["image_evaluations"] < 0.7 * a["full_grid_image_evaluations"]
    assert a["finished_points"] < a["points"]
    # the points left on the slice are walls: above the level by their stated error
    left = ~s.values["train_exact"].astype(bool)
    assert (full.values["train_loss"][left] > a["level"]).all()
    assert (s.values["train_loss_stderr"][left] > 0).all() and (s.values["train_loss_stderr"][~left] == 0).all()


def test_a_mutant_that_finishes_too_few_points_breaks_the_promise(monkeypatch):
    """Finishing only the points whose slice loss is below the level (no error bar, no neighbours):
    the contours below the level are no longer the full grid's."""
    *_, full = _case()

    def greedy(slice_mean, stderr, level, **kw):
        return np.isfinite(slice_mean) & (slice_mean < level)

    monkeypatch.setattr(adaptive, "to_finish", greedy)
    with pytest.raises(AssertionError):
        _check_promise(_adaptive(), full)


def test_finishing_rule_uses_the_error_and_the_neighbours():
    mean = np.array([[1.0, 3.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0, np.nan]])
    err = np.array([[0.1, 0.5, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1, np.nan]])
    done = to_finish(mean, err, 2.0, groups=16, miss=1e-4)  # t = 3.97: 3.0 - 3.97 x 0.5 < 2; NaN: a wall
    assert done.tolist() == [[True, True, True, False, False], [True, True, True, False, False]]
    assert to_finish(np.array([9.0]), np.array([np.nan]), 2.0).tolist() == [True]  # an unknown error
    assert neighbours(np.array([False, True, False, False])).tolist() == [True, True, True, False]


def test_bad_settings_are_refused():
    model, batches, delta, eta, _ = _case()
    with pytest.raises(ValueError, match="groups"):
        adaptive_surface(model, cross_entropy(), batches, delta=delta, alphas=AXIS, groups=1)
    with pytest.raises(ValueError, match="miss"):
        to_finish(np.zeros(3), np.zeros(3), 1.0, miss=0.7)
    with pytest.raises(ValueError, match="cannot make"):
        adaptive_surface(model, cross_entropy(), [(torch.zeros(8, 3, 16, 16), torch.zeros(8, dtype=torch.long))],
                         delta=delta, alphas=AXIS, groups=16, fraction=0.5)


def test_surface_adaptive_on_the_command_line(tmp_path, capsys):
    """`surface --adaptive auto` on a shipped net: a file with the exact mask and the savings, whose
    exact points are the full grid's; a second split is refused in one line."""
    from lossbench.__main__ import main
    from lossbench.store import load_surface

    common = ["surface", "--scale", "small", "--arch", "resnet20", "--engine", "fast", "--x", "-1:1:9", "--y",
              "-1:1:9", "--eval-samples", "320"]
    assert main([*common, "--adaptive", "auto", "-o", str(tmp_path / "a.h5")]) == 0
    out = capsys.readouterr().out
    assert "image evaluations" in out and "of the full grid's" in out
    assert main([*common, "-o", str(tmp_path / "full.h5")]) == 0
    a, full = load_surface(tmp_path / "a.h5"), load_surface(tmp_path / "full.h5")
    exact = a.values["train_exact"].astype(bool)
    assert exact.any() and a.attrs["adaptive"]["image_evaluations"] <= a.attrs["adaptive"]["full_grid_image_evaluations"]
    np.testing.assert_allclose(a.values["train_loss"][exact], full.values["train_loss"][exact], rtol=1e-6)
    assert not any((tmp_path / f"a.h5.{p}.h5").exists() for p in ("slice", "rest"))  # partial files removed
    rc = main([*common, "--adaptive", "2.0", "--dataset", "train,test", "-o", str(tmp_path / "b.h5")])
    err = capsys.readouterr().err
    assert rc != 0 and "--adaptive evaluates the train split" in err and not (tmp_path / "b.h5").exists()
