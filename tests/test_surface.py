import numpy as np
import pytest
import torch
from torch import nn

from lossbench.directions import create_random_direction, get_theta, random_direction
from lossbench.errors import NonFiniteLossError
from lossbench.evaluate import cross_entropy, evaluate, make_batches
from lossbench.surface import Axis, compute_surface, parse_axis, perturbation


def test_parse_axis_in_the_authors_notation():
    assert parse_axis("-1:1:51") == Axis(-1.0, 1.0, 51)
    assert str(parse_axis("-0.5:1.5:41")) == "-0.5:1.5:41"
    for bad in ("-1:1", "a:b:c", "1:-1:5", "-1:1:0"):
        with pytest.raises(ValueError, match="axis"):
            parse_axis(bad)


@pytest.mark.parametrize("num", [3, 11, 51, 101])
def test_odd_axes_have_the_exact_centre(num):
    c = Axis(-1, 1, num).coords()
    assert c[num // 2] == 0.0 and c[0] == -1.0 and c[-1] == 1.0


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))


def regression_batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g)
    return make_batches(x, x.sum(1, keepdim=True), 7)


def test_users_own_model_loss_and_data():
    """Any nn.Module with any loss: an MLP under MSE; accuracy is NaN for regression targets."""
    model = mlp()
    batches = regression_batches()
    delta = create_random_direction(model, seed=0)
    s = compute_surface(model, nn.MSELoss(), {"train": batches}, delta=delta, alphas=np.linspace(-1, 1, 5))
    assert s.shape == (5,) and s.complete
    assert s.values["train_loss"][2] == pytest.approx(evaluate(model, nn.MSELoss(), batches).loss, rel=0, abs=0)
    assert np.isnan(s.values["train_acc"]).all()


def test_2d_layout_is_alpha_by_beta():
    """A linear model's loss along delta only: the values must vary along axis 0 (alpha) alone."""
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    x = torch.eye(3)
    batches = make_batches(x, torch.zeros(3, 1), 3)
    delta = {"weight": torch.tensor([[1.0, 0.0, 0.0]])}
    eta = {"weight": torch.zeros(1, 3)}
    s = compute_surface(model, nn.MSELoss(), {"train": batches}, delta=delta, eta=eta,
                        alphas=np.array([0.0, 1.0, 2.0]), betas=np.array([0.0, 1.0]))
    loss = s.values["train_loss"]
    assert loss.shape == (3, 2)
    np.testing.assert_allclose(loss[:, 0], [0.0, 1 / 3, 4 / 3], rtol=1e-6)
    np.testing.assert_allclose(loss[:, 1], loss[:, 0])


def test_nonfinite_loss_names_its_coordinates():
    model = mlp()
    batches = regression_batches()
    delta = {k: torch.full_like(v, 1e30) for k, v in get_theta(model).items()}
    with pytest.raises(NonFiniteLossError, match=r"on train at \(alpha=\+1\)"):
        compute_surface(model, nn.MSELoss(), {"train": batches}, delta=delta, alphas=np.array([0.0, 1.0]))
    s = compute_surface(model, nn.MSELoss(), {"train": batches}, delta=delta, alphas=np.array([0.0, 1.0]),
                        allow_nonfinite=True)
    assert np.isfinite(s.values["train_loss"][0]) and not np.isfinite(s.values["train_loss"][1])


class CountingLoss:
    def __init__(self):
        self.calls = 0

    def __call__(self, out, y):
        self.calls += 1
        return nn.functional.mse_loss(out, y)


def test_resume_skips_finished_points_and_keeps_their_values():
    model = mlp()
    batches = regression_batches()  # 5 batches per point
    delta = create_random_direction(model, seed=0)
    eta = create_random_direction(model, seed=1)
    axis = np.linspace(-1, 1, 3)
    full = compute_surface(model, nn.MSELoss(), {"train": batches}, delta=delta, eta=eta, alphas=axis, betas=axis)
    partial_done = full.done.copy()
    partial_done[1:, :] = False
    partial = type(full)(alphas=full.alphas, betas=full.betas, values={k: np.where(partial_done, v, np.nan)
                         for k, v in full.values.items()}, done=partial_done)
    loss = CountingLoss()
    resumed = compute_surface(model, loss, {"train": batches}, delta=delta, eta=eta, alphas=axis, betas=axis,
                              resume=partial)
    # 6 of 9 points left, and the 3 calls of the input check (the loss on a batch and on its two halves)
    assert loss.calls == 6 * len(batches) + 3
    np.testing.assert_array_equal(resumed.values["train_loss"], full.values["train_loss"])


def test_resume_on_another_grid_is_refused():
    model = mlp()
    delta = create_random_direction(model, seed=0)
    first = compute_surface(model, nn.MSELoss(), {"train": regression_batches()}, delta=delta,
                            alphas=np.linspace(-1, 1, 3))
    with pytest.raises(ValueError, match="cannot resume"):
        compute_surface(model, nn.MSELoss(), {"train": regression_batches()}, delta=delta,
                        alphas=np.linspace(-1, 1, 5), resume=first)


def test_checkpoint_is_written_when_interrupted():
    model = mlp()
    delta = create_random_direction(model, seed=0)
    seen = []
    calls = {"n": 0}

    def interrupting(out, y):
        calls["n"] += 1
        if calls["n"] == 3 + 5 * 3 + 1:  # during the 4th point (after the input check's 3 calls)
            raise KeyboardInterrupt
        return nn.functional.mse_loss(out, y)

    with pytest.raises(KeyboardInterrupt):
        compute_surface(model, interrupting, {"train": regression_batches()}, delta=delta,
                        alphas=np.linspace(-1, 1, 7), on_checkpoint=lambda s: seen.append(s.done.copy()),
                        checkpoint_seconds=1e9)
    assert len(seen) == 1 and seen[0].sum() == 3


def test_perturbation_sets_exact_points_from_theta():
    model = mlp()
    theta = get_theta(model)
    d = random_direction(theta, seed=3)
    seen = []
    with perturbation(model, theta, [d]) as set_point:
        for alpha in (0.3, -2.0, 0.3):
            set_point(alpha)
            seen.append(model[0].weight.detach().clone())
            torch.testing.assert_close(seen[-1], theta["0.weight"] + alpha * d["0.weight"])
    assert torch.equal(seen[0], seen[2])  # set from theta each time: no drift from earlier points
    assert torch.equal(model[0].weight.detach(), theta["0.weight"])


def test_eta_without_betas_is_an_error():
    model = mlp()
    d = create_random_direction(model, seed=0)
    batches = [(torch.randn(4, *model[0].weight.shape[1:]), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ValueError, match="eta and betas together"):
        compute_surface(model, cross_entropy(), {"train": batches}, delta=d, eta=d, alphas=np.zeros(1))


def test_a_stop_request_whose_interrupt_was_swallowed_stops_the_grid_at_the_next_point():
    """The CLI's SIGTERM handler raises KeyboardInterrupt and records the request; when the raise lands
    in a finalizer Python swallows it ("Exception ignored"), so the loop raises it at its next point,
    after flushing the points it finished."""
    from lossbench import stop

    model = mlp()
    delta = create_random_direction(model, seed=0)
    flushed = []

    def swallowed_sigterm(partial):  # as if the signal's KeyboardInterrupt had been lost right here
        flushed.append(int(partial.done.sum()))
        if len(flushed) == 3:
            stop.request(15)

    try:
        with pytest.raises(KeyboardInterrupt, match="signal 15"):
            compute_surface(model, nn.MSELoss(), {"train": regression_batches()}, delta=delta,
                            alphas=np.linspace(-1, 1, 9), on_checkpoint=swallowed_sigterm, checkpoint_seconds=0)
    finally:
        stop.clear()
    assert flushed == [1, 2, 3]  # stopped right after the third point was saved: no fourth point computed


def test_the_cost_estimate_is_said_for_long_runs_only(monkeypatch, caplog):
    import lossbench.surface as surface_mod

    def clock_after(step, todo):
        # the clock reads the time at its start, at the first point and at the third: the measured
        # cost per point is step / 2
        now = iter(np.arange(0.0, 1000.0 * step, step))
        monkeypatch.setattr(surface_mod.time, "perf_counter", lambda: float(next(now)))
        clock = surface_mod._CostClock(todo, "surface")
        for _ in range(3):
            clock.tick()

    with caplog.at_level("INFO", logger="lossbench.estimate"):
        clock_after(0.001, 100)  # 0.1 s left: silence
        assert not caplog.records
        clock_after(1.0, 100)  # 48.5 s left: one info line
        assert [r.levelname for r in caplog.records] == ["INFO"] and "48 s left" in caplog.records[0].getMessage()
        clock_after(100.0, 100)  # hours left: a warning
        assert caplog.records[-1].levelname == "WARNING"


def test_an_unnormalised_line_runs_over_the_weights_own_scale_and_reports_raw_curvature():
    """Paper section 4: a raw Gaussian direction is sqrt(P) long, so its line runs over line_x times
    ||theta|| / ||delta|| (over the tensors delta moves); the curvature is fitted on the relative axis and
    reported per unit of the raw direction: for L = c alpha_raw^2 / 2 it is c, whatever the scale."""
    from lossbench.reproduce import line_metrics_of, raw_alpha_scale
    from lossbench.surface import Surface

    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    delta = random_direction(get_theta(model), seed=0)
    delta = {k: (v if v.dim() > 1 else torch.zeros_like(v)) for k, v in delta.items()}  # biasbn: 1-D zero
    theta = get_theta(model)
    moved = [k for k, v in theta.items() if v.dim() > 1]
    expect = (sum(float(theta[k].pow(2).sum()) for k in moved) / sum(float(delta[k].pow(2).sum()) for k in moved)) ** 0.5
    assert raw_alpha_scale(model, delta) == pytest.approx(expect, rel=1e-6)  # float32 sums in the reference
    for r in (1.0, 0.03, 7.0):
        u = np.linspace(-1, 1, 21)
        line = Surface.empty(u * r, None, ["train_loss", "train_acc"], attrs={"alpha_scale": r})
        line.values["train_loss"][:] = 0.5 * 4.0 * (u * r) ** 2 + 0.1
        line.values["train_acc"][:] = 1.0
        line.done[:] = True
        assert line_metrics_of(line)["curv"] == pytest.approx(4.0, rel=1e-9)
