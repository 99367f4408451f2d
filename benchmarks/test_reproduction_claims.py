"""The paper's claims over every net measured in this session (runs after test_reproduction.py and
test_curvature.py, which fill ``lossbench_records``), and the 1D interpolations of the
filter-normalisation experiment (small- to large-batch solution, at each weight decay).

Each claim is judged on every direction pair; its verdict must equal the one recorded in
``baselines/<scale>/claims.json``, and so must the set of converged nets. A claim that is
inconclusive although all its nets reached a minimum fails too.
"""

import pytest

from lossbench.claims import INCONCLUSIVE, evaluate_claims, missing_nets
from lossbench.metrics import interpolation_summary
from lossbench.reproduce import interpolation_file


def _weight_decays(scale):
    return sorted({c.weight_decay for c in scale.normalization_configs})


def pytest_generate_tests(metafunc):
    if "weight_decay" in metafunc.fixturenames:
        from lossbench.config import get_scale

        scale = get_scale(metafunc.config.getoption("lossbench_scale"))
        decays = _weight_decays(scale)
        metafunc.parametrize("weight_decay", decays, ids=[f"wd{wd:g}" for wd in decays])


def test_interpolation(benchmark, weight_decay, lossbench_scale, lossbench_net, lossbench_dataset,
                       lossbench_results_dir, lossbench_records):
    """theta(alpha) = theta_128 + alpha (theta_2000 - theta_128): the paper's Figure 2 (left)."""
    configs = sorted((c for c in lossbench_scale.normalization_configs if c.weight_decay == weight_decay),
                     key=lambda c: c.batch_size)
    small, large = lossbench_net(configs[0]), lossbench_net(configs[-1])
    data = lossbench_dataset(configs[0])
    path = lossbench_results_dir / f"interpolation-sgd-wd{weight_decay:g}.h5"
    benchmark.group = f"interpolation:{lossbench_scale.name}"
    line = benchmark.pedantic(
        interpolation_file, args=(path, small.model, large.model, data, lossbench_scale),
        kwargs=dict(attrs={"from": configs[0].config_id, "to": configs[-1].config_id}),
        rounds=1, iterations=1, warmup_rounds=0,
    )
    summary = {"from": configs[0].config_id, "to": configs[-1].config_id,
               "train": interpolation_summary(line.alphas, line.values["train_loss"]),
               "path": str(path.relative_to(lossbench_results_dir.parent.parent))}
    lossbench_records["interpolations"][f"wd{weight_decay:g}"] = summary
    benchmark.extra_info.update(kind="interpolation", scale=lossbench_scale.name, weight_decay=weight_decay,
                                surface_path=summary["path"], **{k: summary[k] for k in ("from", "to")})


def test_claims(lossbench_scale, lossbench_records, lossbench_verdicts, lossbench_selected_configs, record_property):
    nets = lossbench_records["nets"]
    expected = {c.config_id for c in lossbench_scale.all_configs}
    gap = missing_nets(expected, nets, lossbench_selected_configs)
    if gap is not None:
        action, why = gap
        if action == "fail":
            pytest.fail(why)
        pytest.skip(why)
    claims = evaluate_claims(list(nets.values()), eig_maps=lossbench_records["eig_maps"])
    for c in claims:
        print(f"{c.verdict:>12}  {c.key}: " + "; ".join(
            ", ".join(f"{k} {v:.4g}" for k, v in p.items() if k != "holds") for p in c.per_pair))
    stuck = [c.key for c in claims if c.verdict == INCONCLUSIVE and all(n["converged"] for n in c.nets.values())]
    assert not stuck, f"inconclusive although every net converged: {stuck}"
    if lossbench_scale.name == "ci":
        pytest.skip("ci tests the pipeline, not the science: its claims are printed, not judged")
    lossbench_verdicts({c.key: c.verdict for c in claims}, {k: bool(r["converged"]) for k, r in nets.items()},
                       numbers={c.key: list(c.per_pair) for c in claims})
