"""Randomised kills: SIGKILL and SIGTERM at seeded random moments during ``surface`` (the CLI) and
during training (the library, in a child process), each followed by the same command; the finished
result must equal an uninterrupted run's bit for bit, and no temporary file may be left behind.

The moments are drawn from a seeded generator, so a failure names a reproducible trial; the whole
file runs in well under a minute on 2 cores (small model, small grid, one thread per process).
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


def _written_since(path: Path, t0: float) -> bool:
    try:
        return path.stat().st_mtime >= t0
    except FileNotFoundError:
        return False


def _kill_at(cmd: list[str], sig: int | None, after: float, *, started: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``; ``after`` seconds after it first writes ``started``, send ``sig`` (so the kill
    lands in the work, not in the import of torch). Returns the result and the seconds from that
    first write to the exit (with ``sig`` None: the length of the work, to place later kills)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not _written_since(started, t0) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    t_work = time.monotonic()
    if sig is not None:
        time.sleep(after)
        if proc.poll() is None:
            proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), time.monotonic() - t_work


def test_surface_killed_at_random_moments_resumes_to_the_uninterrupted_result(own, tmp_path):
    fresh = tmp_path / "fresh.h5"
    done, work = _kill_at(_surface_cmd(own, fresh), None, 0.0, started=fresh)
    assert done.returncode == 0, done.stderr
    expected = load_surface(fresh).values["train_loss"]
    rng = random.Random(12)
    trials = [(signal.SIGKILL, rng.uniform(0.05, 0.45)), (signal.SIGTERM, rng.uniform(0.05, 0.45))]
    out = tmp_path / "killed.h5"
    interrupted = 0
    for sig, fraction in trials:
        # a moment as a fraction of the work still to do (a later trial resumes the earlier one's
        # points), so that it lands in the work on any machine, however fast
        left = 1.0 - (load_surface(out).done.mean() if out.exists() else 0.0)
        r, _ = _kill_at(_surface_cmd(own, out), sig, fraction * left * work, started=out)
        if r.returncode == 0:
            continue  # it finished first: nothing to resume this time
        interrupted += not load_surface(out).done.all()
        if sig == signal.SIGTERM:  # what batch schedulers send: saved and said in one line, exit 143
            assert r.returncode == 143, r.stderr
            assert r.stderr.strip().splitlines()[-1].startswith("terminated (SIGTERM): finished points")
        else:
            assert r.returncode == -signal.SIGKILL
    assert interrupted == len(trials), "a kill came too late to interrupt anything: the trial proves less"
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
    fresh, work = _kill_at([sys.executable, str(script), str(tmp_path / "fresh")], None, 0.0,
                           started=_entry_marker(tmp_path / "fresh"))
    assert fresh.returncode == 0, fresh.stderr
    rng = random.Random(3)
    cache = tmp_path / "killed"
    interrupted = 0
    for sig in (signal.SIGKILL, signal.SIGTERM):
        # config.json is written when a run takes the entry: the kill lands in the training, at a
        # fraction of the epochs still to train (a later trial resumes the earlier one's)
        saved = len(list(_entry_marker(cache).parent.glob("epoch-*.pt"))) - 1  # epoch 0 is the init
        left = 1.0 - max(saved, 0) / EPOCHS
        r, _ = _kill_at([sys.executable, str(script), str(cache)], sig, rng.uniform(0.05, 0.45) * left * work,
                        started=_entry_marker(cache))
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
