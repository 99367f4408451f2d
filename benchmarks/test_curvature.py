"""Curvature beyond a random slice (paper sections 6-7): Hessian eigen-ratio maps for the ResNet-56
pairs at batch 128 of each recipe (their Figure 7), and the training path on its PCA plane (Figure 9).

Beyond the paper, the Hessian spectra of the matrix stored in baselines/<scale>/spectrum/ (written with
``python -m lossbench baselines --spectrum``: the SLQ density, the outliers, the negative share, the plane of
the top two eigenvectors): their top three eigenvalues are recomputed and checked, and the stored summary
goes to the claims and the report.

Their summaries go to extra_info for the report and the claims; the eigen-ratio map summaries are
checked against baselines/<scale>/eigmap/<config_id>.json (where that file stores every point's
eigenvalues, only every ``scale.eig_map_check``-th point is recomputed and checked, the others taken
from it), the PCA-plane surface point by point against baselines/<scale>/trajectory/<config_id>.json.
"""

import pytest

from lossbench.baselines import uncertainty_context
from lossbench.config import find_config
from lossbench.reproduce import eig_map_summary, spectrum_check_metrics, trajectory_metrics

from _timing import float32_sha, mean_seconds


@pytest.fixture(scope="module")
def net_at(lossbench_scale, lossbench_net, lossbench_dataset):
    def get(depth, shortcut, batch_size=128):
        cfg = find_config(lossbench_scale.name, depth=depth, shortcut=shortcut, batch_size=batch_size)
        return lossbench_net(cfg), lossbench_dataset(cfg)

    return get


def pytest_generate_tests(metafunc):
    from lossbench.config import get_scale

    scale = get_scale(metafunc.config.getoption("lossbench_scale") or "small")
    if "eig_map_config" in metafunc.fixturenames:
        configs = scale.eig_map_configs
        metafunc.parametrize("eig_map_config", configs, ids=[c.config_id.removesuffix("-bs128-s0") for c in configs])
    if "spectrum_config" in metafunc.fixturenames:  # the matrix, of every recipe it holds (Scale.no_spectrum aside)
        configs = scale.spectrum_configs
        metafunc.parametrize("spectrum_config", configs, ids=[c.config_id.removesuffix("-s0") for c in configs])


def test_eigen_ratio_map(benchmark, eig_map_config, lossbench_net, lossbench_dataset, lossbench_scale,
                         lossbench_results_dir, lossbench_baseline, lossbench_baseline_doc, lossbench_records,
                         lossbench_progress):
    net, data = lossbench_net(eig_map_config), lossbench_dataset(eig_map_config)
    config = net.config
    path = lossbench_results_dir / config.config_id / "eig-map.h5"
    benchmark.group = f"eig-map:{lossbench_scale.name}"
    doc = lossbench_baseline_doc(f"eigmap/{config.config_id}")
    # where the baseline stores every point, the scale's check points are recomputed and the rest taken from it
    stored = {name: entry["value"] for name, entry in (doc.get("metrics") or {}).items() if "@" in name}
    surface, summary = benchmark.pedantic(
        eig_map_summary, args=(path, net.model, data, lossbench_scale),
        kwargs=dict(attrs={"config_id": config.config_id, "kind": "eig-map"}, stored=stored or None),
        rounds=1, iterations=1, warmup_rounds=0,
    )
    eig_record = {"summary": summary, **uncertainty_context(doc)}
    lossbench_records["eig_maps"][config.config_id] = eig_record
    lossbench_progress(f"{config.config_id}: eigen-ratio map {lossbench_scale.eig_map} x {lossbench_scale.eig_map}")
    points = int(surface.done.size)
    benchmark.extra_info.update(
        kind="eig-map", config_id=config.config_id, config=config.to_dict(), scale=lossbench_scale.name,
        grid=list(surface.shape), points=points, hessian_samples=lossbench_scale.eig_samples,
        seconds_per_point=mean_seconds(benchmark) / points, eig_summary=summary, eig_record=eig_record,
        final=dict(net.final),
        surface_path=str(path.relative_to(lossbench_results_dir.parent.parent)),
    )
    lossbench_baseline(f"eigmap/{config.config_id}", summary, config_hash=config.config_hash,
                       weights_sha256=float32_sha(net), not_recomputed=[n for n in stored if n not in summary])


def test_trajectory_plane(benchmark, net_at, lossbench_scale, lossbench_results_dir, lossbench_baseline):
    """The loss on the PCA plane of ResNet-20's path, with the path drawn on it (Figure 9); every point
    of it checked against baselines/<scale>/trajectory/<config_id>.json."""
    net, data = net_at(20, True)
    config = net.config
    path = lossbench_results_dir / config.config_id / "trajectory.h5"
    benchmark.group = f"trajectory:{lossbench_scale.name}"
    metrics = benchmark.pedantic(trajectory_metrics, args=(path, net.model, net, data, lossbench_scale),
                                 rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(
        kind="trajectory", config_id=config.config_id, scale=lossbench_scale.name,
        explained_variance_ratio=[metrics["pca_var_1"], metrics["pca_var_2"]],
        surface_path=str(path.relative_to(lossbench_results_dir.parent.parent)),
    )
    lossbench_baseline(f"trajectory/{config.config_id}", metrics, config_hash=config.config_hash,
                       weights_sha256=float32_sha(net))


def test_spectrum(benchmark, spectrum_config, lossbench_net, lossbench_dataset, lossbench_scale, lossbench_baseline,
                  lossbench_baseline_doc, lossbench_records, lossbench_progress):
    """The stored spectrum of a shipped net (the expensive SLQ and top-16 run when the baseline was
    written): its top three eigenvalues over the same images recomputed and checked at their recompute
    tolerance, which also ties the stored summary to these weights; the summary, its seed spread and its
    uncertainties go to the claims."""
    if not lossbench_scale.shipped:
        pytest.skip(f"the {lossbench_scale.name} scale retrains its nets on each machine: the spectra are stored "
                    "for the shipped nets (--lossbench-scale small)")
    config = spectrum_config
    doc = lossbench_baseline_doc(f"spectrum/{config.config_id}")
    if not doc:
        pytest.skip(f"baselines/{lossbench_scale.name}/spectrum/{config.config_id}.json is not written yet: "
                    f"python -m lossbench baselines --scale {lossbench_scale.name} --spectrum --only {config.config_id}")
    net, data = lossbench_net(config), lossbench_dataset(config)
    benchmark.group = f"spectrum:{lossbench_scale.name}"
    metrics = benchmark.pedantic(spectrum_check_metrics, args=(net.model, data, lossbench_scale), rounds=1,
                                 iterations=1, warmup_rounds=0)
    record = {"summary": doc["summary"], **uncertainty_context(doc)}
    lossbench_records["spectra"][config.config_id] = record
    lossbench_progress(f"{config.config_id}: spectrum's top eigenvalues {', '.join(f'{v:.4g}' for v in metrics.values())}")
    benchmark.extra_info.update(kind="spectrum", config_id=config.config_id, config=config.to_dict(),
                                scale=lossbench_scale.name, spectrum_record=record, top_check=metrics,
                                hessian_samples=lossbench_scale.spectrum_samples)
    lossbench_baseline(f"spectrum/{config.config_id}", metrics, config_hash=config.config_hash,
                       weights_sha256=float32_sha(net))
