"""Randomised kills: SIGKILL and SIGTERM at seeded random moments during ``surface`` (the CLI) and
during training (the library, in a child process), each followed by the same command; the finished
result must equal an uninterrupted run's bit for bit, and no temporary file may be left behind.

A moment is a point of progress, not a time: the kill is sent once the run has saved a seeded random
number of grid points (or epochs, plus a random part of the next), read from what it wrote. A timer
measured on one run landed after the end of a later one on this machine (its speed varies by a
third from minute to minute), so a trial could prove nothing. The whole file runs in well under a
minute on 2 cores (small model, small grid, one thread per process).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lossbench.store import load_surface

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
MODEL_PY = textwrap.dedent('''
    from torch import nn


    def make_net():
        return nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
''')


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kill")
    (folder / "model.py").write_text(MODEL_PY)
    g = torch.Generator().manual_seed(1)
    torch.save({"x": torch.randn(3000, 32, generator=g), "y": torch.randint(0, 10, (3000,), generator=g)},
               folder / "data.pt")
    ns: dict = {}
    exec(MODEL_PY, ns)
    torch.manual_seed(0)
    torch.save(ns["make_net"]().state_dict(), folder / "w.pt")
    return folder


def _surface_cmd(folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lossbench", "surface", "--model", f"{folder}/model.py:make_net",
            "--weights", str(folder / "w.pt"), "--data", str(folder / "data.pt"), "--x", "-1:1:15", "--y", "-1:1:15",
            "--checkpoint-seconds", "0", "-o", str(out)]


def _points_saved(path: Path) -> int:
    """Grid points finished in the surface file (atomically replaced at each flush, so always whole)."""
    if not path.exists():
        return 0
    return int(load_surface(path).done.sum())


def _epochs_saved(cache: Path) -> int:
    """Epochs finished in the training cache entry (epoch-0000.pt is the initialisation)."""
    return max(len(list(_entry_marker(cache).parent.glob("epoch-*.pt"))) - 1, 0)


def _kill_when(cmd: list[str], sig: int | None, ready, *, delay: float = 0.0
               ) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``; once ``ready()`` is true (polled every 50 ms), wait ``delay`` seconds and send
    ``sig`` if it is still running. Returns the result and its wall time (with ``sig`` None: an
    uninterrupted run)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    if sig is not None:
        deadline = t0 + 120
        while proc.poll() is None and time.monotonic() < deadline and not ready():
            time.sleep(0.05)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), time.monotonic() - t0


def test_surface_killed_at_random_moments_resumes_to_the_uninterrupted_result(own, tmp_path):
    fresh = tmp_path / "fresh.h5"
    done, _ = _kill_when(_surface_cmd(own, fresh), None, lambda: True)
    assert done.returncode == 0, done.stderr
    expected = load_surface(fresh).values["train_loss"]
    points = expected.size
    rng = random.Random(12)
    out = tmp_path / "killed.h5"
    interrupted, trials = 0, []
    for sig in (signal.SIGKILL, signal.SIGTERM):
        # after 5-45 % of the points still to do (a later trial resumes the earlier one's): at least
        # half the grid is left when the signal goes, hundreds of milliseconds of work at any speed
        before = _points_saved(out)
        target = before + max(1, round(rng.uniform(0.05, 0.45) * (points - before)))
        r, _ = _kill_when(_surface_cmd(own, out), sig, lambda: _points_saved(out) >= target)
        trials.append(f"{sig.name}: from {before} to {target} of {points} points, exit {r.returncode}, "
                      f"{_points_saved(out)} saved; stderr {r.stderr.strip()[-300:]!r}")
        if r.returncode == 0:
            continue  # it finished first: nothing to resume this time
        interrupted += not load_surface(out).done.all()
        if sig == signal.SIGTERM:  # what batch schedulers send: saved and said in one line, exit 143
            assert r.returncode == 143, r.stderr
            assert r.stderr.strip().splitlines()[-1].startswith("terminated (SIGTERM): finished points")
        else:
            assert r.returncode == -signal.SIGKILL
    assert interrupted == 2, "a kill came too late to interrupt anything: the trial proves less\n" + "\n".join(trials)
    again = subprocess.run(_surface_cmd(own, out), capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = load_surface(out)
    assert resumed.done.all()
    np.testing.assert_array_equal(resumed.values["train_loss"], expected)
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.lock"))


EPOCHS = 6  # of the tiny training run below
TRAIN_PY = textwrap.dedent('''
    import sys
    from lossbench.config import RunConfig
    from lossbench.reference_nets import state_sha256
    from lossbench.train import train

    config = RunConfig(depth=8, batch_size=32, epochs=6, n_train=256, n_test=64, image_size=16)
    result = train(config, cache_dir=sys.argv[1])
    print(state_sha256(result.model.state_dict()))
''')


def test_training_killed_at_random_moments_resumes_to_the_uninterrupted_weights(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(TRAIN_PY)
    fresh, seconds = _kill_when([sys.executable, str(script), str(tmp_path / "fresh")], None, lambda: True)
    assert fresh.returncode == 0, fresh.stderr
    epoch = seconds / EPOCHS  # more than one epoch takes (the run also imports torch and draws the data)
    rng = random.Random(3)
    cache = tmp_path / "killed"
    interrupted = 0
    for sig in (signal.SIGKILL, signal.SIGTERM):
        # once the run has saved one or two more epochs than it started from (never beyond the
        # fourth of six), then 5-60 % of that bound later: inside the next epoch or the one after,
        # with at least one still to go even if the bound is twice an epoch
        before = _epochs_saved(cache)
        target = min(before + rng.randint(1, 2), EPOCHS - 2)
        r, _ = _kill_when([sys.executable, str(script), str(cache)], sig, lambda: _epochs_saved(cache) >= target,
                          delay=rng.uniform(0.05, 0.6) * epoch)
        interrupted += r.returncode != 0
    assert interrupted == 2, "a kill came too late to interrupt anything: the trial proves less"
    again = subprocess.run([sys.executable, str(script), str(cache)], capture_output=True, text=True, env=ENV,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-1] == fresh.stdout.split()[-1]  # the same sha256 of the final weights
    assert not list(cache.rglob(".*.tmp"))


def _entry_marker(cache: Path) -> Path:
    """The file a training run writes first: the cache entry's config.json."""
    from lossbench.config import RunConfig

    config = RunConfig(depth=8, batch_size=32, epochs=EPOCHS, n_train=256, n_test=64, image_size=16)
    return cache / config.config_hash / "config.json"
