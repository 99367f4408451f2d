"""Plots a person can read: levels that resolve a basin, a colour bar that says when values are
clipped, few contour labels, the loss's own unit, no empty accuracy axis, a partial file marked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbench import plot
from lossbench.figures import plot_file
from lossbench.store import save_surface
from lossbench.surface import Surface


def _basin(n: int = 31) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A VGG-9-like basin: 0.009 at the centre, 0.53 at its rim, walls up to ~4 nats beyond."""
    a = np.linspace(-1, 1, n)
    aa, bb = np.meshgrid(a, a, indexing="ij")
    z = 0.009 + 0.5 * (aa**2 + 0.6 * bb**2) + 20 * np.maximum(np.abs(aa) - 0.6, 0) ** 2
    return a, a, z


def test_default_levels_resolve_the_basin():
    *_, z = _basin()
    levels = plot.contour_levels(z)
    assert levels[0] == pytest.approx(z.min())
    assert np.all(np.diff(levels) > 0)
    inside = np.sum(levels < 0.53)
    assert inside >= 10, f"only {inside} of {len(levels)} levels inside the basin: {levels}"


def test_asked_levels_stay_linear():
    *_, z = _basin()
    assert np.allclose(np.diff(plot.contour_levels(z, vmin=0.0, vmax=1.0, n=11)), 0.1)
    assert np.allclose(np.diff(plot.contour_levels(z, vmin=0.0, vmax=1.0, vlevel=0.25)), 0.25)


@pytest.mark.parametrize("lo,hi,extend", [(0.0, 10.0, "neither"), (0.0, 1.0, "max"), (0.1, 10.0, "min"),
                                          (0.1, 1.0, "both")])
def test_colour_bar_extends_where_values_are_clipped(lo, hi, extend):
    *_, z = _basin()
    assert plot.extend_of(z, lo, hi) == extend


def test_contour_labels_are_few():
    a, b, z = _basin()
    fig = plot.plot_contour(a, b, z)
    labels = [t for t in fig.axes[0].texts]
    assert 0 < len(labels) <= 12  # a handful of labels, not one per crossing of every level


def test_a_line_without_accuracy_has_no_accuracy_axis():
    a = np.linspace(-1, 1, 11)
    fig = plot.plot_1d(a, {"train": a**2}, {"train": np.full(11, np.nan)}, ylabel=plot.loss_label("mse"))
    assert len(fig.axes) == 1
    assert fig.axes[0].get_ylabel() == "loss (mse)"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["train loss"]
    with_acc = plot.plot_1d(a, {"train": a**2}, {"train": np.full(11, 0.5)})
    assert len(with_acc.axes) == 2 and with_acc.axes[0].get_ylabel() == "loss (nats)"


def test_a_partial_file_is_marked_and_the_3d_view_says_it_is_clipped(tmp_path, monkeypatch):
    a, b, z = _basin(11)
    done = np.ones(z.shape, bool)
    done[8:, :] = False
    values = {"train_loss": np.where(done, z, np.nan), "train_acc": np.where(done, 0.9, np.nan)}
    s = Surface(alphas=a, betas=b, values=values, done=done, attrs={"config_id": "net", "loss": "crossentropy"})
    zero = {"w": torch.zeros(1)}
    save_surface(tmp_path / "p.h5", s, delta=zero, eta=zero)
    drawn = []
    save = plot.save_figure
    monkeypatch.setattr(plot, "save_figure", lambda fig, stem: (drawn.append(fig), save(fig, stem))[1])
    assert plot_file(tmp_path / "p.h5")
    titles = [ax.get_title() for fig in drawn for ax in fig.axes if ax.get_title()]
    assert titles and all(t == "net (partial: 88 of 121 points)" for t in titles), titles
    fig3d = plot.plot_surface_3d(a, b, z, zmax=1.0)
    assert any("clipped at 1" in t.get_text() for t in fig3d.axes[0].texts)
    assert not any("clipped" in t.get_text() for t in plot.plot_surface_3d(a, b, z, zmax=100.0).axes[0].texts)


def test_the_contour_grids_panel_titles_do_not_run_into_each_other():
    """The Figure-5 grid titles each panel with its config id; the authors' ids (53 characters) overran
    their 3-inch panel at 8 pt and printed over the neighbour's title."""
    from lossbench.plot import plot_contour_grid

    axis = np.linspace(-1, 1, 5)
    z = np.add.outer(axis**2, axis**2)
    ids = [["resnet20-sgd-wd0.0005-authors-clip5-bs128-s0", "resnet56-sgd-wd0.0005-authors-clip5-bs128-s0"],
           ["resnet20-noshort-sgd-wd0.0005-authors-clip5-bs128-s0",
            "resnet56-noshort-sgd-wd0.0005-authors-clip5-bs128-s0"]]
    panels = [[{"alphas": axis, "betas": axis, "z": z, "title": t} for t in row] for row in ids]
    fig = plot_contour_grid(panels, row_labels=["with", "without"], col_labels=["ResNet-20", "ResNet-56"])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the figure out (constrained layout) so that the titles have their places
    renderer = canvas.get_renderer()
    axes = fig.axes[:4]  # the panels; the colour bar's axes come after them
    for row in (axes[:2], axes[2:]):
        left, right = (ax.title.get_window_extent(renderer) for ax in row)
        assert left.x1 < right.x0, f"{row[0].get_title()!r} runs into {row[1].get_title()!r}"
    assert "".join(axes[3].get_title().split()) == ids[1][1]  # wrapped, not cut
