"""Surface and direction files (HDF5, readable by the authors' tools) and VTK export for ParaView.

Layout of a surface file (dataset names as in the authors' ``plot_surface.py``)::

    xcoordinates  (nx,) float64          alphas
    ycoordinates  (ny,) float64          betas (2D only)
    train_loss, train_acc, test_loss, test_acc   (nx, ny) or (nx,) float64; loss in nats, accuracy in
                                          percent (the authors' unit; attr accuracy_unit says so)
    max_eig, min_eig, eig_converged        the same, in Hessian eigenvalue maps
    lossbench_done                        same shape, bool: which points are computed
    xdirection/0..n-1, ydirection/0..n-1  the directions, one dataset per tensor in model order
    dir_file                              this file's own name (their tools read directions from it)
    attrs: format, lossbench_version, torch_version, accuracy_unit, direction_names (JSON), metadata (JSON)

**Accuracy unit.** In memory accuracy is a fraction (0..1). On disk it is percent, as the authors'
``evaluation.eval_loss`` writes it, so their ``plot_1D.py`` draws ours right; ``accuracy_unit`` =
``"percent"`` says so. Reading converts back: the authors' files (no ``format`` attribute) are percent,
and lossbench files written before the attribute existed hold fractions.

**Axis order.** The authors declare value arrays of shape (nx, ny) but fill them through
``np.meshgrid(x, y)`` (``"xy"`` order): flat index k holds x[k % nx], y[k // nx]. So their array is
really y-major, and only square grids look right if read as [x, y]. lossbench keeps surfaces as
[i_alpha, j_beta] in memory and converts here, in :func:`to_file_layout` / :func:`from_file_layout`.

**Reading a file yourself.** ``h5py.File(p)["train_loss"][i, j]`` is the authors' layout, *not*
``[i_alpha, j_beta]`` (only square grids coincide); :func:`load_surface` (or :func:`read_values`)
returns the values in memory order. ``direction_names`` (a JSON list) names the tensor of each
dataset ``xdirection/<k>``: the model's parameter (``dir_type=weights``) or state-dict entry
(``states``) names, in model order.

Files are written to a temporary name and renamed, so a reader never sees half a file. The HDF5 image
is built in memory and written with plain file I/O: a full disk is one ``OSError`` (HDF5's own writes
to a full disk crashed the interpreter), checked against the free space before anything is written.
Its first 512 bytes (an HDF5 user block, which every HDF5 reader skips) hold the sha256 of the rest,
checked before HDF5 reads the file: a damaged file is refused, never read as wrong numbers.
A file with no ``lossbench_done`` mask (the authors') marks not-computed points with -1, their sentinel.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from . import __version__
from ._io import atomic_path
from .directions import Direction
from .errors import SurfaceFileError, first_line
from .surface import Surface

FORMAT = "lossbench-surface/1"
VALUE_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc")
DONE_KEY = "lossbench_done"
AUTHORS_UNSET = -1.0
ACCURACY_UNIT = "percent"


def is_accuracy(key: str) -> bool:
    """``train_acc``, ``test_acc`` and any other ``<split>_acc`` value."""
    return key.endswith("_acc")


def to_file_layout(a: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """[i_alpha, j_beta] (nx, ny) -> the authors' (nx, ny) array filled in meshgrid "xy" order."""
    return np.ascontiguousarray(a.T).reshape(nx, ny)


def from_file_layout(a: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """Inverse of :func:`to_file_layout`."""
    return np.asarray(a).reshape(ny, nx).T.copy()


# ----------------------------------------------------------------------------- surfaces


def save_surface(path: str | Path, surface: Surface, *, delta: Direction | None = None,
                 eta: Direction | None = None) -> Path:
    """Write ``surface`` (and its directions, if given) atomically to ``path``."""
    path = Path(path)
    nx = len(surface.alphas)
    ny = None if surface.betas is None else len(surface.betas)

    def layout(a: np.ndarray) -> np.ndarray:
        return a if ny is None else to_file_layout(a, nx, ny)

    def fill(f: h5py.File) -> None:
        f.attrs["format"] = FORMAT
        f.attrs["lossbench_version"] = __version__
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["metadata"] = json.dumps(surface.attrs, sort_keys=True, default=str)
        f.attrs["accuracy_unit"] = ACCURACY_UNIT
        f["xcoordinates"] = surface.alphas
        if ny is not None:
            f["ycoordinates"] = surface.betas
        for key, values in surface.values.items():
            f[key] = layout(100.0 * values if is_accuracy(key) else values)
        f[DONE_KEY] = layout(surface.done)
        f["dir_file"] = path.name
        if delta is not None:
            _write_directions(f, delta, eta)

    return _write_hdf5(path, fill)


def _write_hdf5(path: Path, fill) -> Path:
    """Build the HDF5 file ``fill(f)`` describes in memory, then write it atomically with plain I/O."""
    import hashlib
    import io
    import shutil

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=USERBLOCK) as f:
        fill(f)
    data = bytearray(buffer.getvalue())
    data[:USERBLOCK] = _userblock(hashlib.sha256(data[USERBLOCK:]).hexdigest())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path.parent).free
        if free < len(data):
            raise OSError(28, f"No space left on device ({len(data) / 1e6:.2f} MB to write, {free / 1e6:.2f} MB free)")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        error = OSError(f"cannot write {path}: {exc.strerror or exc}; free the disk or choose another output (-o): "
                        "what was written before is intact and a rerun resumes from it")
        error.errno = exc.errno
        raise error from None
    return path


def load_surface(path: str | Path) -> Surface:
    """Read a surface written by lossbench or by the authors' ``plot_surface.py``.

    Raises:
        SurfaceFileError: the file is missing, not HDF5, or not a surface file (names what is wrong).
    """
    path = Path(path)
    with _open(path) as f:
        if "xcoordinates" not in f:
            raise SurfaceFileError(
                f"{path} is not a loss-surface file: it has no 'xcoordinates' dataset (found "
                f"{sorted(f.keys())[:8]}); expected a file written by lossbench or the authors' plot_surface.py"
            )
        alphas = np.asarray(f["xcoordinates"][()], dtype=np.float64).reshape(-1)
        betas = np.asarray(f["ycoordinates"][()], dtype=np.float64).reshape(-1) if "ycoordinates" in f else None
        nx = len(alphas)
        ny = None if betas is None else len(betas)
        shape = (nx,) if ny is None else (nx, ny)

        def read(key: str) -> np.ndarray:
            raw = np.asarray(f[key][()])
            if raw.size != int(np.prod(shape)):
                raise SurfaceFileError(
                    f"{path}: dataset {key!r} has shape {raw.shape} but the coordinates give {shape}"
                )
            return raw.reshape(shape) if ny is None else from_file_layout(raw, nx, ny)

        skip = {"xcoordinates", "ycoordinates", DONE_KEY, "dir_file"}
        # the authors' value names must fit the grid (read() says so if not); other numeric datasets
        # of the grid's size (eigenvalue maps, extra splits) come along
        value_keys = [k for k in f if k in VALUE_KEYS or (
            k not in skip and isinstance(f[k], h5py.Dataset) and f[k].dtype.kind in "fiu"
            and f[k].size == int(np.prod(shape)))]
        values = {k: read(k).astype(np.float64) for k in value_keys}
        # percent on disk (ours now, the authors' always); a fraction in lossbench files from before the unit
        percent = f.attrs.get("accuracy_unit") == ACCURACY_UNIT or "format" not in f.attrs
        if percent:
            for k in values:
                if is_accuracy(k):
                    values[k] = np.where(values[k] == AUTHORS_UNSET, AUTHORS_UNSET, values[k] / 100.0)
        if not values:
            raise SurfaceFileError(f"{path} has coordinates but no values (e.g. {', '.join(VALUE_KEYS)})")
        if DONE_KEY in f:
            done = read(DONE_KEY).astype(bool)
        else:  # the authors' file: -1 means "not computed yet"
            first = values.get("train_loss", next(iter(values.values())))
            done = first != AUTHORS_UNSET
        attrs = json.loads(f.attrs["metadata"]) if "metadata" in f.attrs else {"origin": "authors"}
    return Surface(alphas=alphas, betas=betas, values=values, done=done, attrs=attrs)


# ----------------------------------------------------------------------------- directions


def save_directions(path: str | Path, delta: Direction, eta: Direction | None = None,
                    *, attrs: Mapping[str, Any] | None = None) -> Path:
    """Write directions atomically as the authors' ``xdirection``/``ydirection`` groups."""
    def fill(f: h5py.File) -> None:
        f.attrs["format"] = "lossbench-directions/1"
        f.attrs["metadata"] = json.dumps(dict(attrs or {}), sort_keys=True, default=str)
        _write_directions(f, delta, eta)

    return _write_hdf5(Path(path), fill)


def _write_directions(f: h5py.File, delta: Direction, eta: Direction | None) -> None:
    f.attrs["direction_names"] = json.dumps(list(delta))
    for group_name, direction in (("xdirection", delta), ("ydirection", eta)):
        if direction is None:
            continue
        group = f.create_group(group_name)
        for i, tensor in enumerate(direction.values()):
            group[str(i)] = tensor.detach().cpu().numpy()


def load_directions(
    path: str | Path, *, names: list[str] | None = None
) -> tuple[Direction, Direction | None, dict[str, Any]]:
    """(delta, eta or None, metadata) from a direction or surface file.

    The authors store one dataset per tensor, named by position; lossbench adds the tensor names. For
    a file without names, pass ``names`` (the model's, in order, e.g. ``list(get_theta(model))``).
    """
    path = Path(path)
    with _open(path) as f:
        if "xdirection" not in f:
            raise SurfaceFileError(f"{path} holds no directions (no 'xdirection' group)")
        stored = json.loads(f.attrs["direction_names"]) if "direction_names" in f.attrs else None
        use = stored or names
        if use is None:
            raise SurfaceFileError(
                f"{path} has no tensor names (an authors' file); pass names=list(get_theta(model)) to map them"
            )
        meta = json.loads(f.attrs["metadata"]) if "metadata" in f.attrs else {}
        out = []
        for group_name in ("xdirection", "ydirection"):
            if group_name not in f:
                out.append(None)
                continue
            group = f[group_name]
            if len(group) != len(use):
                raise SurfaceFileError(
                    f"{path}: {group_name} has {len(group)} tensors but {len(use)} names were expected"
                )
            out.append({name: torch.from_numpy(np.asarray(group[str(i)][()])) for i, name in enumerate(use)})
    return out[0], out[1], meta


#: The first bytes of a lossbench HDF5 file are a user block (which HDF5, h5py and the authors' tools
#: skip) holding the sha256 of the rest: a file damaged on disk is refused before HDF5 reads it (HDF5
#: reads a damaged data block as valid numbers, a wrong direction, and can hang on damaged metadata).
#: Files without it (the authors', lossbench's before it) are read unchecked.
USERBLOCK = 512
_MARK = b"lossbench-sha256:"


def _userblock(hexdigest: str) -> bytes:
    return (_MARK + hexdigest.encode()).ljust(USERBLOCK, b"\0")


def _verify_userblock(path: Path) -> None:
    """Refuse a lossbench file whose content does not match the sha256 in its user block."""
    import hashlib

    with open(path, "rb") as fh:
        head = fh.read(USERBLOCK)
        if not head.startswith(_MARK):
            return
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    stored = head[len(_MARK):len(_MARK) + 64].decode("ascii", errors="replace")
    if stored != digest.hexdigest():
        raise SurfaceFileError(f"{path} is damaged: its content does not match the sha256 it was written with; "
                               "delete it (or pass --overwrite) to compute it again")


@contextlib.contextmanager
def _open(path: Path) -> Iterator[h5py.File]:
    """The HDF5 file at ``path`` for reading; any failure while it is read (a damaged file: HDF5 raises
    OSError, KeyError, RuntimeError, ...) is one :class:`SurfaceFileError` naming the file and the fix."""
    if not path.exists():
        raise SurfaceFileError(f"{path} does not exist")
    _verify_userblock(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise SurfaceFileError(f"{path} is not a readable HDF5 file ({first_line(exc)}); is it truncated or "
                               "another format?") from None
    try:
        with f:
            yield f
    except SurfaceFileError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise SurfaceFileError(f"{path} is damaged: reading it failed ({type(exc).__name__}: {first_line(exc)}); "
                               "delete it (or pass --overwrite) to compute it again") from None


def file_format(path: str | Path) -> str | None:
    """The ``format`` attribute of a lossbench HDF5 file (``CONNECT_FORMAT``, ``SPECTRUM_FORMAT``, ...;
    None for a surface file in the authors' layout), read after its checksum is verified: a damaged
    file is a :class:`SurfaceFileError`, never a read that hangs in HDF5."""
    with _open(Path(path)) as f:
        value = f.attrs.get("format")
    return None if value is None else str(value)


def is_connection_file(path: str | Path) -> bool:
    """Whether ``path`` is a connect file (:func:`save_connection`), checksum verified first."""
    return file_format(path) == CONNECT_FORMAT


def read_values(path: str | Path) -> dict[str, np.ndarray]:
    """The value arrays of a surface file, indexed ``[i_alpha, j_beta]`` (the on-disk arrays are in the
    authors' layout), accuracy as a fraction: what ``load_surface(path).values`` holds."""
    return load_surface(path).values


# ----------------------------------------------------------------------------- spectra

SPECTRUM_FORMAT = "lossbench-spectrum/1"


def save_spectrum(path: str | Path, *, nodes: np.ndarray, weights: np.ndarray, dim: int,
                  grid: np.ndarray | None = None, density: np.ndarray | None = None, sigma: float | None = None,
                  top: Mapping[str, np.ndarray] | None = None, attrs: Mapping[str, Any] | None = None) -> Path:
    """Write a spectral density's file atomically (checksummed like a surface file)::

        ritz_values   (probes, steps) float64   each probe's Ritz values (NaN: its Krylov space closed)
        ritz_weights  (probes, steps) float64   their quadrature weights (each row sums to 1)
        density_grid  (G,), density (G,)        the density drawn at width ``sigma`` (attr), per unit lambda
        top_eigenvalues, top_residuals, top_converged, top_gaps   (k,) the top eigenpairs' numbers
        attrs: format, dim (the operator's size n), sigma, metadata (JSON)

    The Ritz values and weights are all a density needs: redraw it at another width with
    :class:`lossbench.hessian.Spectrum`."""
    path = Path(path)

    def fill(f: h5py.File) -> None:
        f.attrs["format"] = SPECTRUM_FORMAT
        f.attrs["lossbench_version"] = __version__
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["dim"] = int(dim)
        f.attrs["metadata"] = json.dumps(dict(attrs or {}), sort_keys=True, default=str)
        f["ritz_values"] = np.asarray(nodes, float)
        f["ritz_weights"] = np.asarray(weights, float)
        if grid is not None:
            f["density_grid"] = np.asarray(grid, float)
            f["density"] = np.asarray(density, float)
            f.attrs["sigma"] = float(sigma)
        for key, values in (top or {}).items():
            f[f"top_{key}"] = np.asarray(values)

    return _write_hdf5(path, fill)


def load_spectrum(path: str | Path) -> dict[str, Any]:
    """A spectrum file's arrays by name (``ritz_values``, ``ritz_weights``, ``density_grid``, ``density``,
    ``top_*``), ``dim``, ``sigma`` (None if no density was drawn) and ``metadata``."""
    path = Path(path)
    with _open(path) as f:
        if f.attrs.get("format") != SPECTRUM_FORMAT:
            raise SurfaceFileError(f"{path} is not a lossbench spectrum file (format {f.attrs.get('format')!r}); "
                                   "write one with `python -m lossbench spectrum`")
        out: dict[str, Any] = {k: np.asarray(f[k][()]) for k in f.keys()}
        out["dim"] = int(f.attrs["dim"])
        out["sigma"] = float(f.attrs["sigma"]) if "sigma" in f.attrs else None
        out["metadata"] = json.loads(f.attrs.get("metadata", "{}"))
    return out


# ----------------------------------------------------------------------------- mode-connecting curves

CONNECT_FORMAT = "lossbench-connect/1"


def save_connection(path: str | Path, *, ts: np.ndarray, paths: Mapping[str, Mapping[str, np.ndarray]],
                    control: Direction | None, training_loss: np.ndarray | None = None,
                    attrs: Mapping[str, Any] | None = None) -> Path:
    """Write a connectivity file atomically (checksummed like a surface file)::

        t                              (T,) the points along both paths, 0 to 1
        line/<split>_loss, _acc        (T,) the straight line (BN statistics recomputed at each t)
        curve/<split>_loss, _acc       (T,) the trained Bezier curve (likewise)
        control/0..n-1                 the control point theta_c, one dataset per parameter
        training_loss                  (steps,) the loss of each training step at its sampled t
        attrs: format, control_names (JSON), accuracy_unit ("fraction"), metadata (JSON: barriers, settings)
    """
    path = Path(path)

    def fill(f: h5py.File) -> None:
        f.attrs["format"] = CONNECT_FORMAT
        f.attrs["lossbench_version"] = __version__
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["accuracy_unit"] = "fraction"
        f.attrs["metadata"] = json.dumps(dict(attrs or {}), sort_keys=True, default=str)
        f["t"] = np.asarray(ts, float)
        for name, values in paths.items():
            group = f.create_group(name)
            for key, arr in values.items():
                group[key] = np.asarray(arr, float)
        if control is not None:
            f.attrs["control_names"] = json.dumps(list(control))
            group = f.create_group("control")
            for i, tensor in enumerate(control.values()):
                group[str(i)] = tensor.detach().cpu().numpy()
        if training_loss is not None:
            f["training_loss"] = np.asarray(training_loss, float)

    return _write_hdf5(path, fill)


def load_connection(path: str | Path) -> dict[str, Any]:
    """A connectivity file: ``t``, ``paths`` ({"line": {...}, "curve": {...}}), ``control`` (a
    direction of tensors, or None), ``training_loss`` and ``metadata``."""
    path = Path(path)
    with _open(path) as f:
        if f.attrs.get("format") != CONNECT_FORMAT:
            raise SurfaceFileError(f"{path} is not a lossbench connectivity file (format {f.attrs.get('format')!r}); "
                                   "write one with `python -m lossbench connect`")
        out: dict[str, Any] = {"t": np.asarray(f["t"][()]), "metadata": json.loads(f.attrs.get("metadata", "{}"))}
        out["paths"] = {name: {k: np.asarray(v[()]) for k, v in f[name].items()} for name in ("line", "curve")
                        if name in f}
        control = None
        if "control" in f:
            names = json.loads(f.attrs["control_names"])
            control = {n: torch.from_numpy(np.asarray(f["control"][str(i)][()])) for i, n in enumerate(names)}
        out["control"] = control
        out["training_loss"] = np.asarray(f["training_loss"][()]) if "training_loss" in f else None
    return out


# ----------------------------------------------------------------------------- VTK


def export_vtp(path: str | Path, surface: Surface, *, key: str = "train_loss", log: bool = False,
               zmax: float | None = None, interp: int | None = None) -> Path:
    """Write a 2D surface as a VTK PolyData (.vtp) quad mesh for ParaView (the authors' ``h52vtp``).

    Args:
        key: which value to use as height and point scalar.
        log: use log(value) (values must be positive).
        zmax: clip heights above this value (applied before the log, as they do).
        interp: resample to an ``interp`` x ``interp`` grid with a cubic spline first.
    """
    if surface.betas is None:
        raise ValueError("VTK export needs a 2D surface; this one is 1D")
    if key not in surface.values:
        raise ValueError(f"surface has no {key!r}; it has {', '.join(surface.values)}")
    x, y, z = surface.alphas, surface.betas, surface.values[key].copy()
    if not surface.done.all():
        raise ValueError("surface is not complete; finish computing it before exporting")
    if interp:
        from scipy.interpolate import RectBivariateSpline

        spline = RectBivariateSpline(x, y, z, kx=min(3, len(x) - 1), ky=min(3, len(y) - 1))
        x, y = np.linspace(x[0], x[-1], interp), np.linspace(y[0], y[-1], interp)
        z = spline(x, y)
    if zmax is not None:
        z = np.minimum(z, zmax)
    if log:
        if (z <= 0).any():
            raise ValueError("log scale needs positive values; some are <= 0")
        z = np.log(z)
    nx, ny = z.shape
    xx, yy = np.meshgrid(x, y, indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel(), z.ravel()], axis=1)
    idx = np.arange(nx * ny).reshape(nx, ny)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], axis=-1).reshape(-1, 4)
    offsets = 4 * np.arange(1, len(quads) + 1)

    def fmt(a: np.ndarray) -> str:
        return " ".join(f"{v:.9g}" for v in np.asarray(a).ravel())

    name = f"log({key})" if log else key
    text = f"""<?xml version="1.0"?>
<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian">
  <PolyData>
    <Piece NumberOfPoints="{len(points)}" NumberOfVerts="0" NumberOfLines="0" NumberOfStrips="0" NumberOfPolys="{len(quads)}">
      <PointData Scalars="{name}">
        <DataArray type="Float32" Name="{name}" NumberOfComponents="1" format="ascii">{fmt(points[:, 2])}</DataArray>
      </PointData>
      <Points>
        <DataArray type="Float32" NumberOfComponents="3" format="ascii">{fmt(points)}</DataArray>
      </Points>
      <Polys>
        <DataArray type="Int64" Name="connectivity" format="ascii">{" ".join(map(str, quads.ravel()))}</DataArray>
        <DataArray type="Int64" Name="offsets" format="ascii">{" ".join(map(str, offsets))}</DataArray>
      </Polys>
    </Piece>
  </PolyData>
</VTKFile>
"""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
