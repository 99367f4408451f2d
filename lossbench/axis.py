"""A grid axis: ``num`` evenly spaced coordinates, written ``lo:hi:num`` as in the authors' code.

Torch-free (numpy only), so that the command line parses ``--x``/``--y`` without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Points per axis at most: 10 001 x 10 001 float64 bookkeeping arrays already take ~4 GB.
MAX_AXIS_POINTS = 10_001


@dataclass(frozen=True)
class Axis:
    """``num`` evenly spaced coordinates from ``lo`` to ``hi`` (the authors' ``lo:hi:num``)."""

    lo: float
    hi: float
    num: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            raise ValueError(f"bad axis {self}: min and max must be finite numbers (e.g. -1:1:51)")
        if self.num < 1 or (self.num > 1 and not self.hi > self.lo):
            raise ValueError(f"bad axis {self}: need num >= 1 and max > min (e.g. -1:1:51)")
        if self.num > MAX_AXIS_POINTS:
            raise ValueError(f"bad axis {self}: at most {MAX_AXIS_POINTS} points per axis (the paper uses 51)")

    def coords(self) -> np.ndarray:
        """(num,) float64. With an odd ``num`` the middle value is exactly (lo + hi) / 2 (0 for -a:a)."""
        if self.num == 1:
            return np.array([self.lo], dtype=np.float64)
        c = np.linspace(self.lo, self.hi, self.num, dtype=np.float64)
        if self.num % 2 == 1:
            c[self.num // 2] = (self.lo + self.hi) / 2
        return c

    def __str__(self) -> str:
        return f"{self.lo:g}:{self.hi:g}:{self.num}"


def parse_axis(text: str) -> Axis:
    """``"-1:1:51"`` -> ``Axis(-1.0, 1.0, 51)``; the argparse ``type=`` of ``--x`` and ``--y``."""
    parts = str(text).split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        lo, hi, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"bad axis {text!r}; expected min:max:num, e.g. -1:1:51") from None
    return Axis(lo, hi, num)


