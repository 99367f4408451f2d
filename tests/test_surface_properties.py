"""Network-level properties of surfaces (hypothesis): scale invariance, restoration, batch size."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lossbench.directions import create_random_direction, get_theta
from lossbench.evaluate import cross_entropy, evaluate, make_batches
from lossbench.surface import compute_surface

from .strategies import tiny_nets
from .tolerances import assert_close

NETWORK_EXAMPLES = settings(max_examples=15)


def _data(n=48, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, side, side, generator=g), torch.randint(0, 10, (n,), generator=g)


def conv_bn_net(seed: int) -> nn.Module:
    """conv -> BN -> ReLU twice, pooled, linear; BN running statistics from real data."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6, momentum=None), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6, momentum=None), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10),
    )
    x, _ = _data(seed=seed + 1)
    net.train()
    with torch.no_grad():
        net(x)
    return net.eval()


def rescale_conv_filters(net: nn.Module, layer: int, c: torch.Tensor) -> nn.Module:
    """An equivalent network: filters of conv ``layer`` times c_i > 0, and its BN's running mean and
    variance times c_i and c_i^2 (what training the rescaled net would have recorded)."""
    import copy

    out = copy.deepcopy(net)
    conv, bn = out[layer], out[layer + 1]
    with torch.no_grad():
        conv.weight.mul_(c.view(-1, 1, 1, 1))
        bn.running_mean.mul_(c)
        bn.running_var.mul_(c**2)
    return out


def surface_of(net, batches, norm, seed=0):
    axis = np.linspace(-1, 1, 3)
    delta = create_random_direction(net, seed=seed, norm=norm)
    eta = create_random_direction(net, seed=seed + 1, norm=norm)
    s = compute_surface(net, cross_entropy(), {"train": batches}, delta=delta, eta=eta, alphas=axis, betas=axis)
    return s.values["train_loss"]


scales = st.lists(st.floats(0.25, 4.0, width=32), min_size=6, max_size=6).map(torch.tensor)


@NETWORK_EXAMPLES
@given(c=scales, layer=st.sampled_from([0, 3]), seed=st.integers(0, 1000))
def test_rescaling_filters_leaves_the_loss_unchanged(c, layer, seed):
    net = conv_bn_net(seed)
    batches = make_batches(*_data(), 16)
    before = evaluate(net, cross_entropy(), batches).loss
    after = evaluate(rescale_conv_filters(net, layer, c), cross_entropy(), batches).loss
    assert_close(after, before, scale=100)  # BN's eps (1e-5) is not rescaled: tiny, not zero


@NETWORK_EXAMPLES
@given(c=scales, layer=st.sampled_from([0, 3]), seed=st.integers(0, 1000))
def test_filter_normalised_surface_is_invariant_to_filter_rescaling(c, layer, seed):
    net = conv_bn_net(seed)
    batches = make_batches(*_data(), 16)
    original = surface_of(net, batches, "filter", seed)
    rescaled = surface_of(rescale_conv_filters(net, layer, c), batches, "filter", seed)
    assert_close(rescaled, original, scale=100)


def test_unnormalised_surface_changes_under_filter_rescaling():
    """The reason filter normalisation exists: without it the same rescaling changes the picture."""
    net = conv_bn_net(0)
    batches = make_batches(*_data(), 16)
    c = torch.tensor([0.25, 4.0, 0.5, 2.0, 0.3, 3.0])
    original = surface_of(net, batches, "none")
    rescaled = surface_of(rescale_conv_filters(net, 0, c), batches, "none")
    assert np.max(np.abs(rescaled - original)) > 1e-2


@NETWORK_EXAMPLES
@given(net=tiny_nets(), seed=st.integers(0, 1000), dir_type=st.sampled_from(["weights", "states"]))
def test_centre_equals_plain_evaluation_and_sweep_restores_state_bit_for_bit(net, seed, dir_type):
    batches = make_batches(*_data(n=20, side=8, seed=seed), 8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plain = evaluate(net, cross_entropy(), batches)
    axis = np.linspace(-1, 1, 3)
    delta = create_random_direction(net, seed=seed, dir_type=dir_type)
    eta = create_random_direction(net, seed=seed + 1, dir_type=dir_type)
    s = compute_surface(net, cross_entropy(), {"train": batches}, delta=delta, eta=eta, alphas=axis, betas=axis,
                        dir_type=dir_type, allow_nonfinite=True)
    assert s.values["train_loss"][1, 1] == plain.loss
    assert s.values["train_acc"][1, 1] == plain.acc
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@NETWORK_EXAMPLES
@given(net=tiny_nets(), big=st.integers(9, 40), small=st.integers(1, 8))
def test_loss_does_not_depend_on_the_evaluation_batch_size(net, big, small):
    x, y = _data(n=40, side=8)
    a = evaluate(net, cross_entropy(), make_batches(x, y, big))
    b = evaluate(net, cross_entropy(), make_batches(x, y, small))
    assert_close(a.loss, b.loss, scale=10)
    assert a.acc == b.acc


def test_theta_is_restored_after_an_exception_mid_sweep():
    net = conv_bn_net(0)
    batches = make_batches(*_data(), 16)
    before = {k: v.clone() for k, v in get_theta(net, "states").items()}
    calls = {"n": 0}

    def exploding_loss(out, y):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(out, y)

    delta = create_random_direction(net, seed=0)
    try:
        compute_surface(net, exploding_loss, {"train": batches}, delta=delta, alphas=np.linspace(-1, 1, 5))
    except RuntimeError:
        pass
    else:
        raise AssertionError("the loss function's error was swallowed")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
