"""The installed plugin's ``landscape_regression`` fixture, used as a user would (issue 25): a throwaway
project holding one test file (no conftest, nothing of lossbench's), run by pytest in a fresh process."""

import json
import textwrap

import pytest

pytest_plugins = ["pytester"]

USER_TEST = textwrap.dedent('''
    import os

    import torch
    from torch import nn


    def trained_net():
        torch.manual_seed(0)
        x = torch.randn(512, 20)
        y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(50):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        if os.environ.get("SCALE_FIRST_LAYER"):
            with torch.no_grad():
                model[0].weight.mul_(1.05)
        return model, x, y


    def test_my_landscape(landscape_regression):
        model, x, y = trained_net()
        landscape_regression.check(model, (x, y))
''')


@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_user=USER_TEST)
    return pytester


def test_created_then_passed_then_failed_when_a_weight_moves_then_regenerated(project, monkeypatch):
    """Created (fails: review and commit), passed (also without the cache plugin), failed after the first
    layer's weight is scaled by 1.05 (a table of the metrics that moved, the obtained files beside the
    expected ones), regenerated with --lossbench-regen (fails: never silent), then passed (--lf)."""
    first = project.runpytest_subprocess()
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*created: *test_user/test_my_landscape.json (and test_my_landscape.h5): review and "
                                "commit*"])
    folder = project.path / "test_user"
    doc = json.loads((folder / "test_my_landscape.json").read_text())
    assert {"loss_center", "curv", "sharpness_0.5", "eig_max", "trace"} <= set(doc["metrics"])
    # measured tolerances (float64 recompute), far below the 1 % a change of the model moves a metric
    assert all(e["tol"] < 0.01 * abs(e["value"]) for e in doc["metrics"].values() if abs(e["value"]) > 1e-3)
    assert (folder / "test_my_landscape.h5").exists()

    second = project.runpytest_subprocess("-p", "no:cacheprovider")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*lossbench landscapes: 1 passed, 0 failed, 0 created, 0 updated*"])

    monkeypatch.setenv("SCALE_FIRST_LAYER", "1")
    third = project.runpytest_subprocess()
    third.assert_outcomes(failed=1)
    third.stdout.fnmatch_lines(["*the loss landscape moved:*", "*FAIL loss_center*expected*obtained*rel diff*"])
    assert (folder / "test_my_landscape.obtained.json").exists() and (folder / "test_my_landscape.obtained.h5").exists()

    regen = project.runpytest_subprocess("--lossbench-regen")
    regen.assert_outcomes(failed=1)
    regen.stdout.fnmatch_lines(["*regenerated: rewrote*"])
    project.runpytest_subprocess("--lf").assert_outcomes(passed=1)
    assert not (folder / "test_my_landscape.obtained.json").exists()


def test_the_plugin_stays_out_of_a_project_that_does_not_use_it(pytester):
    """No lossbench markers, no summary line and no torch import in a project whose tests do not ask
    for a lossbench fixture (the plugin itself is listed by pytest's header, as every plugin is)."""
    pytester.makepyfile(test_plain=textwrap.dedent('''
        import sys


        def test_nothing_of_lossbench():
            assert "torch" not in sys.modules
    '''))
    assert "needs a CUDA device" not in pytester.runpytest_subprocess("--markers").stdout.str()
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "lossbench landscapes" not in result.stdout.str() and "baselines:" not in result.stdout.str()


def test_float_targets_need_a_loss_named(pytester):
    pytester.makepyfile(test_reg=textwrap.dedent('''
        import torch
        from torch import nn


        def test_regression(landscape_regression):
            torch.manual_seed(0)
            x, y = torch.randn(64, 4), torch.randn(64, 1)
            landscape_regression.check(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)), (x, y))
    '''))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the targets are float: say which loss they go with*MSELoss*"])


CNN_TEST = textwrap.dedent('''
    import os

    import torch
    from torch import nn

    PIN = bool(os.environ.get("PIN_WEIGHTS"))


    def trained_cnn():
        """A small BatchNorm CNN trained with minibatch Adam inside the test: its weights depend on the
        machine's code paths (another library branch trains other weights)."""
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 3, 8, 8, generator=g)
        y = (x[:, 0].mean((1, 2)) > 0).long() + (x[:, 1, :4].mean((1, 2)) > 0.1).long()
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for epoch in range(10):
            for i in range(0, 256, 32):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
                opt.step()
        return model.eval(), x, y


    def test_cnn_landscape(landscape_regression):
        model, x, y = trained_cnn()
        landscape_regression.check(model, (x, y), grid=9, hessian=False, pin_weights=PIN)
''')


#: Another CPU's arithmetic, as far as this one can take it: the most generic branch of every library.
#: Which library's branch changes the weights depends on the CPU: on an AVX-512 Xeon MKL's alone did; on
#: an AVX2 EPYC MKL_CBWR changed nothing, ATen's scalar kernels and oneDNN's SSE4.1 kernels each did.
GENERIC_CODE_PATH = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def _code_path(monkeypatch, env):
    for name in GENERIC_CODE_PATH:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_weights_trained_on_another_code_path_are_named_and_pinned_weights_pass_there(pytester, monkeypatch):
    """A model trained inside the test on another code path (GENERIC_CODE_PATH: as on another CPU) gets
    other weights: the failure says so, not "the landscape moved". With pin_weights the first run stores
    the weights beside the baseline and the other code path passes on them."""
    pytester.makepyfile(test_cnn=CNN_TEST)
    folder = pytester.path / "test_cnn"
    _code_path(monkeypatch, {})
    pytester.runpytest_subprocess().assert_outcomes(failed=1)  # created
    stored = json.loads((folder / "test_cnn_landscape.json").read_text())["source"]["weights_sha256"]
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    _code_path(monkeypatch, GENERIC_CODE_PATH)
    other = pytester.runpytest_subprocess()
    other.assert_outcomes(failed=1)
    other.stdout.fnmatch_lines([f"*the weights differ from the baseline's (stored {stored[:12]}, obtained *"
                                "training is not bit-reproducible across machines*pin_weights=True*"])

    monkeypatch.setenv("PIN_WEIGHTS", "1")
    _code_path(monkeypatch, {})
    # the same weights as the baseline's here: nothing to rewrite, and the weights are pinned beside it
    pytester.runpytest_subprocess("--lossbench-regen").assert_outcomes(passed=1)
    assert (folder / "test_cnn_landscape.pt").exists()
    _code_path(monkeypatch, GENERIC_CODE_PATH)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_a_grid_too_coarse_for_the_curvature_fit_is_refused_naming_grid(pytester):
    """grid=7 over [-1, 1] has no point but the centre within |alpha| <= 0.25, where the curvature is fitted:
    refused before anything is computed, in one line naming grid and the smallest that works."""
    from lossbench.regression import LandscapeSpec

    with pytest.raises(ValueError, match=r"grid=7 over \[-1, 1\] puts 1 point\(s\) within \|alpha\| <= 0.25.*"
                                         r"grid >= 9 for span=1"):
        LandscapeSpec(grid=7)
    LandscapeSpec(grid=9)  # the smallest for span 1: 3 points at 0 and +-0.25
    LandscapeSpec(grid=5, span=0.5)
    pytester.makepyfile(test_small=USER_TEST.replace("check(model, (x, y))", "check(model, (x, y), grid=7)"))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: grid=7 over [[]-1, 1[]] puts 1 point(s)*"])
    assert not (pytester.path / "test_small").exists()  # nothing computed, nothing written
