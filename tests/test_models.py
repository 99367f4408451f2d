import pytest
import torch

from lossbench.models import CifarResNet, build_model, is_biasbn, resnet20, resnet56, resnet110, vgg9


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("builder, millions", [(resnet20, 0.27), (resnet56, 0.85), (resnet110, 1.7)])
@pytest.mark.parametrize("shortcut", [True, False])
def test_parameter_counts_match_the_known_figures(builder, millions, shortcut):
    assert n_params(builder(shortcut=shortcut)) / 1e6 == pytest.approx(millions, rel=0.03)


def test_width_multiplies_channels():
    assert CifarResNet(20, width=2).linear.in_features == 128


def test_noshort_net_has_no_skip_path():
    names = [n for n, _ in resnet20(shortcut=False).named_modules()]
    assert not any("shortcut" in n for n in names)
    assert any("shortcut" in n for n, _ in resnet20(shortcut=True).named_modules())


@pytest.mark.parametrize("shortcut", [True, False])
def test_removing_the_residual_branch_leaves_only_the_skip_path(shortcut):
    """Zero the last block's second BN: with a shortcut the block passes its input on (logits still
    depend on the image); without one its output is relu(0) = 0 for every input (constant logits)."""
    model = CifarResNet(8, shortcut=shortcut).eval()
    last = model.layer3[-1]
    with torch.no_grad():
        last.bn2.weight.zero_()
        last.bn2.bias.zero_()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = model(x)
    constant = torch.allclose(out, out[:1].expand_as(out), atol=1e-6)
    assert constant is (not shortcut)


def test_bad_depth_is_named():
    with pytest.raises(ValueError, match="depth 21 is not 6n\\+2"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="unknown architecture 'densenet'"):
        build_model("densenet", 40)


@pytest.mark.parametrize("size", [16, 32])
def test_forward_shapes(size):
    x = torch.randn(2, 3, size, size)
    assert resnet20()(x).shape == (2, 10)
    assert vgg9(image_size=size)(x).shape == (2, 10)


def test_vgg9_has_seven_convs_and_two_linears():
    model = vgg9()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert (len(convs), len(linears)) == (7, 2)


def test_biasbn_predicate_picks_exactly_the_low_dim_tensors():
    model = resnet20()
    picked = {n for n, t in model.state_dict().items() if is_biasbn(t)}
    assert all(n.split(".")[-1] in {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"} for n in picked)
    assert "linear.bias" in picked and "bn1.weight" in picked and "linear.weight" not in picked
    assert "conv1.weight" not in picked
