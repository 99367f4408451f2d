"""Slow, loop-based reference implementations kept to check the vectorised library code."""

from __future__ import annotations


def filter_normalize_loop(direction: dict, theta: dict, ignore: str = "biasbn") -> dict:
    """The authors' net_plotter.normalize_directions_for_weights, filter by filter."""
    out = {}
    for name, w in theta.items():
        d = direction[name].clone()
        if d.dim() <= 1:
            if ignore == "biasbn":
                d.fill_(0)
            else:
                d.copy_(w)
        else:
            for di, wi in zip(d, w):
                di.mul_(wi.norm() / (di.norm() + 1e-10))
        out[name] = d
    return out
