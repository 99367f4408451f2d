"""The paper's claims over every net measured in this session (runs after test_reproduction.py and
test_curvature.py, which fill ``lossbench_records``), the 1D interpolations of the
filter-normalisation experiment (small- to large-batch solution, at each weight decay), and the stored
mode-connecting curves between training seeds (recomputed at a few points, their barriers judged).

Each claim is judged on every direction pair; its verdict must equal the one recorded in
``baselines/<scale>/claims.json``, and so must the set of converged nets. A claim that is
inconclusive although all its nets reached a minimum fails too.
"""

import json

import pytest

from lossbench.baselines import load_paper_numbers
from lossbench.claims import INCONCLUSIVE, claims_json, evaluate_claims, missing_nets
from lossbench.reproduce import interpolation_metrics


def _weight_decays(scale):
    return sorted({c.weight_decay for c in scale.normalization_configs})


def pytest_generate_tests(metafunc):
    if "connect_config" in metafunc.fixturenames:
        from lossbench.config import get_scale

        scale = get_scale(metafunc.config.getoption("lossbench_scale") or "small")
        configs = [pytest.param(c, id=c.config_id) for c in scale.connect_configs] or [pytest.param(
            None, id="none", marks=pytest.mark.skip(reason=f"the {scale.name} scale joins no training seeds by "
                                                           "curves (its connect_configs are empty)"))]
        metafunc.parametrize("connect_config", configs)
    if "weight_decay" in metafunc.fixturenames:
        from lossbench.config import get_scale

        scale = get_scale(metafunc.config.getoption("lossbench_scale"))
        decays = _weight_decays(scale)
        metafunc.parametrize("weight_decay", decays, ids=[f"wd{wd:g}" for wd in decays])


def test_interpolation(benchmark, weight_decay, lossbench_scale, lossbench_net, lossbench_dataset,
                       lossbench_results_dir, lossbench_records, lossbench_baseline):
    """theta(alpha) = theta_128 + alpha (theta_2000 - theta_128), BatchNorm statistics interpolated too:
    the paper's Figure 2 (left); loss and accuracy at every alpha checked against
    baselines/<scale>/interpolation/sgd-wd<wd>.json."""
    configs = sorted((c for c in lossbench_scale.normalization_configs if c.weight_decay == weight_decay),
                     key=lambda c: c.batch_size)
    small, large = lossbench_net(configs[0]), lossbench_net(configs[-1])
    data = lossbench_dataset(configs[0])
    path = lossbench_results_dir / f"interpolation-sgd-wd{weight_decay:g}.h5"
    benchmark.group = f"interpolation:{lossbench_scale.name}"
    metrics = benchmark.pedantic(
        interpolation_metrics, args=(path, small.model, large.model, data, lossbench_scale),
        kwargs=dict(attrs={"from": configs[0].config_id, "to": configs[-1].config_id}),
        rounds=1, iterations=1, warmup_rounds=0,
    )
    summary = {"from": configs[0].config_id, "to": configs[-1].config_id,
               "train": {k: metrics[k] for k in ("loss_start", "loss_end", "barrier", "nonfinite_points")},
               "path": str(path.relative_to(lossbench_results_dir.parent.parent))}
    lossbench_records["interpolations"][f"wd{weight_decay:g}"] = summary
    benchmark.extra_info.update(kind="interpolation", scale=lossbench_scale.name, weight_decay=weight_decay,
                                surface_path=summary["path"], **{k: summary[k] for k in ("from", "to")})
    lossbench_baseline(f"interpolation/sgd-wd{weight_decay:g}", metrics)


def test_connection(benchmark, connect_config, lossbench_scale, lossbench_dataset, lossbench_baselines_dir,
                    lossbench_device, lossbench_records, lossbench_baseline):
    """The mode-connecting curve between training seeds 0 and 1, as shipped (its control point in
    baselines/<scale>/connect/), recomputed at the scale's ``connect_check_t`` with BatchNorm statistics
    recomputed there, against baselines/<scale>/connect/<config_id>.json; the barriers of every seed
    pair's curve, stored there, go to the connectivity claim."""
    from lossbench.connect import parameters_of
    from lossbench.reference_nets import load_control_point, load_reference
    from lossbench.reproduce import curve_check_metrics

    cid = connect_config.config_id
    path = lossbench_baselines_dir / lossbench_scale.name / "connect" / f"{cid}.json"
    if not path.exists():
        pytest.skip(f"{path} is not written yet: python -m lossbench baselines --scale {lossbench_scale.name} --connect")
    doc = json.loads(path.read_text())
    i, j = doc["checked_pair"]
    pair = next(p for p in doc["pairs"] if p["seeds"] == [i, j])
    nets = [load_reference(connect_config.replace(seed=s).config_id, lossbench_baselines_dir, lossbench_scale.name,
                           device=lossbench_device, kind="nets" if s == 0 else "seed-nets") for s in (i, j)]
    control = load_control_point(path.with_name(pair["control_file"]), pair["control_sha256"], f"{cid} curve")
    model = nets[0].model
    theta_a, theta_b = parameters_of(model), parameters_of(nets[1].model)
    benchmark.group = f"connection:{lossbench_scale.name}"
    metrics = benchmark.pedantic(curve_check_metrics, args=(model, theta_a, theta_b, control,
                                                            lossbench_dataset(connect_config), lossbench_scale),
                                 rounds=1, iterations=1, warmup_rounds=0)
    lossbench_records["connections"][cid] = {"pairs": doc["pairs"]}
    benchmark.extra_info.update(kind="connection", scale=lossbench_scale.name, config_id=cid, pairs=doc["pairs"],
                                paths=doc["paths"], checked={"seeds": [i, j], "metrics": metrics})
    lossbench_baseline(f"connect/{cid}", metrics)


def test_claims(lossbench_scale, lossbench_records, lossbench_verdicts, lossbench_selected_configs,
                lossbench_baselines_dir):
    nets = lossbench_records["nets"]
    expected = {c.config_id for c in lossbench_scale.all_configs}
    gap = missing_nets(expected, nets, lossbench_selected_configs)
    if gap is not None:
        action, why = gap
        if action == "fail":
            pytest.fail(why)
        pytest.skip(why)
    published = load_paper_numbers(lossbench_baselines_dir)["test_error_percent"]
    claims = evaluate_claims(list(nets.values()), eig_maps=lossbench_records["eig_maps"], published=published,
                             connections=lossbench_records["connections"], spectra=lossbench_records["spectra"])
    for c in claims:
        print(f"{c.verdict:>12}  {c.key}: {c.summary()}")
    stuck = [c.key for c in claims if c.verdict == INCONCLUSIVE and all(n["converged"] for n in c.nets.values())]
    assert not stuck, f"inconclusive although every net converged: {stuck}"
    if lossbench_scale.name == "ci":
        pytest.skip("ci tests the pipeline, not the science: its claims are printed, not judged")
    lossbench_verdicts({c.key: c.verdict for c in claims}, {k: bool(r["converged"]) for k, r in nets.items()},
                       numbers=claims_json(claims))
