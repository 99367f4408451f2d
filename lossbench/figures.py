"""Figures of stored files: a surface or line (contours, heat map, 3D view, 1D curves), an
eigen-ratio map, a training path on its PCA plane. Each reads an HDF5 file written by lossbench (or
the authors' code), draws it with :mod:`lossbench.plot` and returns the paths it wrote (PNG and PDF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import plot
from .metrics import eig_ratio
from .store import export_vtp, load_surface


def plot_file(path: str | Path, *, key: str = "train_loss", vmin: float | None = None, vmax: float | None = None,
              vlevel: float | None = None, zmax: float | None = None, loss_max: float | None = None,
              log: bool = False, vtp: bool = False, stem: str | Path | None = None) -> list[Path]:
    """Write the standard figures of a surface file; returns the written paths.

    A 1D file gets its loss (nats) and accuracy curves; a 2D file gets ``key``'s contour lines, filled
    contours, heat map and 3D view at shared levels (``vmin``/``vmax``/``vlevel``; ``zmax`` clips the
    heights), and with ``vtp`` a ParaView mesh.
    """
    surface = load_surface(path)
    stem = Path(stem) if stem else Path(path).with_suffix("")
    title = surface.attrs.get("config_id", Path(path).stem)
    if not surface.done.all():  # a partial file draws as what it is
        title = f"{title} (partial: {int(surface.done.sum())} of {surface.done.size} points)"
    ylabel = plot.loss_label(surface.attrs.get("loss"))
    written = []
    if surface.betas is None:
        splits = sorted({k.rsplit("_", 1)[0] for k in surface.values})
        losses = {s: surface.values[f"{s}_loss"] for s in splits if f"{s}_loss" in surface.values}
        accs = {s: surface.values[f"{s}_acc"] for s in splits if f"{s}_acc" in surface.values}
        xlabel = r"$\alpha$ (interpolation $\theta_1 \to \theta_2$)" if surface.attrs.get("kind") == "interpolation" else r"$\alpha$"
        if loss_max is None and not log:  # resolve the basin, not the far walls: at most 10 above the minimum
            finite = np.concatenate([v[np.isfinite(v)] for v in losses.values()])
            loss_max = float(min(finite.max(), finite.min() + 10.0)) * 1.05 if finite.size else None
        fig = plot.plot_1d(surface.alphas, losses, accs, title=title, xlabel=xlabel, loss_max=loss_max, log=log,
                           ylabel=ylabel)
        written += plot.save_figure(fig, f"{stem}-1d")
        return written
    if key not in surface.values:
        raise ValueError(f"{path} has no {key!r}; it has {', '.join(surface.values)}")
    z = surface.values[key]
    if key.endswith("_loss"):
        key_label = f"{key.rsplit('_', 1)[0]} {ylabel}"
    else:
        key_label = key
    levels = plot.contour_levels(z, vmin=vmin, vmax=vmax, vlevel=vlevel)
    a, b = surface.alphas, surface.betas
    written += plot.save_figure(plot.plot_contour(a, b, z, levels=levels, title=title, label=key_label),
                                f"{stem}-{key}-contour")
    written += plot.save_figure(plot.plot_contour(a, b, z, levels=levels, filled=True, title=title, label=key_label),
                                f"{stem}-{key}-contourf")
    top = float(levels[-1])  # the same clipping for the heat map and the 3D view unless asked otherwise
    written += plot.save_figure(plot.plot_heatmap(a, b, z, vmin=vmin, vmax=vmax if vmax is not None else top,
                                                  title=title, label=key_label), f"{stem}-{key}-heat")
    written += plot.save_figure(plot.plot_surface_3d(a, b, z, zmax=zmax if zmax is not None else top, log=log,
                                                     title=title, label=key_label), f"{stem}-{key}-3d")
    if vtp:
        written.append(export_vtp(f"{stem}-{key}.vtp", surface, key=key, log=log, zmax=zmax))
    return written


def plot_eig_file(path: str | Path) -> list[Path]:
    """The map of |min_eig / max_eig| of an eigen-ratio file (paper Figure 7), as a heat map."""
    s = load_surface(path)
    ratio = eig_ratio(s.values["min_eig"], s.values["max_eig"])
    stem = Path(path).with_suffix("")
    title = s.attrs.get("config_id", stem.name)
    fig = plot.plot_heatmap(s.alphas, s.betas, ratio, vmin=0.0, vmax=max(0.1, float(np.nanmax(ratio)) if np.isfinite(ratio).any() else 1.0),
                            title=f"{title}: |min_eig / max_eig|", label="|lambda_min / lambda_max|")
    return plot.save_figure(fig, f"{stem}-ratio")


def trajectory_figure(s, title: str = ""):
    """The figure of a trajectory surface: the loss on the PCA plane with the path, beside the path on a
    random plane (paper Figures 8-9); its first point named as the file says (epoch or weights file)."""
    a = s.attrs
    return plot.plot_trajectory(s.alphas, s.betas, s.values["train_loss"], np.asarray(a["path"]),
                                explained=tuple(a["explained_variance_ratio"]),
                                start=(a.get("path_labels") or [f"epoch {a['epochs'][0]}"])[0],
                                random_coords=np.asarray(a["random_path"]), title=title or a.get("config_id", ""))


def plot_trajectory_file(path: str | Path) -> list[Path]:
    """The loss on the PCA plane of a trajectory file with the path drawn on it (paper Figure 9)."""
    return plot.save_figure(trajectory_figure(load_surface(path)), Path(path).with_suffix(""))


def plot_spectrum_file(path: str | Path) -> list[Path]:
    """The eigenvalue density of a spectrum file (linear and log), its top eigenvalues marked."""
    from .store import load_spectrum

    s = load_spectrum(path)
    if "density" not in s:
        raise ValueError(f"{path} holds no density yet (an interrupted run): finish it with the same command")
    meta = s["metadata"]
    name = meta.get("config_id") or Path(path).stem
    converged = s.get("top_converged", np.ones(0)).astype(bool)
    fig = plot.plot_spectrum({name: (s["density_grid"], s["density"])},
                             top={name: s.get("top_eigenvalues", np.zeros(0))[converged]},
                             title=f"{name}: Hessian eigenvalue density (SLQ, {len(s['ritz_values'])} probes x "
                                   f"{s['ritz_values'].shape[1]} steps, width {s['sigma']:.3g})")
    return plot.save_figure(fig, Path(path).with_suffix(""))


def plot_connection_file(path: str | Path) -> list[Path]:
    """Loss and error along the straight line and the trained curve of a connectivity file."""
    from .store import load_connection

    c = load_connection(path)
    meta = c["metadata"]
    name = meta.get("name") or Path(path).stem
    fig = plot.plot_connection(c["t"], c["paths"], barriers=meta.get("barrier"), ylabel=plot.loss_label(meta.get("loss")),
                               title=f"{name}: the straight line and a Bezier curve between two minima")
    return plot.save_figure(fig, Path(path).with_suffix(""))
