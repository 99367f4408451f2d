import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest
import torch

from lossbench.directions import create_random_direction, get_theta
from lossbench.errors import SurfaceFileError
from lossbench.models import CifarResNet
from lossbench.store import export_vtp, load_directions, load_surface, save_directions, save_surface
from lossbench.surface import Surface


def f(x, y):
    return 1.0 + x**2 + 3 * y + 0.1 * x * y  # asymmetric in x and y, so a transpose shows


def make_surface(nx=5, ny=3, done_all=True):
    x, y = np.linspace(-1, 1, nx), np.linspace(-2, 2, ny)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    s = Surface.empty(x, y, ["train_loss", "train_acc"], attrs={"config_id": "demo", "seed": 3})
    s.values["train_loss"][:] = f(xx, yy)
    s.values["train_acc"][:] = 0.5
    s.done[:] = True
    if not done_all:
        s.done[-1, -1] = False
    return s


def test_round_trip_non_square(tmp_path):
    s = make_surface(done_all=False)
    path = save_surface(tmp_path / "s.h5", s)
    back = load_surface(path)
    np.testing.assert_array_equal(back.alphas, s.alphas)
    np.testing.assert_array_equal(back.values["train_loss"], s.values["train_loss"])
    np.testing.assert_array_equal(back.done, s.done)
    assert back.attrs == s.attrs


def test_plain_h5py_reads_authors_names_in_their_order(tmp_path):
    """Their plot_2D does meshgrid(x, y) (shape (ny, nx)) and contours f[key] with it."""
    nx, ny = 4, 4  # the authors' tools only handle square grids correctly
    s = make_surface(nx, ny)
    path = save_surface(tmp_path / "s.h5", s)
    with h5py.File(path, "r") as h:
        assert {"xcoordinates", "ycoordinates", "train_loss", "train_acc"} <= set(h.keys())
        x, y = h["xcoordinates"][:], h["ycoordinates"][:]
        X, Y = np.meshgrid(x, y)
        np.testing.assert_allclose(h["train_loss"][:], f(X, Y))


def test_reads_an_authors_non_square_file_with_the_right_orientation(tmp_path):
    nx, ny = 5, 3
    x, y = np.linspace(-1, 1, nx), np.linspace(-2, 2, ny)
    losses = -np.ones((nx, ny))  # their shape declaration and -1 sentinel
    xm, ym = np.meshgrid(x, y)  # their scheduler: flat index k -> (x[k % nx], y[k // nx])
    for k in range(nx * ny - 1):  # the last point "not computed yet"
        losses.ravel()[k] = f(xm.ravel()[k], ym.ravel()[k])
    path = tmp_path / "authors.h5"
    with h5py.File(path, "w") as h:
        h["dir_file"] = "dirs.h5"
        h["xcoordinates"] = x
        h["ycoordinates"] = y
        h["train_loss"] = losses
        h["train_acc"] = np.where(losses == -1, -1, 50.0)
    s = load_surface(path)
    assert s.shape == (nx, ny)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    np.testing.assert_allclose(s.values["train_loss"][s.done], f(xx, yy)[s.done])
    assert s.done.sum() == nx * ny - 1 and not s.done[-1, -1]
    assert s.attrs == {"origin": "authors"}


def test_1d_files(tmp_path):
    s = Surface.empty(np.linspace(-1, 1, 7), None, ["train_loss"])
    s.values["train_loss"][:] = np.arange(7.0)
    s.done[:] = True
    back = load_surface(save_surface(tmp_path / "line.h5", s))
    assert back.betas is None and back.values["train_loss"].tolist() == list(range(7))


def test_corrupt_and_foreign_files_get_clear_errors(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"this is not hdf5")
    with pytest.raises(SurfaceFileError, match="not a readable HDF5 file"):
        load_surface(bad)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h:
        h["images"] = np.zeros(3)
    with pytest.raises(SurfaceFileError, match="not a loss-surface file.*'xcoordinates'.*found \\['images'\\]"):
        load_surface(foreign)
    truncated = save_surface(tmp_path / "t.h5", make_surface())
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(SurfaceFileError):
        load_surface(truncated)
    with pytest.raises(SurfaceFileError, match="does not exist"):
        load_surface(tmp_path / "missing.h5")


def test_mismatched_dataset_shape_is_named(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as h:
        h["xcoordinates"] = np.linspace(-1, 1, 3)
        h["train_loss"] = np.zeros(4)
    with pytest.raises(SurfaceFileError, match="'train_loss' has shape \\(4,\\)"):
        load_surface(path)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    good = save_surface(tmp_path / "s.h5", make_surface())
    before = good.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    import lossbench.store as store

    monkeypatch.setattr(store, "_write_directions", boom)
    with pytest.raises(RuntimeError):
        save_surface(good, make_surface(), delta={"w": torch.zeros(2)})
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def test_directions_round_trip_and_authors_positional_layout(tmp_path):
    torch.manual_seed(0)
    net = CifarResNet(8)
    delta = create_random_direction(net, seed=0)
    eta = create_random_direction(net, seed=1)
    path = save_directions(tmp_path / "d.h5", delta, eta, attrs={"norm": "filter"})
    d2, e2, meta = load_directions(path)
    assert list(d2) == list(delta) and all(torch.equal(d2[k], delta[k]) for k in delta)
    assert all(torch.equal(e2[k], eta[k]) for k in eta) and meta == {"norm": "filter"}
    with h5py.File(path, "r") as h:  # what their net_plotter.load_directions reads
        assert np.array_equal(h["xdirection"]["0"][:], delta["conv1.weight"].numpy())
    authors = tmp_path / "authors_dirs.h5"
    with h5py.File(authors, "w") as h:
        g = h.create_group("xdirection")
        for i, t in enumerate(delta.values()):
            g[str(i)] = t.numpy()
    with pytest.raises(SurfaceFileError, match="no tensor names"):
        load_directions(authors)
    mapped, none, _ = load_directions(authors, names=list(get_theta(net)))
    assert none is None and all(torch.equal(mapped[k], delta[k]) for k in delta)


def test_vtp_export_is_valid_xml_with_a_quad_mesh(tmp_path):
    s = make_surface(5, 3)
    s.values["train_loss"][:] = np.abs(s.values["train_loss"]) + 0.1  # log scale needs positive values
    path = export_vtp(tmp_path / "s.vtp", s, key="train_loss", zmax=3.0, log=True)
    piece = ET.parse(path).getroot().find("PolyData/Piece")
    assert piece.get("NumberOfPoints") == "15" and piece.get("NumberOfPolys") == "8"
    z = np.array(piece.find("PointData/DataArray").text.split(), dtype=float)
    assert z.max() <= np.log(3.0) + 1e-6
    resampled = export_vtp(tmp_path / "r.vtp", make_surface(5, 5), interp=9)
    assert ET.parse(resampled).getroot().find("PolyData/Piece").get("NumberOfPoints") == "81"
    with pytest.raises(ValueError, match="needs a 2D surface"):
        export_vtp(tmp_path / "x.vtp", Surface.empty(np.zeros(3), None, ["train_loss"]))


def test_accuracy_is_percent_on_disk_and_a_fraction_in_memory(tmp_path):
    """The authors' unit on disk (their plot_1D.py reads ours right), a fraction in memory; their files
    (percent) and ours from before the unit attribute (fraction) both read back as fractions."""
    s = Surface.empty(np.linspace(-1, 1, 5), None, ["train_loss", "train_acc", "test_acc"])
    s.values["train_loss"][:] = 0.5
    s.values["train_acc"][:] = [0.1, 0.5, 0.975, 1.0, 0.0]
    s.values["test_acc"][:] = 0.25
    s.done[:] = True
    path = save_surface(tmp_path / "line.h5", s)
    with h5py.File(path, "r") as h:
        assert h.attrs["accuracy_unit"] == "percent"
        np.testing.assert_allclose(h["train_acc"][:], [10.0, 50.0, 97.5, 100.0, 0.0])
        assert h["train_loss"][0] == 0.5
    back = load_surface(path)
    np.testing.assert_allclose(back.values["train_acc"], s.values["train_acc"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(back.values["test_acc"], 0.25)

    authors = tmp_path / "authors.h5"  # their 1D file: no format attribute, accuracy in percent, -1 unset
    with h5py.File(authors, "w") as h:
        h["xcoordinates"] = np.linspace(-1, 1, 3)
        h["train_loss"] = np.array([1.0, 0.1, -1.0])
        h["train_acc"] = np.array([60.0, 99.0, -1.0])
    theirs = load_surface(authors)
    np.testing.assert_allclose(theirs.values["train_acc"][:2], [0.6, 0.99])
    assert not theirs.done[2]

    old = tmp_path / "old.h5"  # lossbench before the unit attribute: fractions
    with h5py.File(old, "w") as h:
        h.attrs["format"] = "lossbench-surface/1"
        h["xcoordinates"] = np.linspace(-1, 1, 2)
        h["train_loss"] = np.array([1.0, 0.1])
        h["train_acc"] = np.array([0.6, 0.99])
        h["lossbench_done"] = np.array([True, True])
    np.testing.assert_allclose(load_surface(old).values["train_acc"], [0.6, 0.99])


def test_every_damaged_byte_is_refused_or_harmless(tmp_path):
    """Issue 24: 8 bytes overwritten anywhere in a surface file either change nothing that is read (free
    space, padding) or make reading it one SurfaceFileError; never a direction or a value read back wrong
    (the stored content sha256 catches what HDF5 itself would read without complaint)."""
    import torch

    from lossbench.errors import SurfaceFileError
    from lossbench.store import load_directions, load_surface, save_surface
    from lossbench.surface import Surface

    x = np.linspace(-1, 1, 5)
    s = Surface.empty(x, x, ["train_loss", "train_acc"], attrs={"a": 1})
    s.values["train_loss"][:] = np.arange(25.0).reshape(5, 5)
    s.values["train_acc"][:] = 0.5
    s.done[:] = True
    g = torch.Generator().manual_seed(0)
    delta = {"w": torch.randn(40, 7, generator=g), "b": torch.randn(40, generator=g)}
    path = save_surface(tmp_path / "s.h5", s, delta=delta, eta=delta)
    original = path.read_bytes()
    refused = harmless = 0
    for offset in range(0, len(original) - 8, 53):
        damaged = bytearray(original)
        damaged[offset:offset + 8] = b"\xff" * 8
        path.write_bytes(bytes(damaged))
        try:
            got, (d, e, _) = load_surface(path), load_directions(path)
        except SurfaceFileError:
            refused += 1
            continue
        assert np.array_equal(got.values["train_loss"], s.values["train_loss"]), offset
        assert all(torch.equal(d[k], delta[k]) and torch.equal(e[k], delta[k]) for k in delta), offset
        harmless += 1
    assert refused > 0 and harmless >= 0
