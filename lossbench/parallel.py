"""The main job on every core: a queue of nets' studies that the pytest session takes from the front and
its helper processes from the back, each process single-threaded.

The reproduction's nets are independent, and on a CPU two single-threaded processes do more than one
with two threads (a ResNet-20 surface: 10.1 s on one thread, 6.0 s on two). So the session writes one
:class:`Unit` per net it will study into a folder, starts helpers (``python -m lossbench.parallel
FOLDER``), and each test *takes* its net's unit: it computes the unit itself unless a helper claimed it
first, and then waits for the helper's result. A claim is a file created exclusively, so every unit
is computed once; a helper's failure or death leaves the unit to the test, which computes it again and
fails with the real error. The test keeps what it times (the reproduction's first direction pair): a
helper takes the rest of the study (:func:`lossbench.reproduce.study_rest`), or a whole seed net's.

Files in the folder::

    queue.pkl          the units, in the session's test order (pickle: the folder is the session's own)
    <key>.claim        the claiming process's pid
    <key>.result       {"value": ..., "seconds": s, "pid": pid} or {"error": traceback}; written atomically
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

QUEUE_FILE = "queue.pkl"
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Unit:
    """One net's study, as a helper process rebuilds it: the shipped net ``config_id`` of ``scale``
    (``kind``: ``nets`` or ``seed-nets`` under ``baselines_dir``), its data, and ``part``: ``rest``
    (:func:`~lossbench.reproduce.study_rest`: the test times direction pair 0 itself; the pairs its
    baseline stores for these weights beyond the scale's ``pair_check`` are taken as stored unless
    ``all_pairs``) or ``all`` (:func:`~lossbench.reproduce.study_net`)."""

    key: str
    config_id: str
    scale: str
    kind: str
    part: str
    baselines_dir: str
    results_dir: str
    data_dir: str | None = None
    all_pairs: bool = False

    def __post_init__(self) -> None:
        if self.part not in ("rest", "all"):
            raise ValueError(f"part {self.part!r}: 'rest' or 'all'")
        if not self.key or os.sep in self.key or self.key.startswith("."):
            raise ValueError(f"unit key {self.key!r} is not a plain file name")


class StudyQueue:
    """The units of one session in ``folder`` and their claims and results (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def create(cls, folder: str | Path, units: Sequence[Unit]) -> StudyQueue:
        """A new queue of ``units`` (in the order the session reaches them) in the empty ``folder``."""
        keys = [u.key for u in units]
        if len(set(keys)) != len(keys):
            raise ValueError(f"unit keys repeat: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
        queue = cls(folder)
        queue.folder.mkdir(parents=True, exist_ok=True)
        if any(queue.folder.iterdir()):
            raise ValueError(f"{queue.folder} is not empty: a queue needs a folder of its own")
        _write_atomic(queue.folder / QUEUE_FILE, pickle.dumps(list(units)))
        return queue

    def units(self) -> list[Unit]:
        return pickle.loads((self.folder / QUEUE_FILE).read_bytes())

    def claim(self, key: str) -> bool:
        """Whether this process now owns ``key`` (False: another claimed it first)."""
        try:
            fd = os.open(self.folder / f"{key}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True

    def claimant(self, key: str) -> int | None:
        """The pid that claimed ``key`` (None: unclaimed, or the claim is still being written)."""
        try:
            return int((self.folder / f"{key}.claim").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def finish(self, key: str, outcome: dict[str, Any]) -> None:
        _write_atomic(self.folder / f"{key}.result", pickle.dumps(outcome))

    def result(self, key: str) -> dict[str, Any] | None:
        try:
            return pickle.loads((self.folder / f"{key}.result").read_bytes())
        except FileNotFoundError:
            return None


def unit_key(kind: str, config_id: str) -> str:
    """The queue's key of the study of shipped net ``config_id`` of ``kind`` (``nets``, ``seed-nets``)."""
    return f"{kind}--{config_id}"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def compute_unit(unit: Unit) -> Any:
    """A unit's study in this process: (``study_rest``'s or ``study_net``'s record, flat metrics)."""
    import torch

    from .baselines import load_baseline
    from .config import get_scale
    from .data import load_dataset
    from .reference_nets import load_reference
    from .reproduce import stored_pairs, study_net, study_rest

    scale = get_scale(unit.scale)
    net = load_reference(unit.config_id, unit.baselines_dir, unit.scale, kind=unit.kind)
    data = load_dataset(net.config, data_dir=unit.data_dir).to(torch.float32)

    def say(line: str) -> None:
        print(line, flush=True)

    if unit.part == "all":
        return study_net(net.config, scale, net=net, data=data, results_dir=unit.results_dir, progress=False, log=say)
    doc_path = Path(unit.baselines_dir) / unit.scale / f"{unit.config_id}.json"
    stored = {} if unit.all_pairs or not doc_path.exists() else stored_pairs(
        load_baseline(doc_path), weights_sha256=net.state_sha256, scale=scale)
    return study_rest(net.config, scale, net=net, data=data, results_dir=unit.results_dir, stored=stored,
                      progress=False, log=say)


def run_helper(folder: str | Path, *, compute: Callable[[Unit], Any] = compute_unit,
               parent: int | None = None) -> int:
    """Take the queue's units from the back until every one is claimed; returns how many it computed.
    A unit that raises is recorded as an error (the session computes it again) and the helper goes on.
    Stops between units once ``parent`` (the session's pid) is gone."""
    queue = StudyQueue(folder)
    done = 0
    for unit in reversed(queue.units()):
        if parent is not None and os.getppid() != parent:
            break
        if not queue.claim(unit.key):
            continue
        t0 = time.perf_counter()
        try:
            outcome = {"value": compute(unit)}
        except Exception:
            outcome = {"error": traceback.format_exc()}
        outcome.update(seconds=time.perf_counter() - t0, pid=os.getpid())
        queue.finish(unit.key, outcome)
        print(f"{unit.key}: {'error' if 'error' in outcome else 'done'} in {outcome['seconds']:.0f} s", flush=True)
        done += "value" in outcome
    return done


class Helpers:
    """The session's side: the queue and its helper processes. :meth:`take` is the one call a test
    makes; with no helpers (``start`` was not called) it computes everything itself."""

    def __init__(self, queue: StudyQueue | None = None, procs: Sequence[subprocess.Popen] = ()) -> None:
        self.queue = queue
        self.keys = {u.key for u in queue.units()} if queue is not None else set()  # read once, not per take
        self.procs = list(procs)
        self.exits: dict[int, int | None] = {}

    @classmethod
    def start(cls, folder: str | Path, units: Sequence[Unit], count: int, *, log_dir: str | Path,
              compute: str | None = None) -> Helpers:
        """Write the queue and start ``count`` single-threaded helpers (``python -m lossbench.parallel
        FOLDER``), each logging to ``log_dir/helper-<i>.log``; ``compute``: ``module:function`` that
        computes a unit there (default :func:`compute_unit`)."""
        queue = StudyQueue.create(folder, units)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        procs = []
        for i in range(count):
            with open(Path(log_dir) / f"helper-{i}.log", "w") as log:
                cmd = [sys.executable, "-m", "lossbench.parallel", str(queue.folder), "--parent", str(os.getpid())]
                procs.append(subprocess.Popen(cmd + (["--compute", compute] if compute else []), env=env,
                                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return cls(queue, procs)

    def take(self, key: str, here: Callable[[], T], *, say: Callable[[str], None] | None = None,
             label: str | None = None) -> T:
        """The value of unit ``key``: ``here()`` if no helper claimed it first (a key the queue does not
        hold is computed here too), else the helper's, waited for. A helper's error or death is told
        through ``say`` (naming the unit as ``label``) and the unit computed here."""
        say = say or (lambda message: None)
        name = label or key
        if key not in self.keys or self.queue.claim(key):
            return here()
        t0 = time.perf_counter()
        while (outcome := self.queue.result(key)) is None:
            pid = self.queue.claimant(key)
            if pid is not None and not any(p.pid == pid and p.poll() is None for p in self.procs):
                say(f"{name}: the helper process {pid} that took it stopped without a result; computing it here")
                return here()
            time.sleep(POLL_SECONDS)
        if "error" in outcome:
            last = outcome["error"].strip().splitlines()[-1]
            say(f"{name}: the helper process failed ({last}); computing it here")
            return here()
        waited = time.perf_counter() - t0
        say(f"{name}: from helper process {outcome['pid']} ({outcome['seconds']:.0f} s there"
            + (f", {waited:.0f} s waited" if waited >= 1 else "") + ")")
        return outcome["value"]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the helpers (a session that ends early leaves none behind); :meth:`failed` then names
        those that had ended with an error before."""
        self.exits = {p.pid: p.poll() for p in self.procs}
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def failed(self) -> list[tuple[int, int]]:
        """(helper index, exit status) of each helper that had ended with an error when :meth:`stop` ran
        (its units were computed by the session instead)."""
        return [(i, self.exits[p.pid]) for i, p in enumerate(self.procs) if self.exits.get(p.pid) not in (None, 0)]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lossbench.parallel",
        description="A helper of the main job: compute the queue's nets' studies from the back, single-threaded "
                    "(the pytest session starts it; see --lossbench-jobs).")
    parser.add_argument("folder", help="the session's queue folder")
    parser.add_argument("--parent", type=int, default=None, help="stop between units once this pid is gone")
    parser.add_argument("--compute", default=None, metavar="MODULE:FUNCTION",
                        help="what computes a unit (default lossbench.parallel:compute_unit)")
    args = parser.parse_args(argv)
    import importlib

    import torch

    torch.set_num_threads(1)
    compute = compute_unit
    if args.compute:
        module, _, name = args.compute.partition(":")
        compute = getattr(importlib.import_module(module), name)
    done = run_helper(args.folder, compute=compute, parent=args.parent)
    print(f"helper: {done} computed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
