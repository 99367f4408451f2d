"""Hypothesis strategies: small bounded shapes and tensors, and tiny networks built by the library."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lossbench.models import CifarResNet

SIDE = st.integers(1, 8)


def param_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    """1-D (bias-like), 2-D (linear) and 4-D (conv) shapes with sides <= 8."""
    return st.one_of(
        st.tuples(SIDE),
        st.tuples(SIDE, SIDE),
        st.tuples(SIDE, SIDE, st.integers(1, 3), st.integers(1, 3)),
    )


def multi_dim_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    """Only >= 2-D shapes (what filter normalisation rescales)."""
    return st.one_of(st.tuples(SIDE, SIDE), st.tuples(SIDE, SIDE, st.integers(1, 3), st.integers(1, 3)))


def tensors(shape: tuple[int, ...], *, lo: float = -1e3, hi: float = 1e3) -> st.SearchStrategy[torch.Tensor]:
    elements = st.floats(lo, hi, width=32, allow_nan=False, allow_subnormal=False)
    return arrays(np.float32, shape, elements=elements).map(torch.from_numpy)


@st.composite
def nonzero_filter_tensors(draw, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor whose every dim-0 slice has norm >= 1e-2: built valid (a floor on one entry), not filtered."""
    t = draw(tensors(shape, lo=-10.0, hi=10.0))
    flat = t.reshape(shape[0], -1)
    floor = torch.where(flat[:, :1] >= 0, 0.01, -0.01)
    flat[:, :1] = torch.where(flat[:, :1].abs() < 0.01, floor, flat[:, :1])
    return flat.reshape(shape)


@st.composite
def thetas(draw, n_tensors: int = 3) -> dict[str, torch.Tensor]:
    """A name -> tensor dict with mixed 1-D, 2-D and 4-D entries."""
    shapes = draw(st.lists(param_shapes(), min_size=1, max_size=n_tensors))
    return {f"layer{i}.weight": draw(tensors(s, lo=-10.0, hi=10.0)) for i, s in enumerate(shapes)}


@st.composite
def tiny_nets(draw) -> torch.nn.Module:
    """ResNet-8 or -14 at width 1-2, with or without shortcuts, seeded init, in eval mode."""
    n = draw(st.sampled_from([1, 2]))
    width = draw(st.sampled_from([1, 2]))
    shortcut = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)  # test-only: module construction draws from the global RNG
    model = CifarResNet(6 * n + 2, width=width, shortcut=shortcut).eval()
    return model
