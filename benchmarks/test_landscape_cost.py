"""What ``landscape_regression.check`` costs in a user's unit-test suite (issue 25 asks for an 11x11 grid
over 512 samples of a 100k-parameter MLP in under 30 s on 2 CPU cores):

    pytest benchmarks -k landscape_cost --benchmark-autosave

Two rows: a later run (the grid, its metrics and the Hessian's lambda_max and trace, compared with
the stored file) and the first run (the same, plus the float64 recompute that measures each metric's
tolerance). Reported, not asserted.
"""

import pytest
import torch
from torch import nn

from lossbench.regression import LandscapeSpec, check_landscape

from _timing import mean_seconds, run_on_request


@pytest.fixture(scope="module")
def mlp_and_data():
    torch.manual_seed(0)
    x = torch.randn(512, 128)
    y = torch.randint(0, 10, (512,))
    model = nn.Sequential(nn.Linear(128, 384), nn.ReLU(), nn.Linear(384, 128), nn.ReLU(), nn.Linear(128, 10))
    assert 95_000 < sum(p.numel() for p in model.parameters()) < 105_000
    return model, x, y


@pytest.mark.parametrize("run", ["first", "later"])
def test_landscape_cost(benchmark, pytestconfig, mlp_and_data, run, tmp_path):
    run_on_request(pytestconfig, "landscape_cost", "the landscape_regression cost")
    model, x, y = mlp_and_data
    spec = LandscapeSpec(grid=11, directions=2)
    benchmark.group = "landscape-regression:mlp-100k-512x11x11"
    if run == "later":
        check_landscape(model, (x, y), folder=tmp_path, name="mlp", spec=spec)

    def go():
        if run == "first":
            (tmp_path / "mlp.json").unlink(missing_ok=True)
        return check_landscape(model, (x, y), folder=tmp_path, name="mlp", spec=spec)

    outcome = benchmark.pedantic(go, rounds=3, iterations=1, warmup_rounds=0)
    assert outcome.status == ("created" if run == "first" else "passed"), outcome.message
    benchmark.extra_info.update(kind="landscape-cost", run=run, parameters=sum(p.numel() for p in model.parameters()),
                                samples=512, grid="11x11", seconds=mean_seconds(benchmark),
                                threads=torch.get_num_threads())
