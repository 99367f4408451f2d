"""The paper's workload on one GPU: ResNet-56, 32x32 images, the 50 000-image training set, projected
to the 51x51 grid (2 601 points) from the measured time per point.

    pytest benchmarks -k paper_projection --lossbench-device cuda --benchmark-autosave

Timing only, so on request like the grid speed: the GPU main job skips it (its compile rows alone took
over three minutes on an H200).

The images are random normal tensors of CIFAR-10's shape, already on the device (the time of a point
does not depend on their values; the synthetic set is not generated at 50 000 images just to time it).
Each row's ``extra_info`` has seconds per point, the projected minutes for 51x51, the achieved TFLOP/s
and the relative loss difference against the float32 fast engine at the same point. CUDA only: on
the 2-core dev CPU one such point would take ~45 s (12.6 TFLOP at ~290 GFLOP/s; 51x51 ~31 h), and
``test_grid_speed`` already measures the CPU at a small size.
"""

from __future__ import annotations

import pytest
import torch
from test_grid_speed import cuda_peak_gflops

from lossbench.directions import create_random_direction, get_theta
from lossbench.engine import make_measure, model_flops
from lossbench.evaluate import cross_entropy, make_batches
from lossbench.models import CifarResNet
from lossbench.surface import perturbation

from _timing import mean_seconds, run_on_request

IMAGES = 50_000
POINTS = 51 * 51

#: id -> (engine, options): each step of benchmarks/RESULTS.md's GPU table. The batch-size rows show
#: where a larger batch stops paying; "autotune" is inductor's max-autotune-no-cudagraphs mode (Triton
#: convolution templates timed against cuDNN; ~1 min to compile).
VARIANTS = {
    "reference": ("reference", {}),
    "fast": ("fast", {}),
    "fast+tf32": ("fast", {"precision": "tf32"}),
    "fast+tf32+graph": ("fast", {"precision": "tf32", "cuda_graph": True}),
    "fast+bf16": ("fast", {"precision": "bf16"}),
    "fast+bf16+graph": ("fast", {"precision": "bf16", "cuda_graph": True}),
    "fast+bf16+graph-b1024": ("fast", {"precision": "bf16", "cuda_graph": True, "batch_size": 1024}),
    "fast+bf16+graph-b12500": ("fast", {"precision": "bf16", "cuda_graph": True, "batch_size": 12_500}),
    "fast+bf16+compile+graph-b12500": ("fast", {"precision": "bf16", "cuda_graph": True, "compile": True,
                                                "batch_size": 12_500}),
    "fast+tf32+compile+graph-b12500": ("fast", {"precision": "tf32", "cuda_graph": True, "compile": True,
                                                "batch_size": 12_500}),
    "fast+bf16+compile-autotune+graph-b12500": ("fast", {"precision": "bf16", "cuda_graph": True, "batch_size": 12_500,
                                                 "compile": "max-autotune-no-cudagraphs"}),
    "fast+tf32+compile-autotune+graph-b12500": ("fast", {"precision": "tf32", "cuda_graph": True, "batch_size": 12_500,
                                                 "compile": "max-autotune-no-cudagraphs"}),
    "fast+compile+graph": ("fast", {"cuda_graph": True, "compile": True}),
    "fast-channels-last": ("fast", {"channels_last": True}),
    "fast+tf32-nchw+graph": ("fast", {"precision": "tf32", "channels_last": False, "cuda_graph": True}),
}


@pytest.fixture(scope="module")
def paper_setup(lossbench_device, pytestconfig):
    run_on_request(pytestconfig, "paper_projection", "the paper-scale projection (timing only, minutes of compiling)")
    if lossbench_device.type != "cuda":
        pytest.skip("the paper-scale projection runs on CUDA only (--lossbench-device cuda)")
    g = torch.Generator().manual_seed(0)
    model = CifarResNet(56, shortcut=True)
    with torch.no_grad():  # BN statistics away from (0, 1), so the folding has something to fold
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    model = model.to(lossbench_device).eval()
    x = torch.randn(IMAGES, 3, 32, 32, generator=g).to(lossbench_device)
    y = torch.randint(0, 10, (IMAGES,), generator=g).to(lossbench_device)
    batches = {"train": make_batches(x, y, 1024)}
    delta, eta = create_random_direction(model, seed=0), create_random_direction(model, seed=1)
    flops = model_flops(model, (3, 32, 32))
    float32, _ = make_measure("fast", model, cross_entropy(), batches)
    with perturbation(model, get_theta(model), [delta, eta]) as set_point:
        set_point(0.3, -0.2)
        ref = float32(model)
    return model, batches, delta, eta, flops, ref


@pytest.mark.gpu
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_paper_projection(benchmark, paper_setup, variant, lossbench_device):
    model, batches, delta, eta, flops, ref = paper_setup
    engine, options = VARIANTS[variant]
    measure, _ = make_measure(engine, model, cross_entropy(), batches, **options)
    benchmark.group = "paper:resnet56-32x32-50k"
    with perturbation(model, get_theta(model), [delta, eta]) as set_point:
        def run():
            set_point(0.3, -0.2)
            out = measure(model)  # float() of the sums synchronises with the device
            return out

        values = benchmark.pedantic(run, rounds=3, warmup_rounds=1 if engine == "reference" else 2, iterations=1)
    seconds = mean_seconds(benchmark)
    tflops = flops * IMAGES / seconds / 1e12
    peak = cuda_peak_gflops(options.get("precision", "float32"))
    benchmark.extra_info.update(
        model="resnet56-32x32", engine=variant, device=torch.cuda.get_device_name(), images=IMAGES,
        seconds_per_point=seconds, projected_51x51_minutes=seconds * POINTS / 60, images_per_second=IMAGES / seconds,
        tflops=tflops, share_of_peak=None if peak is None else tflops * 1e3 / peak, torch=str(torch.__version__),
        rel_diff_vs_float32=abs(values["train_loss"] - ref["train_loss"]) / ref["train_loss"],
        acc_count_diff_vs_float32=round(abs(values["train_acc"] - ref["train_acc"]) * IMAGES),
    )
