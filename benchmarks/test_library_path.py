"""The library path against the CLI, each in a fresh Python process, on CIFAR-sized inputs.

    pytest benchmarks -k library_path --benchmark-autosave

A user who calls ``compute_surface(..., engine="fast")`` from a plain Python process must get the
CLI's per-point time: both set the allocator at the first grid evaluation (lossbench._malloc), and
neither should pay a setup per point. Each side runs a 1-point and a 7-point grid in fresh processes
(ResNet-56, 1 000 random 32x32 images, filter-normalised directions); the difference of the two
gives the time per point, the rest is the per-call setup (folding BatchNorm, re-batching, warm-up)
plus the process start. Measured, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from _timing import run_on_request

IMAGES = 1000
MODEL_PY = textwrap.dedent('''
    import torch
    from lossbench.config import RunConfig
    from lossbench.train import init_weights_, make_model


    def make_net():
        config = RunConfig(depth=56, image_size=32)
        model = make_model(config)
        init_weights_(model, config.init, generator=torch.Generator().manual_seed(0))
        return model
''')
LIBRARY_PY = textwrap.dedent('''
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np, torch
    from lossbench.directions import create_random_direction
    from lossbench.evaluate import make_batches
    from lossbench.surface import compute_surface
    sys.path.insert(0, sys.argv[1])
    from model import make_net
    model = make_net().eval()
    model.load_state_dict(torch.load(sys.argv[1] + "/w.pt", weights_only=True))
    data = torch.load(sys.argv[1] + "/data.pt", weights_only=True)
    batches = make_batches(data["x"], data["y"], 500)
    delta, eta = (create_random_direction(model, seed=s) for s in (0, 1))
    t1 = time.perf_counter()
    compute_surface(model, torch.nn.CrossEntropyLoss(), {"train": batches}, delta=delta,
                    alphas=np.linspace(-1, 1, int(sys.argv[2])), engine="fast", progress=False)
    print(json.dumps({"import_and_load": t1 - t0, "grid": time.perf_counter() - t1}))
''')


@pytest.fixture(autouse=True)
def _on_request(pytestconfig):
    run_on_request(pytestconfig, "library_path", "the library-path timing")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("libpath")
    (folder / "model.py").write_text(MODEL_PY)
    (folder / "lib.py").write_text(LIBRARY_PY)
    ns: dict = {}
    exec(MODEL_PY, ns)
    torch.save(ns["make_net"]().state_dict(), folder / "w.pt")
    g = torch.Generator().manual_seed(0)
    torch.save({"x": torch.randn(IMAGES, 3, 32, 32, generator=g), "y": torch.randint(0, 10, (IMAGES,), generator=g)},
               folder / "data.pt")
    return folder


def _wall(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return time.perf_counter() - t, r.stdout


def test_library_path_against_cli(benchmark, folder, tmp_path):
    def cli(points: int) -> float:
        return _wall([sys.executable, "-m", "lossbench", "surface", "--model", f"{folder}/model.py:make_net",
                      "--weights", str(folder / "w.pt"), "--data", str(folder / "data.pt"), "--engine", "fast",
                      "--x", f"-1:1:{points}", "--overwrite", "-o", str(tmp_path / f"cli{points}.h5")])[0]

    def library(points: int) -> tuple[float, dict]:
        wall, out = _wall([sys.executable, str(folder / "lib.py"), str(folder), str(points)])
        return wall, json.loads(out.strip().splitlines()[-1])

    benchmark.group = "library-vs-cli:resnet56-32px"
    rows = {}

    def run():  # round-robin, so that a drift of the machine touches both sides alike
        rows["cli1"], rows["lib1"] = cli(1), library(1)
        rows["cli7"], rows["lib7"] = cli(7), library(7)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    cli_point = (rows["cli7"] - rows["cli1"]) / 6
    lib_point = (rows["lib7"][1]["grid"] - rows["lib1"][1]["grid"]) / 6
    benchmark.extra_info.update(
        images=IMAGES, threads=torch.get_num_threads(), cli_seconds_per_point=cli_point,
        library_seconds_per_point=lib_point, library_over_cli=lib_point / cli_point,
        library_setup_seconds=rows["lib1"][1]["grid"] - lib_point,
        cli_process_seconds_beyond_points=rows["cli1"] - cli_point,
        library_import_and_load_seconds=rows["lib1"][1]["import_and_load"], torch=str(torch.__version__),
    )
