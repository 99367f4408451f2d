"""Mode-connecting curves against problems whose answer is known (issue 34): a two-parameter loss whose
two minima are joined by a curved valley, two minima of a small BatchNorm net related by a permutation
of its hidden units (the same function), the straight line as the curve whose control point sits at the
midpoint (checked against an independent line and an independent BatchNorm recomputation), and the
ends pinned whatever the training does."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from lossbench.connect import (
    CurveState,
    barrier,
    bezier,
    curve_step_plan,
    midpoint,
    parameters_of,
    path_values,
    train_curve,
    update_bn,
)
from lossbench.evaluate import evaluate, make_batches


class _Ring(nn.Module):
    """Two parameters w = (x, y); the loss (||w|| - 1)^2 has its minima on the unit circle: two of its
    points are joined by the circle's arc (loss 0) while the chord between them dips inside."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float64).reshape(1, 2))

    def forward(self, x):
        return self.w.expand(len(x), 2)


def _ring_loss(out, target):
    return ((out.norm(dim=1) - 1) ** 2).mean()


def _ring_case():
    a = [math.cos(0.3), math.sin(0.3)]  # off the x axis: at the midpoint the symmetric problem has no gradient
    b = [-1.0, 0.0]
    model = _Ring(a)
    theta_a, theta_b = parameters_of(model), parameters_of(_Ring(b))
    batches = [(torch.zeros(8, 1, dtype=torch.float64), torch.zeros(8, 2, dtype=torch.float64))]
    return model, theta_a, theta_b, batches


TS = np.linspace(0, 1, 21)


def test_on_a_curved_valley_the_trained_curve_has_almost_no_barrier_where_the_line_has_one():
    model, theta_a, theta_b, batches = _ring_case()
    line = path_values(model, _ring_loss, {"train": batches}, theta_a=theta_a, theta_b=theta_b, theta_c=None,
                       ts=TS, bn_batches=batches)
    state = train_curve(model, _ring_loss, batches, theta_a=theta_a, theta_b=theta_b, steps=600, lr=0.05)
    curve = path_values(model, _ring_loss, {"train": batches}, theta_a=theta_a, theta_b=theta_b,
                        theta_c=state.theta_c, ts=TS, bn_batches=batches)
    line_barrier, curve_barrier = barrier(TS, line["train_loss"]), barrier(TS, curve["train_loss"])
    print(f"ring: line barrier {line_barrier:.4f}, curve barrier {curve_barrier:.4f}")
    # the chord's midpoint is the nearest it comes to the centre: cos((pi - 0.3) / 2) from it
    assert line_barrier == pytest.approx((1 - math.cos((math.pi - 0.3) / 2)) ** 2, rel=1e-9)
    # the best quadratic Bezier through the half circle stays within 5 % of the radius: loss < 0.003
    assert curve_barrier < 0.01


def test_the_ends_of_the_curve_are_the_two_minima_whatever_the_control_point():
    model, theta_a, theta_b, batches = _ring_case()
    wild = {n: torch.full_like(t, 1e6) for n, t in theta_a.items()}
    for t, end in ((0.0, theta_a), (1.0, theta_b)):
        point = bezier(theta_a, wild, theta_b, t)
        assert all(torch.equal(point[n], end[n]) for n in end)
    state = train_curve(model, _ring_loss, batches, theta_a=theta_a, theta_b=theta_b, steps=50, lr=0.05)
    assert set(state.theta_c) == set(theta_a)
    assert torch.equal(parameters_of(model)["w"], theta_a["w"])  # the model is restored after training


def _bn_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3)).double()


def _bn_data():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (192,), generator=g)
    return centres[y] + torch.randn(192, 6, generator=g, dtype=torch.float64), y


def _trained(seed):
    x, y = _bn_data()
    net = _bn_net(seed)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for epoch in range(30):
        for i in range(0, 192, 32):
            net.train()
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    return net.eval()


def _reference_line_loss(net_a, net_b, t, x, y):
    """The line's loss at t computed without lossbench.connect: weights (1 - t) a + t b set in a copy,
    BatchNorm statistics of that copy taken from one train-mode pass over all of x with momentum 1
    (running = the whole set's statistics), then the eval-mode loss."""
    net = copy.deepcopy(net_a)
    with torch.no_grad():
        for (n, p), q in zip(net.named_parameters(), net_b.parameters()):
            p.copy_((1 - t) * p + t * q)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = 1.0
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(net(x), y))


def test_with_the_control_point_at_the_midpoint_the_curve_is_the_line_with_its_bn_statistics_recomputed():
    """Checks the Bezier weights (the midpoint control point must give (1 - t) a + t b) and the
    BatchNorm recomputation (the ends' stored statistics are another net's) against an independent
    computation of both."""
    net_a, net_b = _trained(0), _trained(1)
    x, y = _bn_data()
    whole = [(x, y)]
    theta_a, theta_b = parameters_of(net_a), parameters_of(net_b)
    curve = path_values(copy.deepcopy(net_a), nn.CrossEntropyLoss(), {"train": whole}, theta_a=theta_a,
                        theta_b=theta_b, theta_c=midpoint(theta_a, theta_b), ts=TS, bn_batches=whole)
    reference = [_reference_line_loss(net_a, net_b, float(t), x, y) for t in TS]
    np.testing.assert_allclose(curve["train_loss"], reference, rtol=1e-10)
    # the ends' own stored statistics would give another loss: the recomputation is what is checked
    stale = evaluate(net_a, nn.CrossEntropyLoss(), whole).loss
    assert abs(stale - reference[0]) > 1e-6


def test_update_bn_gives_the_mean_of_the_layer_inputs_over_equal_batches():
    net = _trained(0)
    x, y = _bn_data()
    update_bn(net, make_batches(x, y, 48))
    with torch.no_grad():
        first = net[0](x)
    torch.testing.assert_close(net[1].running_mean, first.mean(0), rtol=1e-12, atol=1e-12)


def _permuted(net):
    """The same function with its 12 hidden units in another order (BN's affine terms and statistics
    permuted with them)."""
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(7))
    other = copy.deepcopy(net)
    with torch.no_grad():
        other[0].weight.copy_(net[0].weight[perm])
        other[0].bias.copy_(net[0].bias[perm])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(other[1], name).copy_(getattr(net[1], name)[perm])
        other[3].weight.copy_(net[3].weight[:, perm])
    return other


def test_two_minima_related_by_a_permutation_are_joined_by_a_curve_the_line_misses():
    net_a = _trained(0)
    net_b = _permuted(net_a)
    x, y = _bn_data()
    batches = make_batches(x, y, 32)
    same = evaluate(net_a, nn.CrossEntropyLoss(), [(x, y)]).loss
    assert evaluate(net_b, nn.CrossEntropyLoss(), [(x, y)]).loss == pytest.approx(same, rel=1e-12)
    theta_a, theta_b = parameters_of(net_a), parameters_of(net_b)
    data = {"train": [(x, y)]}
    line = path_values(copy.deepcopy(net_a), nn.CrossEntropyLoss(), data, theta_a=theta_a, theta_b=theta_b,
                       theta_c=None, ts=TS, bn_batches=[(x, y)])
    state = train_curve(copy.deepcopy(net_a), nn.CrossEntropyLoss(), batches, theta_a=theta_a, theta_b=theta_b,
                        steps=1200, lr=0.05)
    curve = path_values(copy.deepcopy(net_a), nn.CrossEntropyLoss(), data, theta_a=theta_a, theta_b=theta_b,
                        theta_c=state.theta_c, ts=TS, bn_batches=[(x, y)])
    b_line, b_curve = barrier(TS, line["train_loss"]), barrier(TS, curve["train_loss"])
    print(f"permutation: loss at the ends {same:.4f}; line barrier {b_line:.4f}, curve barrier {b_curve:.4f}")
    assert b_line > 0.1
    assert b_curve < 0.1 * b_line


def test_a_curve_trained_in_two_halves_is_the_curve_trained_at_once():
    model, theta_a, theta_b, batches = _ring_case()
    whole = train_curve(model, _ring_loss, batches, theta_a=theta_a, theta_b=theta_b, steps=40, lr=0.05)
    seen: list[CurveState] = []
    try:
        train_curve(model, _ring_loss, batches, theta_a=theta_a, theta_b=theta_b, steps=40, lr=0.05,
                    on_step=lambda s: (seen.append(s), s.step == 17 and (_ for _ in ()).throw(KeyboardInterrupt)))
    except KeyboardInterrupt:
        pass
    resumed = train_curve(model, _ring_loss, batches, theta_a=theta_a, theta_b=theta_b, steps=40, lr=0.05,
                          state=seen[-1])
    assert resumed.step == 40 and resumed.losses == whole.losses
    assert torch.equal(resumed.theta_c["w"], whole.theta_c["w"])


def test_the_step_plan_is_fixed_by_its_seed_and_visits_every_batch_each_pass():
    ts, order = curve_step_plan(10, 4, seed=3)
    ts2, order2 = curve_step_plan(10, 4, seed=3)
    assert np.array_equal(ts, ts2) and np.array_equal(order, order2)
    assert sorted(order[:4]) == [0, 1, 2, 3] and sorted(order[4:8]) == [0, 1, 2, 3]
    assert np.all((ts >= 0) & (ts < 1))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bezier({}, {}, {}, 1.5)
    with pytest.raises(ValueError, match="from 0 to 1"):
        barrier(np.array([0.0, 0.5]), np.array([1.0, 2.0]))


MODEL_PY = '''
from torch import nn


def make_net():
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3)).double()
'''


@pytest.fixture(scope="module")
def two_minima(tmp_path_factory):
    folder = tmp_path_factory.mktemp("connect")
    (folder / "model.py").write_text(MODEL_PY)
    for seed in (0, 1):
        torch.save(_trained(seed).state_dict(), folder / f"m{seed}.pt")
    x, y = _bn_data()
    torch.save({"train_x": x, "train_y": y, "test_x": x[:64], "test_y": y[:64]}, folder / "data.pt")
    return folder


def _cli(folder, out, capsys, *extra):
    from lossbench.__main__ import main

    rc = main([str(a) for a in ["connect", folder / "m0.pt", folder / "m1.pt", "--model",
                                f"{folder}/model.py:make_net", "--data", folder / "data.pt", "--dtype", "float64",
                                "--epochs", "4", "--lr", "0.05", "--points", "11", "-o", out, *extra]])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_connect_on_the_command_line_writes_its_file_and_figure(two_minima, capsys):
    from lossbench.store import load_connection

    rc, out, err = _cli(two_minima, two_minima / "ab.h5", capsys, "--plot")
    assert rc == 0, err
    assert "barrier of the line" in out and "of the curve" in out
    assert (two_minima / "ab.png").exists() and (two_minima / "ab.pdf").exists()
    c = load_connection(two_minima / "ab.h5")
    assert set(c["paths"]) == {"line", "curve"} and len(c["t"]) == 11
    assert len(c["training_loss"]) == 4 * 2  # 192 images in batches of 128: 2 steps per pass, 4 passes
    b = c["metadata"]["barrier"]
    assert b["curve"]["train"] < b["line"]["train"]
    # the ends of both paths are the two minima, BN statistics recomputed: the same numbers on both
    for k in ("train_loss", "test_acc"):
        assert c["paths"]["line"][k][0] == c["paths"]["curve"][k][0]
        assert c["paths"]["line"][k][-1] == c["paths"]["curve"][k][-1]
    assert not (two_minima / "ab.h5.curve.pt").exists()  # the training checkpoint goes with a finished file


def test_an_interrupted_connect_resumes_to_the_uninterrupted_numbers(two_minima, capsys, monkeypatch):
    import lossbench._progress as progress
    from lossbench.store import load_connection

    rc, _, err = _cli(two_minima, two_minima / "whole.h5", capsys)
    assert rc == 0, err

    class Interrupting:
        def __init__(self, *args, **kwargs):
            self.n = 0

        def update(self, k):
            self.n += k
            if self.n == 5:
                raise KeyboardInterrupt

        def close(self):
            pass

    with monkeypatch.context() as m:
        m.setattr(progress, "progress_bar", Interrupting)
        with pytest.raises(KeyboardInterrupt):
            from lossbench.__main__ import build_parser, cmd_connect

            args = build_parser().parse_args([str(a) for a in [
                "connect", two_minima / "m0.pt", two_minima / "m1.pt", "--model", f"{two_minima}/model.py:make_net",
                "--data", two_minima / "data.pt", "--dtype", "float64", "--epochs", "4", "--lr", "0.05",
                "--points", "11", "-o", two_minima / "cut.h5"]])
            cmd_connect(args)
    assert (two_minima / "cut.h5.curve.pt").exists() and not (two_minima / "cut.h5").exists()
    rc, _, err = _cli(two_minima, two_minima / "cut.h5", capsys)
    assert rc == 0, err
    whole, cut = load_connection(two_minima / "whole.h5"), load_connection(two_minima / "cut.h5")
    np.testing.assert_array_equal(cut["training_loss"], whole["training_loss"])
    for n in whole["control"]:
        assert torch.equal(cut["control"][n], whole["control"][n])
    # another setting on a finished file is refused, naming the difference and the fix
    rc, _, err = _cli(two_minima, two_minima / "cut.h5", capsys, "--lr", "0.02")
    assert rc != 0 and "another computation" in err and "lr" in err and "--overwrite" in err


def test_the_barrier_carries_its_sampling_error_from_disjoint_image_subsets(two_minima, capsys):
    """The training split is evaluated in parts (here 40+40+80+32 images: unequal, so an unweighted
    mean of the parts would be wrong); the whole split's line is their size-weighted mean and equals
    the line evaluated on all images at once, and the barrier's error is the parts' barriers' sd / sqrt(4)."""
    from lossbench.connect import barrier, parameters_of, path_values
    from lossbench.evaluate import make_batches
    from lossbench.store import load_connection

    rc, out, err = _cli(two_minima, two_minima / "parts.h5", capsys, "--eval-batch", "40")
    assert rc == 0, err
    assert "barrier of the line" in out and " ± " in out
    c = load_connection(two_minima / "parts.h5")
    meta = c["metadata"]
    assert meta["barrier_parts"]["train"] == [40, 40, 80, 32]
    a, b = _trained(0), _trained(1)
    theta_a, theta_b = parameters_of(a), parameters_of(b)
    x, y = _bn_data()
    batches = make_batches(x, y, 40)
    loss_fn = nn.CrossEntropyLoss()
    whole = path_values(a, loss_fn, {"train": batches}, theta_a=theta_a, theta_b=theta_b, theta_c=None, ts=c["t"],
                        bn_batches=batches)
    np.testing.assert_allclose(c["paths"]["line"]["train_loss"], whole["train_loss"], rtol=1e-12, atol=1e-15)
    parts = [batches[0:1], batches[1:2], batches[2:4], batches[4:5]]
    part_barriers = [barrier(c["t"], path_values(a, loss_fn, {"p": p}, theta_a=theta_a, theta_b=theta_b,
                                                 theta_c=None, ts=c["t"], bn_batches=batches)["p_loss"])
                     for p in parts]
    expected = float(np.std(part_barriers, ddof=1) / 2.0)
    assert meta["barrier_error"]["line"]["train"] == pytest.approx(expected, rel=1e-9)
    assert 0 < expected < meta["barrier"]["line"]["train"]
