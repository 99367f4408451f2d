"""Sharded surfaces: the union of the ranks' points equals the single-process surface."""

import copy
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from lossbench.config import RunConfig
from lossbench.data import load_dataset
from lossbench.pipeline import SurfaceSpec, shard_paths, surface_file
from lossbench.store import load_surface
from lossbench.surface import Axis
from lossbench.train import train

TINY = RunConfig(depth=8, batch_size=32, epochs=1, n_train=64, n_test=32, image_size=16)
SPEC = SurfaceSpec(x=Axis(-1, 1, 3), y=Axis(-1, 1, 4), eval_samples=32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return train(TINY, cache_dir=cache), load_dataset(TINY)


def run_ranks(path, model, data, world, **kw):
    """``world`` ranks as threads (each with its own model copy) sharing a threading barrier."""
    barrier = threading.Barrier(world)
    errors = []

    def rank(r):
        try:
            surface_file(path, copy.deepcopy(model), data, SPEC, shard=(r, world), barrier=barrier.wait, **kw)
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_sharded_surface_equals_the_single_process_one(tiny, tmp_path):
    result, data = tiny
    single = surface_file(tmp_path / "single.h5", result.model, data, SPEC)
    run_ranks(tmp_path / "sharded.h5", result.model, data, world=3)
    sharded = load_surface(tmp_path / "sharded.h5")
    assert sharded.complete and not shard_paths(tmp_path / "sharded.h5")
    np.testing.assert_array_equal(sharded.values["train_loss"], single.values["train_loss"])


def test_a_dead_rank_loses_only_its_unfinished_points(tiny, tmp_path, monkeypatch):
    result, data = tiny
    path = tmp_path / "s.h5"
    # a previous run with 2 ranks: rank 1 died after checkpointing 2 points; rank 0 never merged
    from lossbench import pipeline

    partial = surface_file(tmp_path / "ref.h5", result.model, data, SPEC)
    done = np.zeros(partial.shape, bool)
    done.flat[[1, 3]] = True
    dead = type(partial)(alphas=partial.alphas, betas=partial.betas,
                         values={k: np.where(done, v, np.nan) for k, v in partial.values.items()}, done=done,
                         attrs=partial.attrs)
    from lossbench.store import load_directions, save_surface

    delta, eta, _ = load_directions(tmp_path / "ref.h5")
    save_surface(path.with_name(f"{path.name}.rank1-of-2.h5"), dead, delta=delta, eta=eta)
    calls = {"n": 0}
    real = pipeline.compute_surface

    def counting(*a, **k):
        surface = real(*a, **k)
        calls["n"] += int(surface.done.sum())
        return surface

    monkeypatch.setattr(pipeline, "compute_surface", counting)
    run_ranks(path, result.model, data, world=2)
    merged = load_surface(path)
    assert merged.complete
    np.testing.assert_array_equal(merged.values["train_loss"], partial.values["train_loss"])
    # the two checkpointed points were merged first and not recomputed: 12 - 2 left, each rank's
    # returned surface counts its own 5 plus the 2 inherited ones
    assert calls["n"] == 10 + 2 * 2


def test_torchrun_two_cpu_processes(tiny, tmp_path):
    result, _ = tiny
    ckpt = str(result.checkpoint(1))
    common = ["surface", "--checkpoint", ckpt, "--x", "-1:1:3", "--y", "-1:1:3", "--eval-samples", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "lossbench", *common, "-o", str(tmp_path / "one.h5")], check=True, env=env)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run([*torchrun, "-m", "lossbench", *common, "-o", str(tmp_path / "two.h5")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = load_surface(tmp_path / "one.h5"), load_surface(tmp_path / "two.h5")
    assert two.complete
    np.testing.assert_array_equal(one.values["train_loss"], two.values["train_loss"])
