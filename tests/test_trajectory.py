import numpy as np
import pytest
import torch

from lossbench.config import RunConfig
from lossbench.store import load_surface
from lossbench.trajectory import path_extent, pca_directions, project


def synthetic_path(n_epochs=8, seed=0):
    """A path that moves mostly along one fixed vector, a little along a second, plus noise."""
    g = torch.Generator().manual_seed(seed)
    final = {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "bn.weight": torch.ones(4),
             "fc.weight": torch.randn(10, 4, generator=g)}
    u = {k: torch.randn(v.shape, generator=g) for k, v in final.items()}
    w = {k: torch.randn(v.shape, generator=g) for k, v in final.items()}
    thetas = []
    for e in range(n_epochs):
        s = (n_epochs - 1 - e) / (n_epochs - 1)
        thetas.append({k: final[k] + 5 * s * u[k] + 0.8 * np.sin(3 * s) * w[k]
                       + 0.01 * torch.randn(final[k].shape, generator=g) for k in final})
    thetas[-1] = {k: v.clone() for k, v in final.items()}
    return thetas, final


def test_pca_captures_a_low_dimensional_path():
    thetas, final = synthetic_path()
    pca = pca_directions(thetas, final)
    assert pca.explained_variance_ratio.sum() > 0.99
    assert pca.explained_variance_ratio[0] > pca.explained_variance_ratio[1]
    assert pca.coords.shape == (8, 2) and np.allclose(pca.coords[-1], 0.0)
    # unit, orthogonal components; 1-D tensors are left out (biasbn)
    flat = lambda d: torch.cat([t.reshape(-1) for t in d.values()]).double()
    # float32 like theta
    assert flat(pca.delta).norm() == pytest.approx(1.0, abs=1e-6) and abs(float(flat(pca.delta) @ flat(pca.eta))) < 1e-6
    assert torch.count_nonzero(pca.delta["bn.weight"]) == 0


def test_projection_on_the_pca_plane_matches_the_coordinates():
    thetas, final = synthetic_path()
    pca = pca_directions(thetas, final)
    np.testing.assert_allclose(project(thetas, final, pca.delta, pca.eta), pca.coords, rtol=1e-6, atol=1e-6)


def test_too_few_or_static_checkpoints_are_errors():
    thetas, final = synthetic_path(n_epochs=2)
    with pytest.raises(ValueError, match="at least 3 checkpoints"):
        pca_directions(thetas, final)
    with pytest.raises(ValueError, match="does not move"):
        pca_directions([final, final, final], final)


def test_path_extent_covers_the_path_and_the_origin():
    coords = np.array([[-4.0, 1.0], [-1.0, 2.0], [0.0, 0.0]])
    (x0, x1), (y0, y1) = path_extent(coords)
    assert x0 < -4 and x1 >= 0 and y0 <= 0 and y1 > 2


def test_trajectory_cli(tmp_path, capsys, monkeypatch):
    cfg = RunConfig(depth=8, batch_size=32, epochs=3, n_train=128, n_test=64, image_size=16)
    from lossbench.train import train

    train(cfg, cache_dir=tmp_path)
    out = tmp_path / "t.h5"
    from lossbench import __main__ as cli

    args = cli.build_parser().parse_args(["trajectory", "--cache-dir", str(tmp_path), "--grid", "3",
                                          "--eval-samples", "16", "-o", str(out), "--plot"])
    args.scale = "ci"
    import lossbench.cli_inputs as cli_inputs

    monkeypatch.setattr(cli_inputs, "config_from_args", lambda a: cfg)  # a tiny config instead of the scale's
    assert cli.cmd_trajectory(args) == 0
    text = capsys.readouterr().out
    assert "PCA explained variance" in text and (tmp_path / "t.png").exists()
    s = load_surface(out)
    assert s.shape == (3, 3) and s.attrs["directions"] == "pca" and len(s.attrs["path"]) == 4


def test_pca_centres_the_path_as_the_authors_sklearn_pca_does():
    """A path whose rows share a large mean offset: centred, the components are the directions the path
    varies along (u, then w); uncentred, the first would be the offset z. The oracle is numpy's SVD of
    the centred matrix (sklearn's PCA, which the authors' code uses, centres)."""
    g = torch.Generator().manual_seed(1)
    shape = (6, 3, 3, 3)
    final = {"conv.weight": torch.zeros(shape, dtype=torch.float64)}
    z, u, w = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    a = torch.linspace(-1, 1, 9, dtype=torch.float64)
    thetas = [{"conv.weight": 10 * z + 2 * ai * u + 0.5 * torch.sin(3 * ai) * w} for ai in a]
    pca = pca_directions(thetas, final)
    X = torch.stack([t["conv.weight"].reshape(-1) for t in thetas]).numpy()
    Xc = X - X.mean(0)
    _, s, vt = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(pca.explained_variance_ratio, (s**2 / (s**2).sum())[:2], rtol=1e-9)
    d = pca.delta["conv.weight"].reshape(-1).double().numpy()
    assert abs(d @ vt[0]) == pytest.approx(1.0, abs=1e-9)
    cos = lambda x, y: abs(float(x @ y)) / float(np.linalg.norm(x) * np.linalg.norm(y))
    assert cos(d, u.reshape(-1).numpy()) > 0.9 and cos(d, z.reshape(-1).numpy()) < 0.5


def test_the_pca_plane_metrics_of_two_nets_share_names_where_their_extents_differ():
    """A net retrained on another CPU spans another extent on its own PCA plane: its grid values must
    carry the same names (by grid index) so that the spread tier can compare them point by point, and
    each name must hold the value at that place of the grid (alpha index first)."""
    from types import SimpleNamespace

    from lossbench.reproduce import grid_values

    loss = np.arange(12, dtype=float).reshape(4, 3)  # loss[i, j]: alpha index i, beta index j
    one = SimpleNamespace(alphas=np.linspace(-1.0, 2.0, 4), betas=np.linspace(-0.5, 0.5, 3), values={"train_loss": loss})
    other = SimpleNamespace(alphas=np.linspace(-7.3, 4.1, 4), betas=np.linspace(-2.0, 9.0, 3),
                            values={"train_loss": loss + 1})
    a, b = grid_values(one, by_index=True), grid_values(other, by_index=True)
    assert set(a) == set(b) and len(a) == 12
    assert a["train_loss@i03,j01"] == loss[3, 1] and a["train_loss@i00,j02"] == loss[0, 2]
    # named by coordinates, the two grids would share no point at all
    assert not set(grid_values(one)) & set(grid_values(other))
