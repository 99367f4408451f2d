import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lossbench.directions import create_random_direction
from lossbench.engine import conv_bn_pairs, make_measure, model_flops
from lossbench.evaluate import cross_entropy, make_batches
from lossbench.models import CifarResNet, resnet20, vgg9
from lossbench.surface import compute_grid

from .strategies import tiny_nets
from .tolerances import assert_close


def data(n=40, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return make_batches(torch.randn(n, 3, side, side, generator=g), torch.randint(0, 10, (n,), generator=g), 16)


def with_running_stats(model, side=8):
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 3, side, side, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def grid(model, engine, batches, dir_type="weights", seed=0):
    measure, keys = make_measure(engine, model, cross_entropy(), {"train": batches})
    delta = create_random_direction(model, seed=seed, dir_type=dir_type, ignore="none")
    eta = create_random_direction(model, seed=seed + 1, dir_type=dir_type, ignore="none")
    axis = np.linspace(-0.5, 0.5, 3)
    return compute_grid(model, measure, keys, delta=delta, eta=eta, alphas=axis, betas=axis, dir_type=dir_type)


@settings(max_examples=6)
@given(net=tiny_nets(), dir_type=st.sampled_from(["weights", "states"]), seed=st.integers(0, 100))
def test_fast_engine_matches_the_reference(net, dir_type, seed):
    """BN statistics and weights both move (ignore=none, states): the folding must follow them."""
    net = with_running_stats(net)
    batches = data(seed=seed)
    ref = grid(net, "reference", batches, dir_type, seed)
    fast = grid(net, "fast", batches, dir_type, seed)
    assert_close(fast.values["train_loss"], ref.values["train_loss"], scale=10)
    np.testing.assert_array_equal(fast.values["train_acc"], ref.values["train_acc"])


def test_pairs_are_every_conv_bn_of_a_resnet():
    pairs = conv_bn_pairs(resnet20())
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in resnet20().modules())
    assert len(pairs) == n_convs == 21  # 19 3x3 convs + 2 projections
    assert ("layer2.0.shortcut.0", "layer2.0.shortcut.1") in pairs
    assert len(conv_bn_pairs(CifarResNet(20, shortcut=False))) == 19


def test_vgg_linear_bn_is_left_alone_and_still_agrees():
    net = with_running_stats(vgg9(image_size=16), side=16)
    assert len(conv_bn_pairs(net)) == 7  # the Linear -> BatchNorm1d pair is not folded
    batches = data(side=16)
    ref = grid(net, "reference", batches)
    fast = grid(net, "fast", batches)
    assert_close(fast.values["train_loss"], ref.values["train_loss"], scale=10)


def test_unknown_engine_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown engine 'turbo'; expected one of reference, fast"):
        make_measure("turbo", resnet20(), cross_entropy(), {"train": data()})


def test_flop_count_of_resnet20():
    # He et al.: ResNet-20 is ~41 M multiply-adds on a 32x32 image (ours adds 1x1 projections)
    flops = model_flops(resnet20(), (3, 32, 32))
    assert 2 * 40e6 < flops < 2 * 43e6
