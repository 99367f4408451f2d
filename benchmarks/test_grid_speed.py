"""Grid-evaluation speed per model and engine, against the authors' loop re-implemented here.

    pytest benchmarks -k grid_speed --benchmark-autosave --benchmark-group-by=group

Each benchmark times one grid point (set theta + alpha delta + beta eta, evaluate the loss and accuracy
over 1 000 training images of the scale's resolution); extra_info holds points/s, images/s, the
achieved GFLOP/s (multiply-adds counted once, x2) and that figure as a share of the device's float32
peak. Speed is measured here and never asserted.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lossbench.config import find_config
from lossbench.data import load_dataset
from lossbench.directions import create_random_direction, get_theta
from lossbench.engine import make_measure, model_flops
from lossbench.evaluate import cross_entropy, cuda_math, make_batches
from lossbench.surface import perturbation
from lossbench.train import init_weights_, make_model

from _timing import mean_seconds, run_on_request

IMAGES = 1000
MODELS = [(20, True), (20, False), (56, True), (56, False)]
#: the small scale's 16x16 and CIFAR's 32x32 (what a library user has)
SIZES = (16, 32)
CASES = [(d, s, size) for size in SIZES for d, s in MODELS]


@pytest.fixture(autouse=True)
def _on_request(pytestconfig):
    """Speed is measured when asked for: the main job (`pytest benchmarks`) is the reproduction and
    must fit 15 minutes on 2 cores; these 16 benchmarks add ~45 s there."""
    run_on_request(pytestconfig, "grid_speed", "grid speed")


def cpu_peak_gflops() -> float | None:
    """cores x float32 FLOP/cycle x the highest clock the kernel reports: 32 FLOP/cycle with AVX2 (two
    8-wide FMA units), 64 with AVX-512 (two 16-wide FMA units; a part with one 512-bit FMA unit has half)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)]
    flags = set(re.findall(r"\b(avx2|avx512f)\b", text))
    if not mhz or not flags:
        return None
    per_cycle = 64 if "avx512f" in flags else 32
    return (os.cpu_count() or 1) * per_cycle * max(mhz) / 1000.0


#: Dense peaks of known cards by precision, GFLOP/s (vendor datasheets, SXM parts, no sparsity).
CUDA_PEAKS = {
    "H100": {"float32": 67_000.0, "tf32": 494_700.0, "bf16": 989_400.0},
    "H200": {"float32": 67_000.0, "tf32": 494_700.0, "bf16": 989_400.0},
    "A100": {"float32": 19_500.0, "tf32": 156_000.0, "bf16": 312_000.0},
}


def cuda_peak_gflops(precision: str = "float32") -> float | None:
    """The card's dense peak for the arithmetic ``precision`` uses (float32 on the CUDA cores, TF32 and
    bf16 on the tensor cores), in GFLOP/s; None for a card not in :data:`CUDA_PEAKS`."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v[precision] for k, v in CUDA_PEAKS.items() if k in name), None)


@pytest.fixture(scope="module", params=CASES, ids=[f"resnet{d}{'' if s else '-noshort'}-{n}px" for d, s, n in CASES])
def setup(request, lossbench_scale, lossbench_device):
    depth, shortcut, size = request.param
    config = find_config(lossbench_scale.name, depth=depth, shortcut=shortcut, batch_size=128).replace(image_size=size)
    model = make_model(config)
    init_weights_(model, config.init, generator=torch.Generator().manual_seed(0))
    model = model.to(lossbench_device).eval()
    data = load_dataset(config.replace(n_train=IMAGES, n_test=10))
    x, y = data.x_train[:IMAGES], data.y_train[:IMAGES]
    delta = create_random_direction(model, seed=0)
    eta = create_random_direction(model, seed=1)
    flops = model_flops(model, tuple(x.shape[1:]))
    return config, model, x, y, delta, eta, flops


class AuthorsLoop:
    """The authors' per-point work as they wrote it (net_plotter.set_weights + evaluation.eval_loss):
    new tensors ``w + d0*a + d1*b`` assigned to ``p.data``; a DataLoader over a dataset that converts
    each uint8 image with ToTensor + Normalize; batch 128; ``loss.item() * batch`` summed."""

    def __init__(self, model, x, y, delta, eta, mean, std):
        import torchvision.transforms as T

        self.net = copy.deepcopy(model)
        self.weights = [p.detach().clone() for p in self.net.parameters()]
        names = [n for n, _ in self.net.named_parameters()]
        self.dx = [delta[n].cpu().numpy() for n in names]
        self.dy = [eta[n].cpu().numpy() for n in names]
        raw = (x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)).clamp(0, 1)
        images = (raw.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # HWC uint8, like CIFAR
        transform = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

        class Images(torch.utils.data.Dataset):
            def __len__(self):
                return len(images)

            def __getitem__(self, i):
                return transform(images[i]), int(y[i])

        self.loader = torch.utils.data.DataLoader(Images(), batch_size=128, shuffle=False, num_workers=0)
        self.device = next(model.parameters()).device

    def point(self, a: float, b: float) -> tuple[float, float]:
        # their coordinates come from np.linspace (float64): the combination is computed in float64,
        # then torch.Tensor() makes it float32 again
        a, b = np.float64(a), np.float64(b)
        changes = [d0 * a + d1 * b for d0, d1 in zip(self.dx, self.dy)]
        for p, w, d in zip(self.net.parameters(), self.weights, changes):
            p.data = w + torch.Tensor(d).type(type(w)).to(w.device)
        criterion = nn.CrossEntropyLoss()
        self.net.eval()
        total, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for inputs, targets in self.loader:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                outputs = self.net(inputs)
                total += criterion(outputs, targets).item() * len(targets)
                correct += outputs.max(1)[1].eq(targets).sum().item()
                n += len(targets)
        return total / n, 100.0 * correct / n


def _record(benchmark, config, engine, flops, peak, device):
    seconds = mean_seconds(benchmark)
    gflops = flops * IMAGES / seconds / 1e9
    benchmark.extra_info.update(
        model=config.model_name, engine=engine, device=str(device), images=IMAGES,
        image_size=config.image_size, points_per_second=1.0 / seconds, images_per_second=IMAGES / seconds,
        gflop_per_point=flops * IMAGES / 1e9, gflops=gflops, peak_gflops=peak,
        share_of_peak=None if peak is None else gflops / peak, torch=str(torch.__version__),
        threads=torch.get_num_threads(),
    )


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def test_grid_speed_authors_loop(benchmark, setup, lossbench_device):
    config, model, x, y, delta, eta, flops = setup
    data = load_dataset(config.replace(n_train=10, n_test=10))
    loop = AuthorsLoop(model, x, y, delta, eta, data.mean, data.std)
    benchmark.group = f"grid:{config.model_name}-{config.image_size}px"

    def run():
        out = loop.point(0.3, -0.2)
        _sync(lossbench_device)
        return out

    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    _record(benchmark, config, "authors", flops, cpu_peak_gflops() if lossbench_device.type == "cpu" else cuda_peak_gflops(), lossbench_device)


#: benchmark id -> (engine, engine options, needs CUDA). Only variants that can pay are listed: each
#: row's speed-up over the one without the step says what that step bought (benchmarks/RESULTS.md).
VARIANTS = {
    "reference": ("reference", {}, False),
    "fast": ("fast", {}, False),
    "fast+compile": ("fast", {"compile": True}, False),
    "fast+graph": ("fast", {"cuda_graph": True}, True),
    "fast+tf32": ("fast", {"precision": "tf32"}, True),
    "fast+tf32+graph": ("fast", {"precision": "tf32", "cuda_graph": True}, True),
    "fast+bf16": ("fast", {"precision": "bf16"}, False),  # CUDA, or a CPU with bf16 units
    "fast+bf16+graph": ("fast", {"precision": "bf16", "cuda_graph": True}, True),
}


def _variant_params():
    for name, (_, _, cuda) in VARIANTS.items():
        yield pytest.param(name, id=name, marks=[pytest.mark.gpu] if cuda else [])


def _reference_values(model, batches, delta, eta) -> dict[str, float]:
    """The float32 reference engine at the benchmark's grid point (IEEE float32 also on CUDA)."""
    measure, _ = make_measure("reference", model, cross_entropy(), batches)
    with perturbation(model, get_theta(model), [delta, eta]) as set_point:
        set_point(0.3, -0.2)
        return measure(model)


@pytest.mark.parametrize("variant", list(_variant_params()))
def test_grid_speed(benchmark, setup, variant, lossbench_device):
    engine, options, _ = VARIANTS[variant]
    if options.get("precision") == "bf16" and lossbench_device.type == "cpu":
        from lossbench.engine import cpu_bf16_units

        if cpu_bf16_units() is None:
            pytest.skip("this CPU has no bf16 units (no amx_bf16 or avx512_bf16 flag): bf16 is refused on it")
    config, model, x, y, delta, eta, flops = setup
    batches = {"train": make_batches(x, y, 500, device=lossbench_device)}
    measure, _ = make_measure(engine, model, cross_entropy(), batches, **options)
    theta = get_theta(model)
    benchmark.group = f"grid:{config.model_name}-{config.image_size}px"
    with perturbation(model, theta, [delta, eta]) as set_point:
        def run():
            set_point(0.3, -0.2)
            out = measure(model)
            _sync(lossbench_device)
            return out

        # compilation, cuDNN autotuning and graph capture happen in the first (untimed) calls
        values = benchmark.pedantic(run, rounds=3, warmup_rounds=2 if options else 1, iterations=1)
    ref = _reference_values(model, batches, delta, eta)
    precision = options.get("precision", "float32")
    if lossbench_device.type == "cpu":
        peak = cpu_peak_gflops() if precision == "float32" else None  # the float32 peak says nothing of AMX
    else:
        peak = cuda_peak_gflops(precision)
    _record(benchmark, config, variant, flops, peak, lossbench_device)
    benchmark.extra_info["rel_diff_vs_reference"] = abs(values["train_loss"] - ref["train_loss"]) / ref["train_loss"]
    benchmark.extra_info["acc_count_diff"] = round(abs(values["train_acc"] - ref["train_acc"]) * IMAGES)


@pytest.mark.gpu
@pytest.mark.parametrize("points", [1, 4, 16])
def test_grid_speed_cuda_points_per_launch(benchmark, setup, points, lossbench_device):
    """Several grid points per launch: the BN-folded shadow's weights for ``points`` points stacked and
    evaluated with ``torch.func.vmap(functional_call)`` (grouped convolutions), timed per point. Measured
    here to see whether it pays for small nets over few images, where one point cannot fill a GPU."""
    from torch.func import functional_call, stack_module_state, vmap

    from lossbench.engine import FoldedShadow

    config, model, x, y, delta, eta, flops = setup
    shadow = FoldedShadow(model)
    xb = x.to(lossbench_device).contiguous(memory_format=torch.channels_last)
    yb = y.to(lossbench_device)
    coords = [(0.3 - 0.05 * k, -0.2 + 0.03 * k) for k in range(points)]
    loss_fn = nn.CrossEntropyLoss(reduction="sum")

    def one(params, buffers):
        logits = functional_call(shadow.model, (params, buffers), (xb,))
        return loss_fn(logits, yb), (logits.argmax(1) == yb).sum()

    batched = vmap(one)
    benchmark.group = f"points-per-launch:{config.model_name}"  # before timing: pytest-benchmark saves it then
    params, buffers = stack_module_state([shadow.model] * points)  # (points, ...) stacks, filled per point
    names = [n for n, _ in shadow.model.named_parameters()]
    live = [p for _, p in shadow.model.named_parameters()]
    with perturbation(model, get_theta(model), [delta, eta]) as set_point:
        def run():
            for k, (a, b) in enumerate(coords):
                set_point(a, b)
                shadow.sync()
                torch._foreach_copy_([params[n][k] for n in names], live)
            with torch.inference_mode():
                losses, correct = batched(params, buffers)
            out = (losses / IMAGES).tolist(), (correct.double() / IMAGES).tolist()
            return out

        with cuda_math(lossbench_device, autotune=True):  # IEEE float32, as the fast engine
            losses, _ = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    ref = _reference_values(model, {"train": make_batches(x, y, 500, device=lossbench_device)}, delta, eta)
    seconds = mean_seconds(benchmark) / points
    gflops = flops * IMAGES / seconds / 1e9
    benchmark.extra_info.update(model=config.model_name, engine=f"fast+vmap{points}", points=points,
                                seconds_per_point=seconds, points_per_second=1.0 / seconds, gflops=gflops,
                                rel_diff_vs_reference=abs(losses[0] - ref["train_loss"]) / ref["train_loss"],
                                torch=str(torch.__version__), device=str(lossbench_device))
