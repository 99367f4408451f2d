"""Interactive views (plotly): a surface or an eigen-ratio map as a rotatable 3D surface, the paths
between two minima as line plots, written as HTML that works offline (plotly's JavaScript embedded).

The colours follow the static figure drawn beside each view (:mod:`lossbench.plot`): viridis over the
same range, heights clipped where the static 3D view clips them, so a reader turning the surface sees
the colours of the PNG. Axes: α along δ, β along η, in the units of the file's directions; heights in
the file's units (nats for losses, a ratio in [0, 1] for eigen-ratio maps).

A page with many 3D views renders them on demand: a browser keeps only about 16 WebGL contexts alive,
so the page draws a view when its button is pressed and releases the oldest beyond :data:`MAX_LIVE`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: 3D views alive at once on a page (each holds a WebGL context; browsers drop the oldest past ~16).
MAX_LIVE = 6

#: matplotlib's 3D view of the static figures (elevation 35°, azimuth −60°) as plotly's camera eye.
_EYE = {"x": 2.2 * np.cos(np.radians(35)) * np.cos(np.radians(-60)),
        "y": 2.2 * np.cos(np.radians(35)) * np.sin(np.radians(-60)),
        "z": 2.2 * np.sin(np.radians(35))}


def _go():
    try:
        import plotly.graph_objects as go
    except ImportError as exc:  # plotly is a dependency; a broken install gets the fix, not a traceback
        raise ImportError("interactive views need plotly: pip install 'plotly>=5.14'") from exc
    return go


def plotly_js() -> str:
    """The plotly.js bundle of the installed plotly (about 4.7 MB), for embedding in a page."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def surface_figure(alphas: np.ndarray, betas: np.ndarray, z: np.ndarray, *, zmax: float | None = None,
                   cmin: float | None = None, cmax: float | None = None, title: str = "",
                   label: str = "loss (nats)"):
    """A rotatable 3D surface of ``z`` (shape (A, B), indexed [i_alpha, j_beta]) over α (A,) and β (B,).

    Heights above ``zmax`` are clipped as in :func:`lossbench.plot.plot_surface_3d`; the hover shows the
    unclipped value. Colours: viridis from ``cmin`` (default: the lowest finite value) to ``cmax``
    (default: ``zmax``, else the highest finite value), the range of the static figure beside it.
    """
    go = _go()
    z = np.asarray(z, dtype=float)
    if z.shape != (len(alphas), len(betas)):
        raise ValueError(f"z has shape {z.shape}; expected (len(alphas), len(betas)) = ({len(alphas)}, {len(betas)})")
    finite = z[np.isfinite(z)]
    zc = np.minimum(z, zmax) if zmax is not None else z
    lo = float(finite.min()) if cmin is None and finite.size else (0.0 if cmin is None else cmin)
    hi = cmax if cmax is not None else (zmax if zmax is not None else (float(finite.max()) if finite.size else 1.0))
    if hi <= lo:
        hi = lo + 1e-6
    clipped = zmax is not None and finite.size > 0 and float(finite.max()) > zmax
    surface = go.Surface(
        x=np.asarray(alphas, float), y=np.asarray(betas, float), z=zc.T, customdata=z.T,  # plotly: z[j_beta, i_alpha]
        colorscale="Viridis", cmin=lo, cmax=hi, colorbar={"title": {"text": label}, "thickness": 14},
        hovertemplate="α %{x:.4g}<br>β %{y:.4g}<br>" + html.escape(label) + " %{customdata:.5g}<extra></extra>",
        contours={"z": {"show": True, "usecolormap": True, "project": {"z": True},
                        "start": lo, "end": hi, "size": (hi - lo) / 20}})
    subtitle = f" (heights clipped at {zmax:.3g})" if clipped else ""
    fig = go.Figure(surface)
    fig.update_layout(title={"text": f"{title}{subtitle}", "font": {"size": 13}}, height=480,
                      margin={"l": 10, "r": 0, "t": 40, "b": 0},
                      scene={"xaxis_title": "α (δ)", "yaxis_title": "β (η)", "zaxis_title": label,
                             "camera": {"eye": _EYE}, "aspectmode": "manual",
                             "aspectratio": {"x": 1, "y": 1, "z": 0.75}})
    return fig


def paths_figure(ts: np.ndarray, paths: Mapping[str, Mapping[str, np.ndarray]], *, title: str = "",
                 barriers: Mapping[str, Mapping[str, float]] | None = None, ylabel: str = "loss (nats)"):
    """Loss along each path between two minima (``paths``: label -> ``<split>_loss`` arrays (T,) over
    ``ts`` (T,) in [0, 1]), as :func:`lossbench.plot.plot_connection` draws them: train solid, test
    dashed, each path's barrier in its legend."""
    go = _go()
    fig = go.Figure()
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
    for i, (label, values) in enumerate(paths.items()):
        for split, dash in (("train", "solid"), ("test", "dash")):
            if f"{split}_loss" not in values:
                continue
            b = (barriers or {}).get(label, {}).get(split)
            name = f"{label}, {split}" + ("" if b is None else f" (barrier {b:.3g})")
            fig.add_trace(go.Scatter(x=np.asarray(ts, float), y=np.asarray(values[f"{split}_loss"], float),
                                     mode="lines+markers", name=name,
                                     line={"dash": dash, "color": colours[i % len(colours)]}))
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=400, xaxis_title="t (0: first minimum, 1: second)",
                      yaxis_title=ylabel, margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


def lines_figure(x: np.ndarray, curves: Mapping[str, np.ndarray], *, title: str = "", xlabel: str = "α",
                 ylabel: str = "loss (nats)"):
    """Curves over one axis (a 1D surface file's splits), zoomable."""
    go = _go()
    fig = go.Figure([go.Scatter(x=np.asarray(x, float), y=np.asarray(y, float), mode="lines", name=name)
                     for name, y in curves.items()])
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=400, xaxis_title=xlabel, yaxis_title=ylabel,
                      margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


def _is_3d(fig) -> bool:
    return any(t.type == "surface" for t in fig.data)


#: The page's script: draws a view when asked, keeps at most MAX_LIVE 3D views alive (oldest released).
_PAGE_SCRIPT = """
(function () {
  const live = [];
  function render(el) {
    if (el.dataset.live) return;
    const spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
    Plotly.newPlot(el.querySelector('.lb-plot'), spec.data, spec.layout, {displaylogo: false, responsive: true});
    el.dataset.live = '1';
    const b = el.querySelector('button'); if (b) b.hidden = true;
    if (el.classList.contains('lb-3d')) {
      live.push(el);
      while (live.length > %(max_live)d) {
        const old = live.shift();
        // purge alone leaves the context to the garbage collector, and the browser counts it meanwhile
        old.querySelectorAll('canvas').forEach(function (c) {
          const gl = c.getContext('webgl2') || c.getContext('webgl') || c.getContext('experimental-webgl');
          const ext = gl && gl.getExtension('WEBGL_lose_context');
          if (ext) ext.loseContext();
        });
        Plotly.purge(old.querySelector('.lb-plot'));
        delete old.dataset.live;
        const ob = old.querySelector('button'); if (ob) ob.hidden = false;
      }
    }
  }
  window.lossbenchRender = render;
  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('.lb-view button').forEach(function (b) {
      b.addEventListener('click', function () { render(b.closest('.lb-view')); });
    });
    document.querySelectorAll('.lb-view.lb-2d').forEach(render);
    const first = document.querySelector('.lb-view.lb-3d');
    if (first) render(first);
  });
})();
"""


def page_script() -> str:
    """The script a page with :func:`view_html` fragments needs (after plotly.js)."""
    return _PAGE_SCRIPT % {"max_live": MAX_LIVE}


def view_html(fig, view_id: str, caption: str = "") -> str:
    """An HTML fragment holding ``fig`` as JSON and a placeholder it is drawn into: 3D views on a button
    press (and the page's first at load), line plots at load. Needs :func:`page_script` and plotly.js."""
    kind = "lb-3d" if _is_3d(fig) else "lb-2d"
    spec = fig.to_json()  # plotly writes "<" as \u003c: a value holding "</script>" cannot end the element
    button = '<button type="button">rotate in 3D</button>' if kind == "lb-3d" else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f'<figure class="lb-view {kind}" data-spec="{view_id}-spec">{button}<div class="lb-plot" id="{view_id}"></div>'
            f'{cap}<script type="application/json" id="{view_id}-spec">{spec}</script></figure>')


def page_html(views: Sequence[tuple[str, Any]], *, title: str) -> str:
    """A standalone page of figures (caption, figure), working offline: plotly.js embedded."""
    body = "".join(view_html(fig, f"view-{i}", caption) for i, (caption, fig) in enumerate(views))
    return (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"<script>{plotly_js()}</script>\n<script>{page_script()}</script>\n"
            f"<style>{VIEW_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


VIEW_STYLE = """
.lb-view { display: inline-block; vertical-align: top; width: 560px; margin: 0.5em; }
.lb-view .lb-plot { width: 100%; } .lb-view button { margin: 0.3em 0; }
"""


def file_views(path: str | Path, *, key: str = "train_loss", zmax: float | None = None) -> list[tuple[str, Any]]:
    """The interactive views of a lossbench HDF5 file, as (caption, figure) pairs.

    A 2D surface: ``key`` as a 3D surface, clipped where the static 3D view of ``python -m lossbench plot``
    clips it (its top contour level) unless ``zmax`` is given; an eigen-ratio file: |λ_min / λ_max| in 3D
    over [0, 1]; a 1D file: its loss curves; a connectivity file: both paths.
    """
    from . import plot
    from .metrics import eig_ratio
    from .store import is_connection_file, load_surface

    path = Path(path)
    if is_connection_file(path):
        from .store import load_connection

        c = load_connection(path)
        meta = c["metadata"]
        name = meta.get("name") or path.stem
        return [(f"{name}: the straight line and the Bezier curve between two minima",
                 paths_figure(c["t"], c["paths"], barriers=meta.get("barrier"), ylabel=plot.loss_label(meta.get("loss")),
                              title=name))]
    s = load_surface(path)
    name = s.attrs.get("config_id", path.stem)
    ylabel = plot.loss_label(s.attrs.get("loss"))
    if s.betas is None:
        curves = {k: v for k, v in s.values.items() if k.endswith("_loss")}
        return [(f"{name}: loss along the line", lines_figure(s.alphas, curves, title=name, ylabel=ylabel))]
    if "min_eig" in s.values and "max_eig" in s.values:
        ratio = eig_ratio(s.values["min_eig"], s.values["max_eig"])
        return [(f"{name}: |λ_min / λ_max| (0: convex)",
                 surface_figure(s.alphas, s.betas, ratio, cmin=0.0, cmax=1.0, title=f"{name}: |min_eig / max_eig|",
                                label="|λ_min / λ_max|"))]
    if key not in s.values:
        raise ValueError(f"{path} has no {key!r}; it has {', '.join(s.values)} (choose one with --key)")
    z = s.values[key]
    top = float(plot.contour_levels(z)[-1]) if zmax is None else zmax
    label = f"{key.rsplit('_', 1)[0]} {ylabel}" if key.endswith("_loss") else key
    return [(f"{name}: {key} in 3D", surface_figure(s.alphas, s.betas, z, zmax=top, title=name, label=label))]


def write_file_views(path: str | Path, out: str | Path | None = None, *, key: str = "train_loss",
                     zmax: float | None = None) -> Path:
    """Write the interactive views of ``path`` (see :func:`file_views`) to ``out`` (default: the file's
    name with ``-interactive.html``); returns the written path. Written whole or not at all."""
    from ._io import write_text_atomic

    out = Path(out) if out else Path(path).with_name(Path(path).stem + "-interactive.html")
    views = file_views(path, key=key, zmax=zmax)
    write_text_atomic(out, page_html(views, title=f"lossbench: {Path(path).name}"))
    return out


def spec_of(view: str) -> dict[str, Any]:
    """The figure JSON of a :func:`view_html` fragment (for tests and tools)."""
    start = view.index('type="application/json"')
    start = view.index(">", start) + 1
    return json.loads(view[start:view.index("</script>", start)])
