"""matplotlib figures of surfaces. Each function takes arrays and returns a ``Figure``; the caller saves
it (:func:`save_figure` writes PNG and PDF). 2D arrays are indexed [i_alpha, j_beta]."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

STYLE = {"figsize": (5.0, 4.2), "dpi": 150}
SPLIT_COLORS = {"train": "tab:blue", "test": "tab:red"}
#: Characters per line of a panel title in a grid of 3-inch panels at 8 pt.
TITLE_CHARS = 40


def save_figure(fig: Figure, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` (tight bounding box); returns the paths.

    Each file is written to a temporary name and moved into place, so a full disk or an unwritable folder
    leaves no half-written figure; the error names the figure, the reason and what to do."""
    import errno
    import os

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in formats:
        p = stem.with_name(f"{stem.name}.{ext}")
        tmp = p.with_name(f".{p.name}.tmp")
        try:
            fig.savefig(tmp, bbox_inches="tight", format=ext)
            os.replace(tmp, p)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            fix = ("free some space or write the figures elsewhere (another -o folder)" if exc.errno == errno.ENOSPC
                   else "check that the folder exists and is writable")
            raise OSError(exc.errno, f"could not write the figure {p}: {exc.strerror or exc}; {fix}") from None
        paths.append(p)
    return paths


def loss_label(loss: str | None) -> str:
    """The axis label of a loss: cross-entropy is in nats; another loss is in its own units."""
    return "loss (nats)" if loss in (None, "crossentropy") else f"loss ({loss})"


def plot_1d(alphas: np.ndarray, losses: Mapping[str, np.ndarray], accs: Mapping[str, np.ndarray] | None = None,
            *, title: str = "", xlabel: str = r"$\alpha$", loss_max: float | None = None,
            log: bool = False, ylabel: str = "loss (nats)") -> Figure:
    """Loss curves (solid, left axis) and accuracy curves (dashed, right axis, percent) along one direction.

    Args:
        alphas: (n,) coordinates.
        losses: label (e.g. "train") -> (n,) loss (``ylabel`` says its unit).
        accs: label -> (n,) accuracy as a fraction; drawn in percent. A curve that is NaN throughout
            (a regression loss has no accuracy) is left out, and with it the empty right axis.
    """
    fig = Figure(**STYLE)
    ax = fig.add_subplot()
    for label, loss in losses.items():
        ax.plot(alphas, loss, "-", color=SPLIT_COLORS.get(label), lw=1.6, label=f"{label} loss")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    accs = {k: v for k, v in (accs or {}).items() if np.isfinite(np.asarray(v, dtype=float)).any()}
    if log:
        ax.set_yscale("log")
    if loss_max is not None:
        ax.set_ylim(top=loss_max, bottom=None if log else 0)
    handles, labels = ax.get_legend_handles_labels()
    if accs:
        ax2 = ax.twinx()
        for label, acc in accs.items():
            ax2.plot(alphas, 100 * np.asarray(acc), "--", color=SPLIT_COLORS.get(label), lw=1.2, label=f"{label} accuracy")
        ax2.set_ylabel("accuracy (%)")
        ax2.set_ylim(0, 100)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper center", fontsize=8, frameon=False, ncol=2)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def contour_levels(z: np.ndarray, *, vmin: float | None = None, vmax: float | None = None,
                   vlevel: float | None = None, n: int = 20) -> np.ndarray:
    """Levels from vmin to vmax every vlevel (the authors' --vmin/--vmax/--vlevel).

    Defaults: from the minimum of z up to its 95th percentile, but at most 10 nats above the minimum,
    spaced logarithmically in the height above the minimum (from a thousandth of the range up): a
    basin from 0.009 to 0.53 inside a 10-nat range gets a dozen levels instead of falling inside one
    linear step. With ``vmin``/``vmax`` and no ``vlevel``, ``n`` linear levels.
    """
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return np.linspace(0.0, 1.0, n)
    lo = float(finite.min()) if vmin is None else vmin
    hi = min(float(np.percentile(finite, 95)), lo + 10.0) if vmax is None else vmax
    if hi <= lo:
        hi = lo + 1e-6
    if vlevel is not None:
        return np.arange(lo, hi + vlevel / 2, vlevel)
    if vmin is not None or vmax is not None:
        return np.linspace(lo, hi, n)
    return lo + np.concatenate([[0.0], np.geomspace((hi - lo) / 1000, hi - lo, n - 1)])


def extend_of(z: np.ndarray, lo: float, hi: float) -> str:
    """matplotlib's colour-bar ``extend``: which ends of ``z`` lie beyond the shown range [lo, hi]."""
    finite = z[np.isfinite(z)]
    below = finite.size > 0 and float(finite.min()) < lo
    above = finite.size > 0 and float(finite.max()) > hi
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get((below, above), "neither")


def _label_some(ax, cs, levels: np.ndarray, most: int = 6) -> None:
    """Label at most ``most`` contour levels (every k-th), small and with 3 significant digits: all
    levels labelled pile up where the lines crowd."""
    step = max(1, int(np.ceil(len(levels) / most)))
    ax.clabel(cs, levels=levels[::step], inline=True, fontsize=6, fmt="%.3g")


def _grid(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(alphas, betas, indexing="ij")


def plot_contour(alphas: np.ndarray, betas: np.ndarray, z: np.ndarray, *, levels: np.ndarray | None = None,
                 filled: bool = False, title: str = "", label: str = "loss") -> Figure:
    """Contour lines (or filled contours) of a 2D surface, equal aspect, centre marked."""
    fig = Figure(**STYLE)
    ax = fig.add_subplot()
    xx, yy = _grid(alphas, betas)
    levels = contour_levels(z) if levels is None else levels
    if filled:
        cs = ax.contourf(xx, yy, z, levels=levels, cmap="viridis", extend=extend_of(z, levels[0], levels[-1]))
        fig.colorbar(cs, ax=ax, label=label)
    else:
        cs = ax.contour(xx, yy, z, levels=levels, cmap="viridis", linewidths=1.0)
        _label_some(ax, cs, cs.levels)
    ax.plot([0], [0], "k+", ms=8)
    ax.set_xlabel(r"$\alpha$ ($\delta$)")
    ax.set_ylabel(r"$\beta$ ($\eta$)")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_heatmap(alphas: np.ndarray, betas: np.ndarray, z: np.ndarray, *, vmin: float | None = None,
                 vmax: float | None = None, title: str = "", label: str = "loss") -> Figure:
    """The grid values as an image (alpha to the right, beta up)."""
    fig = Figure(**STYLE)
    ax = fig.add_subplot()
    def edges(c: np.ndarray) -> tuple[float, float]:  # cell edges, so each value fills its own cell
        half = (c[-1] - c[0]) / (len(c) - 1) / 2 if len(c) > 1 else 0.5
        return float(c[0] - half), float(c[-1] + half)

    extent = (*edges(alphas), *edges(betas))
    im = ax.imshow(z.T, origin="lower", extent=extent, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    lo, hi = im.get_clim()
    fig.colorbar(im, ax=ax, label=label, extend=extend_of(z, lo, hi))
    ax.set_xlabel(r"$\alpha$ ($\delta$)")
    ax.set_ylabel(r"$\beta$ ($\eta$)")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_surface_3d(alphas: np.ndarray, betas: np.ndarray, z: np.ndarray, *, zmax: float | None = None,
                    log: bool = False, title: str = "", label: str = "loss") -> Figure:
    """3D view of the surface (heights clipped at zmax, optionally log), as in the paper's figures."""
    fig = Figure(**STYLE)
    ax = fig.add_subplot(projection="3d")
    xx, yy = _grid(alphas, betas)
    clipped = zmax is not None and extend_of(z, -np.inf, zmax) == "max"
    zz = np.minimum(z, zmax) if zmax is not None else z
    if log:
        zz = np.log(np.maximum(zz, 1e-12))
    ax.plot_surface(xx, yy, zz, cmap="viridis", linewidth=0, antialiased=True, rstride=1, cstride=1)
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel(r"$\beta$")
    ax.set_zlabel(f"log {label}" if log else label)
    if clipped:  # the flat top is the clip, not the surface: say so
        ax.text2D(0.02, 0.02, f"heights clipped at {zmax:.3g}", transform=ax.transAxes, fontsize=7)
    ax.view_init(elev=35, azim=-60)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_contour_grid(panels: list[list[dict | None]], *, row_labels: list[str], col_labels: list[str],
                      suptitle: str = "", span: float = 3.0, step: float = 0.25) -> Figure:
    """A grid of contour plots laid out like the paper's Figure 5 (rows x columns of surfaces).

    Every panel is drawn at the same levels, from the lowest loss of all panels up to ``span`` nats
    above it every ``step`` nats, filled, with one colour bar (values above are clipped to the top
    colour: the bar's "extend" arrow), so shapes and heights compare across nets.

    Args:
        panels: rows of dicts with ``alphas``, ``betas``, ``z`` (and optional ``title``), or None for a
            missing config.
    """
    n_rows, n_cols = len(panels), max(len(r) for r in panels)
    fig = Figure(figsize=(3.0 * n_cols + 1.0, 3.0 * n_rows), dpi=130, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    present = [p for row in panels for p in row if p is not None]
    lo = min(float(np.nanmin(p["z"])) for p in present) if present else 0.0
    levels = np.arange(lo, lo + span + step / 2, step)
    filled = None
    for i, row in enumerate(panels):
        for j in range(n_cols):
            ax = axes[i][j]
            panel = row[j] if j < len(row) else None
            if panel is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "not in this run", ha="center", va="center", transform=ax.transAxes)
                continue
            z = np.clip(panel["z"], None, levels[-1] + step)  # keep the top band filled, not blank
            xx, yy = _grid(panel["alphas"], panel["betas"])
            filled = ax.contourf(xx, yy, z, levels=levels, cmap="viridis", extend="max")
            ax.contour(xx, yy, z, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
            ax.plot([0], [0], "w+", ms=6)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            # a config id is up to ~55 characters, wider than a 3-inch panel at 8 pt: wrapped at its hyphens
            # so that neighbouring panels' titles do not run into each other
            ax.set_title(textwrap.fill(panel.get("title", ""), TITLE_CHARS), fontsize=8)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=9)
            if i == n_rows - 1:
                ax.set_xlabel(col_labels[j], fontsize=9)
    if filled is not None:
        fig.colorbar(filled, ax=axes.ravel().tolist(), label="train loss (nats)", shrink=0.9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_slices(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title: str = "",
                loss_max: float | None = None) -> Figure:
    """Several 1D loss curves on one axis (label -> (alphas, loss))."""
    fig = Figure(**STYLE)
    ax = fig.add_subplot()
    for label, (x, y) in curves.items():
        ax.plot(x, y, lw=1.4, label=label)
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel("loss (nats)")
    if loss_max is not None:
        ax.set_ylim(0, loss_max)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_trajectory(alphas: np.ndarray, betas: np.ndarray, z: np.ndarray, coords: np.ndarray, *,
                    explained: tuple[float, float], start: str = "start",
                    random_coords: np.ndarray | None = None, title: str = "") -> Figure:
    """The optimiser's path on the PCA plane over the loss contours (paper Figure 9); with
    ``random_coords``, a second panel shows the same path projected on a random plane (Figure 8),
    drawn at the PCA panel's scale so its small extent is visible as such.

    Args:
        coords: (E, 2) path on the PCA plane, last row the final weights (0, 0).
        explained: explained-variance ratios of the two components (fractions).
        start: the legend's name of the path's first point (``epoch 0``, or a weights file's name).
    """
    panels = 2 if random_coords is not None else 1
    fig = Figure(figsize=(5.0 * panels, 4.4), dpi=150)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    xx, yy = _grid(alphas, betas)
    cs = ax.contour(xx, yy, z, levels=contour_levels(z), cmap="viridis", linewidths=0.9)
    _label_some(ax, cs, cs.levels)
    ax.plot(coords[:, 0], coords[:, 1], "o-", color="tab:red", ms=3, lw=1.2, label="path")
    ax.plot(coords[0, 0], coords[0, 1], "s", color="tab:red", ms=6, label=start)
    ax.plot([0], [0], "k*", ms=9, label="final")
    ax.set_xlabel(f"1st PCA component: {100 * explained[0]:.1f} %")
    ax.set_ylabel(f"2nd PCA component: {100 * explained[1]:.1f} %")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title or "trajectory on the PCA plane", fontsize=10)
    if random_coords is not None:
        ax2 = axes[1]
        ax2.plot(random_coords[:, 0], random_coords[:, 1], "o-", color="tab:red", ms=3, lw=1.2)
        ax2.plot([0], [0], "k*", ms=9)
        ax2.set_xlim(ax.get_xlim())
        ax2.set_ylim(ax.get_ylim())
        ext = np.ptp(random_coords, axis=0)
        ax2.text(0.03, 0.95, f"path extent {ext[0]:.3g} x {ext[1]:.3g}", transform=ax2.transAxes, fontsize=8, va="top")
        ax2.set_xlabel(r"random direction $\delta$ (unit norm)")
        ax2.set_ylabel(r"random direction $\eta$ (unit norm)")
        ax2.set_title("the same path on a random plane", fontsize=10)
    fig.tight_layout()
    return fig


def plot_spectrum(densities: Mapping[str, tuple[np.ndarray, np.ndarray]], *, top: Mapping[str, np.ndarray] | None = None,
                  title: str = "", floor: float = 1e-8) -> Figure:
    """Hessian eigenvalue densities (SLQ), each label -> (grid (G,), density (G,) per unit lambda), on a
    linear axis (left) and a log axis (right, as Ghorbani et al. 2019 draw them: the bulk and the
    outliers on one scale; densities below ``floor`` are cut). ``top``: label -> the top eigenvalues,
    marked as ticks along the bottom."""
    fig = Figure(figsize=(10.0, 4.0), dpi=STYLE["dpi"])
    axes = fig.subplots(1, 2)
    for i, (label, (grid, density)) in enumerate(densities.items()):
        color = f"C{i}"
        axes[0].plot(grid, density, color=color, lw=1.2, label=label)
        axes[1].plot(grid, np.maximum(density, floor), color=color, lw=1.2, label=label)
        for ax in axes:
            for lam in (top or {}).get(label, ()):
                ax.axvline(lam, ymax=0.06, color=color, lw=1.5)
    axes[1].set_yscale("log")
    axes[1].set_ylim(bottom=floor)
    for ax, scale in zip(axes, ("linear", "log")):
        ax.set_xlabel(r"eigenvalue $\lambda$ of the loss Hessian")
        ax.set_ylabel(f"density ({scale})")
        ax.grid(alpha=0.3)
    if len(densities) > 1 or top:
        axes[0].legend(fontsize=8, title="ticks: top eigenvalues" if top else None, title_fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_planes(panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], *, title: str = "",
                xlabel: str = r"distance / $\|\theta\|$") -> Figure:
    """Contour panels side by side on shared levels (so a colour is one loss in every panel), each
    (title, alphas (A,), betas (B,), loss (A, B)); equal aspect, centre marked. For the random plane of
    filter-normalised directions beside the plane of the Hessian's top eigenvectors, both in the same
    unit of distance."""
    fig = Figure(figsize=(4.6 * len(panels), 4.2), dpi=STYLE["dpi"])
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    z_all = np.concatenate([np.asarray(z, float).ravel() for *_, z in panels])
    levels = contour_levels(z_all)
    for ax, (name, alphas, betas, z) in zip(axes, panels):
        xx, yy = _grid(np.asarray(alphas, float), np.asarray(betas, float))
        cs = ax.contour(xx, yy, np.asarray(z, float), levels=levels, cmap="viridis", linewidths=1.0)
        _label_some(ax, cs, cs.levels)
        ax.plot([0], [0], "k+", ms=8)
        ax.set_aspect("equal")
        ax.locator_params(nbins=5)
        ax.set_xlabel(xlabel)
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_connection(ts: np.ndarray, paths: Mapping[str, Mapping[str, np.ndarray]], *, title: str = "",
                    barriers: Mapping[str, Mapping[str, float]] | None = None, ylabel: str = "loss (nats)") -> Figure:
    """Loss (left) and error in percent (right) along each path between two minima, t from 0 to 1:
    ``paths`` label (``line``, ``curve``) -> ``<split>_loss`` / ``<split>_acc`` arrays (T,); train solid,
    test dashed; each path's train barrier in its legend label."""
    fig = Figure(figsize=(10.0, 4.0), dpi=STYLE["dpi"])
    axes = fig.subplots(1, 2)
    styles = {"train": "-", "test": "--"}
    for i, (label, values) in enumerate(paths.items()):
        for split, ls in styles.items():
            if f"{split}_loss" not in values:
                continue
            b = (barriers or {}).get(label, {}).get(split)
            name = f"{label}, {split}" + ("" if b is None else f" (barrier {b:.3g})")
            axes[0].plot(ts, values[f"{split}_loss"], ls, color=f"C{i}", marker=".", label=name)
            acc = np.asarray(values[f"{split}_acc"], float)
            if np.isfinite(acc).any():
                axes[1].plot(ts, 100 * (1 - acc), ls, color=f"C{i}", marker=".", label=f"{label}, {split}")
    axes[0].set_ylabel(ylabel)
    axes[1].set_ylabel("error (%)")
    for ax in axes:
        ax.set_xlabel("t (0: first minimum, 1: second)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if not axes[1].lines:
        axes[1].set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def plot_training_runs(panels: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, np.ndarray, float, bool]]]], *,
                       threshold: float, title: str = "", ncols: int = 4) -> Figure:
    """Train accuracy against epoch, one panel per net and one line per training seed.

    Args:
        panels: (title, runs) per net; a run is (label, epochs, the running train accuracy of each
            epoch in [0, 1], the final train accuracy (eval mode, a dot after the last epoch), whether
            it reached a minimum). A run that did not is dashed.
        threshold: the final train accuracy of a minimum, drawn dotted.
    """
    n_cols = max(1, min(ncols, len(panels)))
    n_rows = max(1, -(-len(panels) // n_cols))
    fig = Figure(figsize=(3.1 * n_cols, 2.6 * n_rows + 0.4), dpi=130, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey=True)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(panels):
            ax.set_axis_off()
            continue
        name, runs = panels[k]
        for label, epochs, acc, final, reached in runs:
            (line,) = ax.plot(epochs, acc, lw=1.0, ls="-" if reached else "--", label=label)
            if len(epochs):
                ax.plot([epochs[-1]], [final], "o", ms=3.5, color=line.get_color())
        ax.axhline(threshold, color="0.4", lw=0.8, ls=":")
        ax.set_ylim(0, 1.02)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False, loc="best")  # a run that ends low must not hide under it
        if k % n_cols == 0:
            ax.set_ylabel("train accuracy", fontsize=8)
        if k // n_cols == n_rows - 1 or k + n_cols >= len(panels):
            ax.set_xlabel("epoch", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
