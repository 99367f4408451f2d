"""Training throughput per architecture at the small scale's 16x16, as ``lossbench train`` runs it.

    pytest benchmarks -k train_speed --benchmark-autosave

Each benchmark times training steps of the recipe (forward, cross-entropy, backward, Adam step; batch
128, one intra-op thread as ``train`` sets it) and records images/s. The ``channels_last`` variant
is the evaluation engine's memory layout applied to training: extra_info says whether its weights
after the timed steps are bit-identical to the default layout's (they are not: training's results
must not change for a speed-up, so the layout is an opt-in, ``train --channels-last``, never the
default). Speed is measured here and never asserted.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbench.config import find_config
from lossbench.data import load_dataset
from lossbench.train import TRAIN_THREADS, init_weights_, make_model, make_optimizer

from _timing import mean_seconds, run_on_request

MODELS = [(20, True), (20, False), (56, True), (56, False)]
STEPS = 8
BATCH = 128


@pytest.fixture(autouse=True)
def _on_request(pytestconfig):
    """Opt-in like the grid speed: the main job is the reproduction and must fit its 15 minutes."""
    run_on_request(pytestconfig, "train_speed", "training speed")


@pytest.fixture(scope="module")
def batches():
    config = find_config("small", depth=20, shortcut=True, batch_size=BATCH)
    data = load_dataset(config.replace(n_train=STEPS * BATCH, n_test=10))
    return [(data.x_train[k * BATCH:(k + 1) * BATCH], data.y_train[k * BATCH:(k + 1) * BATCH]) for k in range(STEPS)]


def _fresh(depth: int, shortcut: bool, channels_last: bool):
    config = find_config("small", depth=depth, shortcut=shortcut, batch_size=BATCH)
    model = make_model(config)
    init_weights_(model, config.init, generator=torch.Generator().manual_seed(0))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return config, model, make_optimizer(model, config)


def _steps(model, optimizer, batches, channels_last: bool) -> None:
    model.train()
    for xb, yb in batches:
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("layout", ["default", "channels_last"])
@pytest.mark.parametrize("arch", MODELS, ids=[f"resnet{d}{'' if s else '-noshort'}" for d, s in MODELS])
def test_train_speed(benchmark, batches, arch, layout):
    depth, shortcut = arch
    channels_last = layout == "channels_last"
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        config, model, optimizer = _fresh(depth, shortcut, channels_last)
        benchmark.group = f"train:{config.model_name}"
        calls = []

        def run():
            calls.append(1)
            _steps(model, optimizer, batches, channels_last)

        benchmark.pedantic(run, rounds=2, warmup_rounds=1, iterations=1)
        # the same steps from the same start in the default layout: are the weights bit-identical?
        _, ref, ref_opt = _fresh(depth, shortcut, False)
        for _ in calls:  # as many as were run above (one under --benchmark-disable)
            _steps(ref, ref_opt, batches, False)
        identical = all(torch.equal(a, b.contiguous()) for a, b in
                        zip(ref.state_dict().values(), [t.contiguous() for t in model.state_dict().values()]))
    finally:
        torch.set_num_threads(before)
    seconds = mean_seconds(benchmark)
    benchmark.extra_info.update(model=config.model_name, layout=layout, threads=TRAIN_THREADS, batch=BATCH,
                                steps=STEPS, image_size=config.image_size,
                                images_per_second=STEPS * BATCH / seconds if seconds == seconds else None,
                                bit_identical_to_default=identical, torch=str(torch.__version__))
