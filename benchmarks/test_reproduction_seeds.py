"""Every training seed, not only seed 0 (``--lossbench-all-seeds``): seeds 1 and 2 of each net of the
matrix (every further seed its spread stores), loaded from ``baselines/<scale>/seed-nets/`` (verified by sha256), measured as the main job
measures seed 0 (:func:`lossbench.reproduce.study_net`), and compared with the values the claims use
for them: the seed-0 file's spread (:func:`lossbench.baselines.seed_baseline`). The stored values must
belong to these weights (the spread records each seed's weights hash), so a spread measured on other
weights fails here instead of deciding a claim.

    pytest benchmarks --lossbench-all-seeds -k seeds
"""

import pytest

from lossbench.baselines import compare, further_seeds, seed_baseline

from _timing import float32_sha

SEEDS = (1, 2)


def pytest_generate_tests(metafunc):
    if "seed_config" in metafunc.fixturenames:
        import json

        from lossbench.config import get_scale
        from lossbench.pytest_plugin import _baselines_dir

        scale = get_scale(metafunc.config.getoption("lossbench_scale") or "small")
        params = []
        for c in scale.all_configs:
            path = _baselines_dir(metafunc.config) / scale.name / f"{c.config_id}.json"
            doc = json.loads(path.read_text()) if path.exists() else None
            params += [pytest.param(c.replace(seed=s), id=c.replace(seed=s).config_id) for s in further_seeds(doc, SEEDS)]
        metafunc.parametrize("seed_config", params)


@pytest.mark.study(kind="seed-nets", part="all", param="seed_config", subdir="seeds", option="lossbench_all_seeds")
def test_seed_net(seed_config, pytestconfig, lossbench_scale, lossbench_dataset, lossbench_baselines_dir,
                  lossbench_baseline_doc, lossbench_results_dir, lossbench_device, lossbench_progress,
                  lossbench_helpers):
    from lossbench.parallel import unit_key
    from lossbench.reference_nets import load_reference
    from lossbench.reproduce import study_net

    if not pytestconfig.getoption("lossbench_all_seeds"):
        pytest.skip("seeds 1-2 are recomputed only with --lossbench-all-seeds (the main job checks seed 0)")
    if not lossbench_scale.shipped:
        pytest.skip(f"the {lossbench_scale.name} scale retrains its seeds on each machine: their numbers are "
                    "held to the spread band by tests/test_regression.py, not to stored values")
    base_id = seed_config.replace(seed=0).config_id
    doc = lossbench_baseline_doc(base_id)
    expected = seed_baseline(doc, seed_config.seed)
    net = load_reference(seed_config.config_id, lossbench_baselines_dir, lossbench_scale.name,
                         device=lossbench_device, kind="seed-nets")
    sha = float32_sha(net)
    if expected["weights_sha256"] != sha:
        pytest.fail(f"{seed_config.config_id}: the values stored for seed {seed_config.seed} in "
                    f"baselines/{lossbench_scale.name}/{base_id}.json were measured on other weights (stored "
                    f"{str(expected['weights_sha256'])[:12]}, shipped {sha[:12]}): measure them again with `python -m "
                    f"lossbench baselines --scale {lossbench_scale.name} --spread --only {base_id}`")
    _, metrics = lossbench_helpers.take(
        unit_key("seed-nets", seed_config.config_id),
        lambda: study_net(seed_config, lossbench_scale, net=net, data=lossbench_dataset(seed_config),
                          results_dir=lossbench_results_dir / "seeds", log=lossbench_progress),
        say=lossbench_progress, label=f"{seed_config.config_id}: the study")
    rows = compare({k: v for k, v in metrics.items() if k in expected["metrics"]}, expected)
    bad = [r for r in rows if not r.ok]
    assert not bad, (f"{len(bad)} of {len(rows)} metrics of {seed_config.config_id} differ from the values the "
                     f"claims use (baselines/{lossbench_scale.name}/{base_id}.json, spread at seed "
                     f"{seed_config.seed}):\n" + "\n".join(r.line() for r in bad))
