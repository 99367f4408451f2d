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
from lossbench.evaluate import cross_entropy, make_batches
from lossbench.surface import perturbation
from lossbench.train import init_weights_, make_model

from _timing import mean_seconds

IMAGES = 1000
MODELS = [(20, True), (20, False), (56, True), (56, False)]


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


def cuda_peak_gflops() -> float | None:
    """Dense float32 (non-tensor-core) peak of known cards, in GFLOP/s."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    table = {"H100": 67_000.0, "H200": 67_000.0, "A100": 19_500.0}
    return next((v for k, v in table.items() if k in name), None)


@pytest.fixture(scope="module", params=MODELS, ids=[f"resnet{d}{'' if s else '-noshort'}" for d, s in MODELS])
def setup(request, lossbench_scale, lossbench_device):
    depth, shortcut = request.param
    config = find_config(lossbench_scale.name, depth=depth, shortcut=shortcut, batch_size=128)
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
    benchmark.group = f"grid:{config.model_name}"

    def run():
        out = loop.point(0.3, -0.2)
        _sync(lossbench_device)
        return out

    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    _record(benchmark, config, "authors", flops, cpu_peak_gflops() if lossbench_device.type == "cpu" else cuda_peak_gflops(), lossbench_device)


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_grid_speed(benchmark, setup, engine, lossbench_device):
    config, model, x, y, delta, eta, flops = setup
    batches = {"train": make_batches(x, y, 500, device=lossbench_device)}
    measure, _ = make_measure(engine, model, cross_entropy(), batches)
    theta = get_theta(model)
    benchmark.group = f"grid:{config.model_name}"
    with perturbation(model, theta, [delta, eta]) as set_point:
        def run():
            set_point(0.3, -0.2)
            out = measure(model)
            _sync(lossbench_device)
            return out

        values = benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    ref_measure, _ = make_measure("reference", model, cross_entropy(), batches)
    with perturbation(model, theta, [delta, eta]) as set_point:
        set_point(0.3, -0.2)
        ref = ref_measure(model)
    _record(benchmark, config, engine, flops, cpu_peak_gflops() if lossbench_device.type == "cpu" else cuda_peak_gflops(), lossbench_device)
    benchmark.extra_info["rel_diff_vs_reference"] = abs(values["train_loss"] - ref["train_loss"]) / ref["train_loss"]
    benchmark.extra_info["acc_count_diff"] = round(abs(values["train_acc"] - ref["train_acc"]) * IMAGES)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "tf32"])
def test_grid_speed_cuda_reduced_precision(benchmark, setup, dtype, lossbench_device):
    if lossbench_device.type != "cuda":
        pytest.skip("reduced-precision rows need --lossbench-device cuda")
    config, model, x, y, delta, eta, flops = setup
    batches = {"train": make_batches(x, y, 500, device=lossbench_device)}
    options = {"autocast": torch.bfloat16} if dtype == "bf16" else {}
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    try:
        measure, _ = make_measure("fast", model, cross_entropy(), batches, **options)
        ref_measure, _ = make_measure("reference", model, cross_entropy(), batches)
        benchmark.group = f"grid:{config.model_name}"
        with perturbation(model, get_theta(model), [delta, eta]) as set_point:
            set_point(0.3, -0.2)
            values = benchmark.pedantic(lambda: (measure(model), _sync(lossbench_device))[0], rounds=3,
                                        warmup_rounds=1, iterations=1)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with perturbation(model, get_theta(model), [delta, eta]) as set_point:
            set_point(0.3, -0.2)
            ref = ref_measure(model)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    _record(benchmark, config, f"fast+{dtype}", flops, cuda_peak_gflops(), lossbench_device)
    benchmark.extra_info["rel_diff_vs_float32"] = abs(values["train_loss"] - ref["train_loss"]) / ref["train_loss"]
