"""benchmarks/fall_diagnosis.py: its measures on nets whose answer is known (an output that ignores the
input, a channel that is dead on every image), and its command line on a cache folder it writes."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from lossbench.config import get_scale
from lossbench.train import make_model

_spec = importlib.util.spec_from_file_location(
    "fall_diagnosis", Path(__file__).parent.parent / "benchmarks" / "fall_diagnosis.py")
fall_diagnosis = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fall_diagnosis)


class _Tiny(nn.Module):
    """conv -> BN -> ReLU -> pool -> linear, with the BN's channel 0 forced dead (shift -100)."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.bn.bias[0] = -100.0
            self.conv.weight.mul_(gain)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3)))


def test_an_output_that_ignores_the_input_has_no_logit_spread_and_identical_features():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 5, 5), torch.randint(0, 3, (16,))
    net = _Tiny(gain=1.0)
    with torch.no_grad():
        net.fc.weight.zero_()
    s = fall_diagnosis.epoch_stats(net, x, y)
    assert s["logit_sd"] == pytest.approx(0.0, abs=1e-6)
    assert s["dead_mean"] == pytest.approx(0.25)  # channel 0 of 4, the one BN layer
    assert s["dead_max"] == pytest.approx(0.25)
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(net(x), y))
    assert s["loss"] == pytest.approx(expected, rel=1e-6)

    # features identical on every image: cosine 1 off the diagonal
    s = fall_diagnosis.epoch_stats(net, x[:1].expand(8, -1, -1, -1).clone() + 0.0, y[:8])
    assert s["feature_cos"] == pytest.approx(1.0, abs=1e-5)


def test_an_input_dependent_net_has_logit_spread_and_distinct_features():
    torch.manual_seed(1)
    x, y = torch.randn(64, 3, 5, 5), torch.randint(0, 3, (64,))
    s = fall_diagnosis.epoch_stats(_Tiny(gain=1.0), x, y)
    assert s["logit_sd"] > 1e-3
    assert s["feature_cos"] < 0.99

    # two images: the mean off the diagonal is their one cosine (with the diagonal it would be (1 + c) / 2)
    net = _Tiny(gain=1.0)
    net.train()
    with torch.no_grad():
        f = torch.relu(net.bn(net.conv(x[:2]))).mean(dim=(2, 3))
    c = float(nn.functional.cosine_similarity(f[0], f[1], dim=0))
    assert fall_diagnosis.epoch_stats(net, x[:2], y[:2])["feature_cos"] == pytest.approx(c, abs=1e-5)


def test_an_image_whose_features_are_all_zero_counts_as_cosine_zero_with_the_others():
    torch.manual_seed(2)
    x, y = torch.randn(2, 3, 5, 5), torch.zeros(2, dtype=torch.long)
    net = _Tiny(gain=1.0)
    with torch.no_grad():
        net.bn.bias.fill_(-100.0)  # every channel dead on every image: all features 0
    s = fall_diagnosis.epoch_stats(net, x, y)
    assert s["feature_cos"] == 0.0
    assert s["dead_mean"] == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        fall_diagnosis.epoch_stats(net, x[:1], y[:1])


def test_the_gradient_norm_is_the_loss_gradients_global_norm_per_batch():
    """Each batch's number is the L2 norm of the mean cross-entropy's gradient over every parameter, with
    BatchNorm in train mode (the batch's own statistics), checked against autograd batch by batch."""
    torch.manual_seed(0)
    model, x, y = _Tiny(gain=1.0), torch.randn(12, 3, 6, 6), torch.randint(0, 3, (12,))
    got = fall_diagnosis.grad_norms(model, x, y, batch=4)
    assert got.shape == (3,)
    for k in range(3):
        model.train()
        loss = nn.functional.cross_entropy(model(x[4 * k:4 * k + 4]), y[4 * k:4 * k + 4])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        assert float(got[k]) == pytest.approx(float(torch.cat([g.flatten() for g in grads]).norm()), rel=1e-6)
    assert all(p.grad is None for p in model.parameters())  # nothing left behind
    with pytest.raises(ValueError, match="12 image.*no batch of 16"):
        fall_diagnosis.grad_norms(model, x, y, batch=16)


def test_a_net_without_batchnorm_is_refused():
    with pytest.raises(ValueError, match="no BatchNorm2d"):
        fall_diagnosis.epoch_stats(nn.Sequential(nn.Flatten(), nn.Linear(75, 3)), torch.randn(2, 3, 5, 5),
                                   torch.zeros(2, dtype=torch.long))


def test_the_command_reads_a_training_cache_and_names_a_missing_epoch(tmp_path, capsys):
    config = get_scale("ci").configs[0]
    folder = tmp_path / config.config_hash
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    torch.save({"format": 1, "config": config.to_dict(), "epoch": 1, "model": make_model(config).state_dict()},
               folder / "epoch-0001.pt")
    fall_diagnosis.main([str(folder), "1", "--images", "32", "--batch", "16"])
    out = capsys.readouterr().out
    assert f"{config.config_id} seed {config.seed}, 32 training images" in out
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "1"
    median, largest = map(float, last[-1].split("/"))  # the gradient norm over the two batches of 16
    assert 0 < median <= largest
    with pytest.raises(SystemExit):
        fall_diagnosis.main([str(folder), "1", "--images", "32"])  # no batch of the default 128
    assert "--images 32 makes no batch of --batch 128" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fall_diagnosis.main([str(folder), "1", "2"])
    assert "no checkpoint for epoch(s) [2]" in capsys.readouterr().err
