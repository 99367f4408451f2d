"""A person with a ``model.py`` and a ``data.pt``: a 2D surface and its plots, the Hessian extremes, an
eigen-ratio map and a trajectory from the command line alone, in the authors' file format and units;
and every misuse answered with a message that says what to do.

The model and the data are defined only here (written into the test's folder), never seen by lossbench.
"""

from __future__ import annotations

import json
import math
import textwrap

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from lossbench.__main__ import main
from lossbench.evaluate import evaluate, make_batches
from lossbench.hessian import hessian_eigs
from lossbench.store import load_surface

MODEL_PY = textwrap.dedent('''
    import torch
    from torch import nn


    def make_net(width=12):
        return nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 3))


    def make_regressor():
        return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))


    def not_a_model():
        return 42


    summed_loss = nn.CrossEntropyLoss(reduction="sum")
''')


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A folder with model.py, data.pt, a training path ep0..ep3.pt and final.pt (a DataParallel-style
    dict), and a regression net with its data."""
    folder = tmp_path_factory.mktemp("own")
    (folder / "model.py").write_text(MODEL_PY)
    namespace: dict = {}
    exec(MODEL_PY, namespace)  # the same classes the CLI will import from the file
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 6, generator=g) * 2
    y = torch.randint(0, 3, (240,), generator=g)
    x = centres[y] + torch.randn(240, 6, generator=g)
    torch.save({"train_x": x[:192], "train_y": y[:192], "test_x": x[192:], "test_y": y[192:]}, folder / "data.pt")
    torch.manual_seed(0)
    net = namespace["make_net"](width=12)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for epoch in range(4):
        torch.save(net.state_dict(), folder / f"ep{epoch}.pt")
        for i in range(0, 192, 32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    net.eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 4},
               folder / "final.pt")
    reg = namespace["make_regressor"]()
    torch.save(reg.state_dict(), folder / "reg.pt")
    torch.save({"x": x[:64], "y": x[:64, :1] * 0.5}, folder / "reg-data.pt")
    return folder, net, x[:192], y[:192]


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_surface_hessian_map_and_trajectory_of_a_model_from_a_file(own, capsys):
    folder, net, x, y = own
    base = ["--model", f"{folder}/model.py:make_net", "--model-kwargs", '{"width": 12}', "--data", folder / "data.pt"]

    rc, out, err = _run(["surface", *base, "--weights", folder / "final.pt", "--x", "-1:1:5", "--y", "-1:1:5",
                         "--dataset", "train,test", "-o", folder / "s2.h5", "--plot"], capsys)
    assert rc == 0, err
    assert "surface-2d of final" in out
    s = load_surface(folder / "s2.h5")
    centre = s.center_index()
    direct = evaluate(net, nn.CrossEntropyLoss(), make_batches(x, y, 500))
    assert s.values["train_loss"][centre] == pytest.approx(direct.loss, rel=1e-6)
    assert s.values["train_acc"][centre] == pytest.approx(direct.acc, rel=1e-9)  # a fraction in memory
    with h5py.File(folder / "s2.h5") as f:  # the authors' names, accuracy in percent, the unit said
        assert f["train_acc"][2, 2] == pytest.approx(100 * direct.acc)
        assert "test_loss" in f and f.attrs["accuracy_unit"] == "percent"
        meta = json.loads(f.attrs["metadata"])
    assert meta["model"].endswith("model.py:make_net") and meta["loss"] == "crossentropy"
    assert meta["config"] is None and len(meta["inputs"]["theta_sha256"]) == 64
    assert (folder / "s2_2dcontour.png").exists() or any(folder.glob("s2*.png"))

    rc, out, err = _run(["hessian", *base, "--weights", folder / "final.pt", "--max-iter", "200", "--tol", "1e-6"],
                        capsys)
    assert rc == 0, err
    reported = float(out.split("lambda_max")[1].split()[0])
    expected = hessian_eigs(net, nn.CrossEntropyLoss(), make_batches(x, y, 500), max_iter=200, tol=1e-6).eig_max
    assert reported == pytest.approx(expected, rel=1e-4)
    assert "Hessian over 2 tensors" in out  # the two weight matrices: biases and BN left out (--ignore biasbn)

    rc, out, err = _run(["hessian", *base, "--weights", folder / "final.pt", "--x", "-0.5:0.5:3", "--y", "-0.5:0.5:3",
                         "--max-iter", "40", "-o", folder / "eig.h5", "--plot"], capsys)
    assert rc == 0, err
    m = load_surface(folder / "eig.h5")
    assert m.done.all() and m.attrs["hessian"]["parameters"] == 6 * 12 + 12 * 3
    assert any(folder.glob("eig*.png"))

    weights = [folder / f"ep{i}.pt" for i in range(4)] + [folder / "final.pt"]
    rc, out, err = _run(["trajectory", *base, "--weights", *weights, "--grid", "3", "-o", folder / "t.h5", "--plot"],
                        capsys)
    assert rc == 0, err
    t = load_surface(folder / "t.h5")
    assert t.attrs["directions"] == "pca" and len(t.attrs["path"]) == 5 and t.done.all()


def test_a_regression_net_with_mse(own, capsys):
    folder, *_ = own
    rc, out, err = _run(["surface", "--model", f"{folder}/model.py:make_regressor", "--weights", folder / "reg.pt",
                         "--data", folder / "reg-data.pt", "--loss", "mse", "--x", "-1:1:5", "-o", folder / "r.h5",
                         "--plot"], capsys)
    assert rc == 0, err
    s = load_surface(folder / "r.h5")
    namespace: dict = {}
    exec(MODEL_PY, namespace)
    reg = namespace["make_regressor"]()
    reg.load_state_dict(torch.load(folder / "reg.pt", weights_only=True))
    data = torch.load(folder / "reg-data.pt", weights_only=True)
    with torch.no_grad():
        mse = float(nn.functional.mse_loss(reg(data["x"]), data["y"]))
    assert s.values["train_loss"][s.center_index()] == pytest.approx(mse, rel=1e-6)  # the MSE, not another loss
    assert np.all(np.isfinite(s.values["train_loss"])) and np.all(np.isnan(s.values["train_acc"]))
    assert s.attrs["loss"] == "mse"


MISUSES = [  # (extra arguments, words the one-line error must hold)
    (["--arch", "resnet56"], "--model names your own net"),
    (["--weights", "{f}/ep0.pt", "--data", None], "--model needs --data"),
    (["--model", "{f}/model.py:missing"], "has no 'missing'"),
    (["--model", "{f}/nothere.py:make_net"], "does not exist"),
    (["--model", "{f}/model.py:not_a_model"], "must return an nn.Module"),
    (["--model-kwargs", "{{width: 3}}"], "is not JSON"),
    (["--model-kwargs", '{{"width": 5}}'], "do not fit the model"),
    (["--weights", "{f}/reg.pt"], "do not fit the model"),
    (["--weights", "{f}/model.py"], "not a readable weights file"),
    (["--data", "{f}/ep0.pt"], "expected x and y"),
    (["--data", "{f}/missing.pt"], "does not exist"),
    (["--loss", "hinge"], "unknown loss 'hinge'"),
    (["--loss", "torch.nn:Nope"], "has no 'Nope'"),
    (["--dataset", "test", "--data", "{f}/reg-data.pt"], "has no test split"),
]


@pytest.mark.parametrize("extra,words", MISUSES, ids=[w for _, w in MISUSES])
def test_misuse_gets_one_line_that_says_what_to_do(own, tmp_path, capsys, extra, words):
    folder, *_ = own
    args = {"--model": f"{folder}/model.py:make_net", "--weights": f"{folder}/ep0.pt", "--data": f"{folder}/data.pt"}
    it = iter(extra)
    for flag in it:
        value = next(it)
        args[flag] = None if value is None else value.format(f=folder)
    argv = ["surface", "--x", "-1:1:3", "-o", tmp_path / "out.h5"]
    if "--arch" in args:
        argv += ["--arch", args.pop("--arch")]
    for flag, value in args.items():
        if value is not None:
            argv += [flag, value]
    rc, out, err = _run(argv, capsys)
    assert rc == 2, (rc, out, err)
    assert words in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.h5").exists()


def test_a_loss_by_class_is_instantiated_and_a_summing_loss_refused(own, capsys):
    folder, *_ = own
    base = ["hessian", "--model", f"{folder}/model.py:make_net", "--weights", folder / "ep0.pt",
            "--data", folder / "data.pt", "--max-iter", "5"]
    rc, out, err = _run([*base, "--loss", "torch.nn:CrossEntropyLoss"], capsys)
    assert "lambda_max" in out, err  # the class, instantiated with its default mean reduction
    rc, out, err = _run([*base, "--loss", f"{folder}/model.py:summed_loss"], capsys)
    assert rc == 2 and "reduction='sum'" in err and "batch" in err, err


def test_spectrum_of_a_model_from_a_file_writes_its_file_and_figure_and_resumes(own, capsys):
    """`python -m lossbench spectrum` on the README's own-model files: an HDF5 file whose Ritz values
    and weights redraw the density, the top eigenvalues of `hessian`, a figure; a rerun resumes."""
    from lossbench.hessian import Spectrum
    from lossbench.store import load_spectrum

    folder, net, x, y = own
    base = ["--model", f"{folder}/model.py:make_net", "--model-kwargs", '{"width": 12}', "--data", folder / "data.pt",
            "--weights", folder / "final.pt"]
    out_file = folder / "spec.h5"
    rc, out, err = _run(["spectrum", *base, "--probes", "3", "--steps", "20", "--top-k", "2", "-o", out_file,
                         "--plot"], capsys)
    assert rc == 0, err
    assert "mean eigenvalue tr(H)/n" in out and "top 2 eigenvalues" in out
    assert (folder / "spec.png").exists() and (folder / "spec.pdf").exists()
    stored = load_spectrum(out_file)
    assert stored["ritz_values"].shape == (3, 20) and stored["metadata"]["complete"]
    s = Spectrum(stored["ritz_values"], stored["ritz_weights"], stored["dim"])
    np.testing.assert_allclose(s.density(stored["density_grid"], stored["sigma"]), stored["density"], rtol=1e-12)
    expected = hessian_eigs(net, nn.CrossEntropyLoss(), make_batches(x, y, 500), max_iter=200, tol=1e-6).eig_max
    assert stored["top_eigenvalues"][0] == pytest.approx(expected, rel=1e-3)
    # an interrupted run (two of three probes written) resumes to the same numbers
    from lossbench.store import save_spectrum

    save_spectrum(out_file, nodes=stored["ritz_values"][:2], weights=stored["ritz_weights"][:2], dim=stored["dim"],
                  attrs={**stored["metadata"], "complete": False})
    rc, out, err = _run(["spectrum", *base, "--probes", "3", "--steps", "20", "--top-k", "2", "-o", out_file], capsys)
    assert rc == 0, err
    np.testing.assert_array_equal(load_spectrum(out_file)["ritz_values"], stored["ritz_values"])
    # other settings on the same file are refused, naming the difference and the fix
    rc, out, err = _run(["spectrum", *base, "--probes", "3", "--steps", "25", "-o", out_file], capsys)
    assert rc != 0 and "another computation" in err and "steps" in err and "--overwrite" in err
    # the summary numbers (outliers, bulk edge, negative mass) by the rule of spectrum_summary, printed and
    # stored, agreeing with the function on the stored numbers
    from lossbench.hessian import spectrum_summary

    rc, out, err = _run(["spectrum", *base, "--probes", "3", "--steps", "20", "--top-k", "6", "--max-iter", "300",
                         "-o", folder / "spec6.h5"], capsys)
    stored = load_spectrum(folder / "spec6.h5")
    summary = stored["metadata"]["summary"]
    assert set(summary) >= {"outliers", "bulk_edge", "outlier_ratio", "negative_mass", "slq_count_above_edge"}
    again = spectrum_summary(stored["top_eigenvalues"], stored["top_converged"].astype(bool),
                             Spectrum(stored["ritz_values"], stored["ritz_weights"], stored["dim"]))
    assert json.dumps(again, sort_keys=True) == json.dumps(summary, sort_keys=True)
    assert ("outliers above the largest ratio gap of the top 6" in out) == math.isfinite(summary["outliers"]), out
    assert "outliers" in out


def test_surface_on_the_hessian_eigenvector_plane_has_lambda1_and_lambda2_as_its_centre_curvatures(own, capsys):
    """`surface --directions hessian` on a smooth own model (the Tanh regressor, MSE): the fitted
    curvature at the centre is lambda1 along alpha and lambda2 along beta (see tests/test_spectrum.py
    for why a smooth net: a ReLU net's kinks add curvature the Hessian does not have)."""
    from lossbench.metrics import quadratic_fit_hessian

    folder, *_ = own
    out_file = folder / "eig-plane.h5"
    rc, out, err = _run(["surface", "--model", f"{folder}/model.py:make_regressor", "--weights", folder / "reg.pt",
                         "--data", folder / "reg-data.pt", "--loss", "mse", "--dtype", "float64",
                         "--directions", "hessian", "--x", "-0.01:0.01:11", "--y", "-0.01:0.01:11", "-o", out_file],
                        capsys)
    assert rc == 0, err
    assert "plane of the Hessian's top two eigenvectors" in out
    s = load_surface(out_file)
    plane = s.attrs["directions"]
    assert plane["kind"] == "hessian" and plane["theta_norm"] > 0
    h = quadratic_fit_hessian(s.alphas, s.betas, s.values["train_loss"], patch=0.01)
    lam1, lam2 = plane["eigenvalues"]
    assert h[0, 0] == pytest.approx(lam1, rel=1e-3) and h[1, 1] == pytest.approx(lam2, rel=1e-3)
    assert abs(h[0, 1]) <= 1e-3 * lam1
    rc, out, err = _run(["surface", "--model", f"{folder}/model.py:make_regressor", "--weights", folder / "reg.pt",
                         "--data", folder / "reg-data.pt", "--loss", "mse", "--directions", "hessian", "-o",
                         folder / "x.h5"], capsys)
    assert rc != 0 and "is a plane: give --y" in err and not (folder / "x.h5").exists()
