"""Property tests of the normalisation invariants (hypothesis). One invariant per test."""

import torch
from hypothesis import example, given
from hypothesis import strategies as st

from lossbench.directions import filter_normalize, normalize_direction, random_direction

from .reference import filter_normalize_loop
from .strategies import multi_dim_shapes, nonzero_filter_tensors, tensors, thetas
from .tolerances import assert_close


def slice_norms(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).double().norm(dim=1)


@given(theta=thetas(), seed=st.integers(0, 2**31 - 1))
def test_filter_normalised_slices_have_theta_norms(theta, seed):
    d = filter_normalize(random_direction(theta, seed=seed), theta)
    for name, t in theta.items():
        if t.dim() >= 2:
            assert_close(slice_norms(d[name]), slice_norms(t), scale=10)


@st.composite
def direction_and_scales(draw):
    shape = draw(multi_dim_shapes())
    d = draw(nonzero_filter_tensors(shape))
    theta = draw(tensors(shape, lo=-10, hi=10))
    c = draw(st.lists(st.floats(0.015625, 64.0, width=32), min_size=shape[0], max_size=shape[0]))
    return d, theta, torch.tensor(c).view(-1, *([1] * (len(shape) - 1)))


@given(direction_and_scales())
def test_invariant_to_positive_rescaling_of_each_direction_filter(args):
    d, theta, c = args
    a = filter_normalize({"w": c * d}, {"w": theta})["w"]
    b = filter_normalize({"w": d}, {"w": theta})["w"]
    assert_close(a, b, scale=10, msg="normalize(c_i d_i) != normalize(d_i)")


@given(direction_and_scales())
def test_equivariant_to_positive_rescaling_of_theta_filters(args):
    d, theta, c = args
    a = filter_normalize({"w": d}, {"w": c * theta})["w"]
    b = c * filter_normalize({"w": d}, {"w": theta})["w"]
    assert_close(a, b, scale=10, msg="normalize(d, c_i theta_i) != c_i normalize(d, theta)")


@given(theta=thetas(), seed=st.integers(0, 1000))
def test_biasbn_zeroes_exactly_the_1d_tensors_and_none_copies_them(theta, seed):
    d = random_direction(theta, seed=seed)
    zeroed = filter_normalize(d, theta, ignore="biasbn")
    copied = filter_normalize(d, theta, ignore="none")
    for name, t in theta.items():
        if t.dim() <= 1:
            assert torch.count_nonzero(zeroed[name]) == 0
            assert torch.equal(copied[name], t)
        else:
            assert torch.equal(zeroed[name], copied[name])
            assert torch.count_nonzero(zeroed[name]) > 0 or torch.count_nonzero(t) == 0


@given(theta=thetas(), seed=st.integers(0, 1000))
def test_layer_normalisation_gives_theta_tensor_norms(theta, seed):
    d = normalize_direction(random_direction(theta, seed=seed), theta, norm="layer")
    for name, t in theta.items():
        if t.dim() >= 2:
            assert_close(d[name].double().norm(), t.double().norm(), scale=10)


@given(shape=multi_dim_shapes(), data=st.data())
@example(shape=(1, 3), data=None)  # a one-filter layer
@example(shape=(4, 2, 3, 3), data=None)  # an all-zero theta filter and an all-zero direction filter
def test_zero_filters_stay_finite(shape, data):
    if data is None:
        theta = torch.zeros(shape)
        d = torch.zeros(shape)
        d[-1] = 1.0
    else:
        theta = data.draw(tensors(shape, lo=-10, hi=10))
        theta[0] = 0.0
        d = data.draw(tensors(shape, lo=-10, hi=10))
        d[-1] = 0.0
    for norm in ("filter", "layer", "dfilter", "dlayer", "weight", "none"):
        out = normalize_direction({"w": d}, {"w": theta}, norm=norm)["w"]
        assert torch.isfinite(out).all(), norm


@given(theta=thetas(), seed=st.integers(0, 2**31 - 1))
def test_same_seed_same_direction_other_seed_other_direction(theta, seed):
    a = random_direction(theta, seed=seed)
    b = random_direction(theta, seed=seed)
    c = random_direction(theta, seed=seed + 1)
    assert all(torch.equal(a[k], b[k]) for k in theta)
    total = sum(t.numel() for t in theta.values())
    assert total < 2 or any(not torch.equal(a[k], c[k]) for k in theta)


@given(theta=thetas(), seed=st.integers(0, 1000), ignore=st.sampled_from(["biasbn", "none"]))
def test_vectorised_normalisation_matches_the_loop_reference(theta, seed, ignore):
    d = random_direction(theta, seed=seed)
    fast = filter_normalize(d, theta, ignore=ignore)
    slow = filter_normalize_loop(d, theta, ignore=ignore)
    for name in theta:
        assert_close(fast[name], slow[name], scale=10)
