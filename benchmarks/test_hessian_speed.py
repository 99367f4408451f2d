"""What keeping each batch's gradient graph between Hessian-vector products saves
(``lossbench.hessian.KEEP_GRAPH_IMAGES``): Lanczos on the scale's ResNet-56 at the eigen-ratio maps'
image count, with the graphs rebuilt at every product and with them kept, in one run:

    pytest benchmarks -k hessian_speed --benchmark-autosave

The two rows give the same eigenvalues to the bit (asserted: the saving may not change a number);
their ratio is the saving.
"""

import pytest

import lossbench.hessian as hessian_mod
from lossbench.config import find_config
from lossbench.evaluate import cross_entropy, make_batches

from _timing import mean_seconds, run_on_request

_VALUES: dict[str, tuple[float, float]] = {}
STEPS = 12  # Lanczos steps per round: tol is unreachable, so every round runs all of them


@pytest.mark.parametrize("graphs", ["rebuilt", "kept"])
def test_hessian_speed(benchmark, pytestconfig, graphs, lossbench_scale, lossbench_net, lossbench_dataset,
                       lossbench_device, monkeypatch):
    run_on_request(pytestconfig, "hessian_speed", "the Hessian-product timing")
    config = find_config(lossbench_scale.name, depth=56, shortcut=True, batch_size=128)
    net, data = lossbench_net(config), lossbench_dataset(config)
    n = lossbench_scale.eig_samples
    batches = make_batches(data.x_train[:n], data.y_train[:n], n, device=lossbench_device)
    if graphs == "rebuilt":
        monkeypatch.setattr(hessian_mod, "KEEP_GRAPH_IMAGES", 0)
    benchmark.group = f"hessian-product:{lossbench_scale.name}:resnet56-{n}-images"
    result = benchmark.pedantic(
        hessian_mod.hessian_eigs, args=(net.model, cross_entropy(), batches),
        kwargs=dict(max_iter=STEPS, tol=1e-12), rounds=3, iterations=1, warmup_rounds=0,
    )
    _VALUES[graphs] = result.values
    if len(_VALUES) == 2:
        assert _VALUES["kept"] == _VALUES["rebuilt"], f"kept graphs changed the eigenvalues: {_VALUES}"
    benchmark.extra_info.update(kind="hessian-speed", graphs=graphs, images=n, steps=STEPS,
                                seconds_per_product=mean_seconds(benchmark) / STEPS, device=str(lossbench_device))
