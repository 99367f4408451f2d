import pytest
import torch
from scipy import stats

from lossbench.directions import (
    cosine_similarity,
    create_random_direction,
    get_theta,
    inner,
    normalize_direction,
    orthogonalize,
    random_direction,
    target_direction,
)
from lossbench.models import CifarResNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return CifarResNet(8).eval()


def test_random_entries_are_standard_gaussian(net):
    """The paper draws Gaussian directions (some successors draw uniform [0, 1)): test the claim."""
    theta = get_theta(net)
    d = torch.cat([t.flatten() for t in random_direction(theta, seed=0).values()]).double().numpy()
    assert abs(d.mean()) < 0.01 and abs(d.std() - 1) < 0.01
    assert stats.kstest(d[:20000], "norm").pvalue > 1e-3
    assert (d < 0).mean() == pytest.approx(0.5, abs=0.01)


def test_states_directions_cover_bn_statistics(net):
    theta = get_theta(net, "states")
    assert "bn1.running_mean" in theta and "bn1.num_batches_tracked" in theta
    d = random_direction(theta, seed=0)
    assert d["bn1.num_batches_tracked"].dtype == torch.long and int(d["bn1.num_batches_tracked"]) == 0
    assert list(d) == list(net.state_dict())  # model order


def test_weights_directions_are_the_parameters_in_model_order(net):
    d = create_random_direction(net, seed=1)
    assert list(d) == [n for n, _ in net.named_parameters()]


def test_unknown_norm_lists_the_valid_ones(net):
    theta = get_theta(net)
    with pytest.raises(ValueError, match="unknown norm 'fliter'; expected one of filter, layer, weight, dfilter, dlayer, none"):
        normalize_direction(random_direction(theta, seed=0), theta, norm="fliter")
    with pytest.raises(ValueError, match="unknown ignore 'bias'"):
        normalize_direction(random_direction(theta, seed=0), theta, ignore="bias")


def test_mismatched_direction_names_the_tensor(net):
    theta = get_theta(net)
    d = random_direction(theta, seed=0)
    d["conv1.weight"] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="'conv1.weight' has shape \\(2, 2\\)"):
        normalize_direction(d, theta)
    del d["conv1.weight"]
    with pytest.raises(ValueError, match="missing \\['conv1.weight'\\]"):
        normalize_direction(d, theta)


def test_dfilter_and_weight_norms():
    theta = {"w": torch.tensor([[3.0, 4.0], [1.0, 0.0]])}
    d = {"w": torch.tensor([[1.0, 1.0], [2.0, 0.0]])}
    dfilter = normalize_direction(d, theta, norm="dfilter")["w"]
    torch.testing.assert_close(dfilter.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(normalize_direction(d, theta, norm="weight")["w"], d["w"] * theta["w"])
    torch.testing.assert_close(normalize_direction(d, theta, norm="dlayer")["w"].norm(), torch.tensor(1.0))
    torch.testing.assert_close(normalize_direction(d, theta, norm="none")["w"], d["w"])


def test_target_direction_is_the_difference_of_states():
    torch.manual_seed(0)
    a, b = CifarResNet(8), CifarResNet(8)
    d = target_direction(get_theta(a, "states"), get_theta(b, "states"))
    torch.testing.assert_close(d["conv1.weight"], b.conv1.weight - a.conv1.weight)
    torch.testing.assert_close(d["bn1.running_var"], b.bn1.running_var - a.bn1.running_var)


def test_orthogonalize_removes_the_projection(net):
    delta = create_random_direction(net, seed=0)
    eta = create_random_direction(net, seed=1)
    eta_perp = orthogonalize(eta, delta)
    assert abs(cosine_similarity(eta_perp, delta)) < 1e-6
    assert abs(inner(eta_perp, delta)) < 1e-3 * abs(inner(delta, delta))
    assert abs(cosine_similarity(eta, delta)) < 0.1  # random directions are nearly orthogonal already


@pytest.mark.gpu
def test_same_seed_same_direction_on_cuda(net):
    theta_cpu = get_theta(net)
    theta_gpu = {k: v.cuda() for k, v in theta_cpu.items()}
    a = random_direction(theta_cpu, seed=7)
    b = random_direction(theta_gpu, seed=7)
    assert all(torch.equal(a[k], b[k].cpu()) for k in a)
