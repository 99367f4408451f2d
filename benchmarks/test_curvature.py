"""Curvature beyond a random slice (paper sections 6-7): Hessian eigen-ratio maps for the ResNet-56
pair at batch 128 (their Figure 7), and the training path on its PCA plane (Figure 9).

Their summaries go to extra_info for the report and the claims; the eigen-ratio map summaries are
checked against baselines/<scale>/eigmap/<config_id>.json.
"""

import pytest

from lossbench.config import find_config
from lossbench.metrics import eig_ratio_summary
from lossbench.pipeline import SurfaceSpec, eig_map_file, trajectory_file
from lossbench.reproduce import CURVATURE
from lossbench.surface import parse_axis
from lossbench.train import train
from lossbench.data import load_dataset

from _timing import mean_seconds


@pytest.fixture(scope="module")
def trained_at(lossbench_scale, lossbench_device, lossbench_cache_dir, pytestconfig):
    def get(depth, shortcut, batch_size=128):
        cfg = find_config(lossbench_scale.name, depth=depth, shortcut=shortcut, batch_size=batch_size)
        data_dir = pytestconfig.getoption("lossbench_data_dir")
        return train(cfg, device=lossbench_device, cache_dir=lossbench_cache_dir, data_dir=data_dir), \
            load_dataset(cfg, data_dir=data_dir)

    return get


@pytest.mark.parametrize("shortcut", [True, False], ids=["resnet56", "resnet56-noshort"])
def test_eigen_ratio_map(benchmark, shortcut, trained_at, lossbench_scale, lossbench_results_dir, lossbench_baseline):
    result, data = trained_at(56, shortcut)
    config = result.config
    axis = parse_axis(lossbench_scale.eig_map)
    spec = SurfaceSpec(x=axis, y=axis, eval_samples=CURVATURE["samples"], eval_batch=CURVATURE["samples"])
    path = lossbench_results_dir / config.config_id / "eig-map.h5"
    benchmark.group = f"eig-map:{lossbench_scale.name}"
    surface = benchmark.pedantic(
        eig_map_file, args=(path, result.model, data, spec),
        kwargs=dict(max_iter=CURVATURE["max_iter"], tol=CURVATURE["tol"], overwrite=True,
                    attrs={"config_id": config.config_id, "kind": "eig-map"}),
        rounds=1, iterations=1, warmup_rounds=0,
    )
    summary = eig_ratio_summary(surface.values["min_eig"], surface.values["max_eig"])
    points = int(surface.done.size)
    benchmark.extra_info.update(
        kind="eig-map", config_id=config.config_id, config=config.to_dict(), scale=lossbench_scale.name,
        grid=list(surface.shape), points=points, hessian_samples=CURVATURE["samples"],
        seconds_per_point=mean_seconds(benchmark) / points, eig_summary=summary, final=result.final,
        surface_path=str(path.relative_to(lossbench_results_dir.parent.parent)),
    )
    lossbench_baseline(f"eigmap/{config.config_id}", summary)


def test_trajectory_plane(benchmark, trained_at, lossbench_scale, lossbench_results_dir):
    result, data = trained_at(20, True)
    config = result.config
    path = lossbench_results_dir / config.config_id / "trajectory.h5"
    benchmark.group = f"trajectory:{lossbench_scale.name}"
    surface = benchmark.pedantic(
        trajectory_file, args=(path, result, data),
        kwargs=dict(grid=lossbench_scale.trajectory_grid, eval_samples=lossbench_scale.eval_samples, overwrite=True),
        rounds=1, iterations=1, warmup_rounds=0,
    )
    ev = surface.attrs["explained_variance_ratio"]
    benchmark.extra_info.update(
        kind="trajectory", config_id=config.config_id, scale=lossbench_scale.name, explained_variance_ratio=ev,
        surface_path=str(path.relative_to(lossbench_results_dir.parent.parent)),
    )
    assert 0.0 < ev[0] <= 1.0 and ev[1] <= ev[0]
