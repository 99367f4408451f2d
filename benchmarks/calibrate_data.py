"""Calibrate the `small` scale's data set: short training runs of a few configs per candidate spec.

Each candidate is a :class:`lossbench.data.SyntheticSpec` plus a training-set size; each run trains one
config of the seed recipe (short schedule, same fractional milestones and warm-up) on it and records
the final eval-mode train/test error. Runs are cached per candidate (resumable) and each finished run is
appended to ``--out`` as one JSON line, so an interrupted calibration picks up where it stopped.

    python benchmarks/calibrate_data.py --out calib.jsonl --worker 0 --workers 2   # one process per core
    python benchmarks/calibrate_data.py --out calib.jsonl --table                  # the markdown table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lossbench.config import seed_recipe
from lossbench.data import SyntheticSpec, make_synthetic
from lossbench.train import TRAIN_THREADS, train

#: name -> (training images, spec). The shipped nets' data (``SyntheticSpec()``, 8000 images) is the
#: reference: 0-0.55 % test error after 60 epochs for all but one net (docs/reproduction.md).
CANDIDATES: dict[str, tuple[int, SyntheticSpec]] = {
    "harder-4000": (4000, SyntheticSpec(size_min=0.16, size_range=0.14, max_angle=25.0, contrast_min=0.15,
                                        contrast_range=0.30, pixel_noise=0.12)),
    "milder-4000": (4000, SyntheticSpec(size_min=0.17, size_range=0.13, max_angle=20.0, contrast_min=0.20,
                                        contrast_range=0.30, pixel_noise=0.10)),
    "labelnoise10-4000": (4000, SyntheticSpec(label_noise=0.10)),
}
#: the configs of each candidate: the easiest to fit, the hardest, and a large batch
RUNS = (dict(depth=20, shortcut=True, batch_size=128), dict(depth=56, shortcut=False, batch_size=128),
        dict(depth=20, shortcut=True, batch_size=2000))
EPOCHS = 24
N_TEST = 2000


def jobs() -> list[tuple[str, dict]]:
    return [(name, run) for name in CANDIDATES for run in RUNS]


def run_one(name: str, run: dict, cache: Path) -> dict:
    n_train, spec = CANDIDATES[name]
    config = seed_recipe(**run, epochs=EPOCHS, warmup=0.05, image_size=16, n_train=n_train, n_test=N_TEST)
    data = make_synthetic(n_train=n_train, n_test=N_TEST, image_size=16, seed=0, spec=spec, name=name)
    t0 = time.perf_counter()
    result = train(config, data=data, cache_dir=cache / name, progress=False)  # the config hash ignores
    # the spec here, so each candidate has a cache of its own
    f = result.final
    return dict(candidate=name, n_train=n_train, spec=spec.__dict__, config=config.config_id, epochs=EPOCHS,
                train_err=1 - f["train_acc"], test_err=1 - f["test_acc"], train_loss=f["train_loss"],
                test_loss=f["test_loss"], seconds=round(time.perf_counter() - t0, 1))


def table(rows: list[dict]) -> str:
    out = ["| candidate | train images | config | train error | test error | train loss |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['candidate']} | {r['n_train']} | {r['config']} | {100 * r['train_err']:.2f} % | "
                   f"{100 * r['test_err']:.2f} % | {r['train_loss']:.3g} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file of finished runs (appended)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/lossbench-calibration"))
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if args.table:
        print(table(done))
        return
    torch.set_num_threads(TRAIN_THREADS)
    finished = {(r["candidate"], r["config"]) for r in done}
    for i, (name, run) in enumerate(jobs()):
        if i % args.workers != args.worker:
            continue
        row = run_one(name, run, args.cache)
        if (name, row["config"]) not in finished:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
