"""One table of default tolerances per dtype; tests use these instead of inventing their own.

Chosen to absorb BLAS/thread-count differences between machines (float32 sums over ~1e4 terms).
"""

from __future__ import annotations

import torch

TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-3),
}


def tol(dtype: torch.dtype, scale: float = 1.0) -> dict[str, float]:
    """The default (rtol, atol) for ``dtype``, optionally widened by ``scale`` (say why at the call)."""
    base = TOLERANCES[dtype]
    return {k: v * scale for k, v in base.items()}


def assert_close(actual, expected, *, dtype: torch.dtype = torch.float32, scale: float = 1.0, msg: str | None = None):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, **tol(dtype, scale), msg=msg)
