"""Inputs checked at the door: the library's entry points take a batch list, a DataLoader or a
{split: batches} dict where either makes sense, and refuse what cannot be right with a message that
says what was passed and what is expected."""

import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lossbench.directions import random_direction
from lossbench.evaluate import as_batches, as_datasets, cross_entropy, make_batches
from lossbench.hessian import hessian_eigs
from lossbench.surface import compute_surface


def _net_and_data():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x, y = torch.randn(20, 3, 2, 2), torch.randint(0, 3, (20,))
    return net, x, y


def _line(net, datasets, loss=None):
    d = random_direction(dict(net.named_parameters()), seed=0)
    return compute_surface(net, loss or cross_entropy(), datasets, delta=d, alphas=np.linspace(-1, 1, 3),
                           progress=False)


def test_surface_and_hessian_take_either_shape_with_the_same_numbers():
    net, x, y = _net_and_data()
    batches = make_batches(x, y, 8)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    ref = _line(net, {"train": batches}).values["train_loss"]
    np.testing.assert_array_equal(_line(net, batches).values["train_loss"], ref)
    np.testing.assert_array_equal(_line(net, loader).values["train_loss"], ref)
    a = hessian_eigs(net, cross_entropy(), batches, max_iter=20)
    b = hessian_eigs(net, cross_entropy(), {"train": batches}, max_iter=20)
    assert (a.eig_max, a.eig_min) == (b.eig_max, b.eig_min)


@pytest.mark.parametrize("bad, message", [
    ("x", "expected a list of (inputs, targets) tensor pairs or a DataLoader; got a str"),
    ("ints", "got a list of 2 (int) holding a int"),
    ("pair", "got one (inputs, targets) pair: wrap it in a list"),
    ("two splits", "pass one split's batches, e.g. data['train']"),
    ("uint8", "the inputs are torch.uint8; convert them to float"),
    ("int32", "the targets are torch.int32; class labels must be int64"),
])
def test_what_cannot_be_batches_says_what_was_passed(bad, message):
    _, x, y = _net_and_data()
    data = {"pair": (x, y), "two splits": {"train": make_batches(x, y, 8), "test": make_batches(x, y, 8)},
            "uint8": make_batches((x * 10).to(torch.uint8), y, 8),
            "int32": make_batches(x, y.to(torch.int32), 8), "ints": [1, 2]}.get(bad, bad)
    with pytest.raises(ValueError, match=re.escape(message)):
        as_batches(data)


def test_an_empty_dict_and_a_summed_loss_are_refused():
    net, x, y = _net_and_data()
    with pytest.raises(ValueError, match="datasets is empty"):
        as_datasets({})
    with pytest.raises(ValueError, match="reduction='sum'; lossbench needs the mean over the batch"):
        _line(net, make_batches(x, y, 8), loss=nn.CrossEntropyLoss(reduction="sum"))
    with pytest.raises(ValueError, match="reduction='sum'"):
        hessian_eigs(net, nn.CrossEntropyLoss(reduction="sum"), make_batches(x, y, 8), max_iter=5)
