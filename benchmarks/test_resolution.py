"""Does a convexity verdict depend on the grid? The non-convex fraction of the seed-recipe nets on
direction pair 1 at the main job's 11 x 11 and at 21 x 21 (issue 21: "at a resolution where a verdict
does not change between 11x11 and 21x21"), and the margins of the claims that use it.

    pytest benchmarks -k resolution -s        # on request: about ten minutes on 2 CPU cores

Prints, per claim, the margin +- its grid (binomial) uncertainty at both resolutions and whether the
decision (holds / fails / unresolved on this pair, seed 0) is the same; benchmarks/RESULTS.md keeps the
output. Seeds are not involved: both grids see the same nets.
"""

import dataclasses
import math

import pytest

from lossbench.claims import K
from lossbench.metrics import nonconvex_fraction, nonconvex_region
from lossbench.reproduce import compute_config_surface

from _timing import run_on_request

PAIRS = [("depth-nonconvex-without-skips", (56, False), (20, False)),
         ("skips-prevent-nonconvexity", (56, False), (56, True))]


def _decision(margin: float, u: float) -> str:
    if not abs(margin) > K * u:
        return "unresolved"
    return "holds" if margin > 0 else "fails"


@pytest.mark.parametrize("bs", [128, 2000])
def test_resolution(pytestconfig, lossbench_scale, lossbench_net, lossbench_dataset, lossbench_results_dir, bs):
    run_on_request(pytestconfig, "resolution", "the 11x11 against 21x21 resolution check")
    from lossbench.config import find_config

    fractions: dict[tuple, dict[int, tuple[float, int]]] = {}
    for depth, shortcut in {(56, False), (20, False), (56, True)}:
        config = find_config(lossbench_scale.name, depth=depth, shortcut=shortcut, batch_size=bs)
        net, data = lossbench_net(config), lossbench_dataset(config)
        for n in (11, 21):
            scale = dataclasses.replace(lossbench_scale, surface_x=f"-1:1:{n}", surface_y=f"-1:1:{n}")
            path = lossbench_results_dir / "resolution" / f"{config.config_id}-{n}.h5"
            s = compute_config_surface(path, net.model, data, config, scale)
            loss = s.values["train_loss"]
            fractions.setdefault((depth, shortcut), {})[n] = (
                nonconvex_fraction(s.alphas, s.betas, loss), int(nonconvex_region(s.alphas, s.betas, loss).sum()))
    decided = {}
    for name, a, b in PAIRS:
        for n in (11, 21):
            (fa, na), (fb, nb) = fractions[a][n], fractions[b][n]
            u = math.hypot(*(math.sqrt(max(f * (1 - f), 0.25 / m) / m) for f, m in ((fa, na), (fb, nb))))
            decided[(name, n)] = _decision(fa - fb, u)
            print(f"bs{bs} {name} {n}x{n}: {fa:.3f} ({na} points) - {fb:.3f} ({nb} points) = {fa - fb:+.3f} "
                  f"± {u:.3f} -> {decided[(name, n)]}")
    for name, _, _ in PAIRS:
        print(f"bs{bs} {name}: {'the same' if decided[(name, 11)] == decided[(name, 21)] else 'CHANGES'} "
              "between 11x11 and 21x21")
