"""Calibrate the authors' recipe at the `small` scale: which schedule brings every net to a minimum.

The authors' recipe (``lossbench.config.paper_recipe``: SGD Nesterov 0.9, lr 0.1, weight decay 5e-4,
lr x 0.1 at 50/75/91.7 % of training, Kaiming fan-in convolutions and a N(0, 1e-3^2) readout) left
ResNet-56 without shortcuts near chance for 30-40 epochs at 120 epochs of ``synthetic-hard``. Each
candidate here is a set of changes to the small-scale authors' config; each run records its history
epoch by epoch (``--out``, one JSON line per epoch), so a plateau is seen while the run goes on.

A run is the first part of its full schedule: ``--stop-after N`` stops after N epochs with the run
resumable in the cache (the same config hash as the matrix's, so the chosen candidate's run is the
shipped net's training, continued). Runs are independent; give each core its own:

    python benchmarks/calibrate_recipe.py --out results/recipe.jsonl --run noshort56-e300-w0 --stop-after 40
    python benchmarks/calibrate_recipe.py --out results/recipe.jsonl --table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lossbench.config import SCALES, RunConfig, paper_recipe
from lossbench.train import TRAIN_THREADS, falls, train

_SMALL = SCALES["small"]
_DATA = dict(dataset="synthetic-hard", image_size=16, n_train=4000, n_test=5000)


def candidate(depth: int = 56, shortcut: bool = False, **changes) -> RunConfig:
    """The authors' recipe on the small data (no augmentation: see RESULTS.md), with ``changes``."""
    base = dict(depth=depth, shortcut=shortcut, batch_size=128, augment=False, **_DATA)
    base.update(changes)
    return paper_recipe(**base)


#: name -> config. ``e``: epochs; ``w``: warm-up fraction of all steps in % (0: the authors' none).
CANDIDATES: dict[str, RunConfig] = {
    "noshort56-e120-w5": candidate(epochs=120, warmup=0.05),  # the seed matrix's schedule
    "noshort56-e300-w0": candidate(epochs=300, warmup=0.0),  # the authors' epochs, no warm-up
    "noshort56-e300-w5": candidate(epochs=300, warmup=0.05),
    "noshort56-e300-w0-lr0.01": candidate(epochs=300, warmup=0.0, lr=0.01),  # diagnostic: the lr
    "noshort56-e300-w0-wd0": candidate(epochs=300, warmup=0.0, weight_decay=0.0),  # diagnostic: the decay
    # seed 1 of e300-w5 stayed at chance for 190 epochs (lr 0.1 throughout), and left it only some 40
    # epochs after the first decay: a longer warm-up keeps the net at small steps for longer
    "noshort56-e300-w20": candidate(epochs=300, warmup=0.2),
    # with the 20 % warm-up 4 of 8 seeds on the EPYC fell back to chance at lr 0.1 (and one at 0.01) and
    # never fitted their training set; the nets that reached a minimum did their fitting after the first
    # decay. Half the peak lr halves lr x wd, the rate at which weight decay shrinks the BatchNorm-scaled
    # convolutions and so raises their effective step: the candidate for a recipe that trains every seed
    "noshort56-e300-w20-lr0.05": candidate(epochs=300, warmup=0.2, lr=0.05),
    # at lr 0.05 seed 0 still fell four times (epochs 50, 86, 119, 144), each after its gradient norm had
    # doubled (fall_diagnosis.py: median 1.5-1.6 per 128-image batch in the stable stretches, largest 2.5;
    # 3.6 and 1.8 / 3.9 in the epoch before a fall): a bound at 2.5 caps those steps and hardly any other
    "noshort56-e300-w20-clip2.5": candidate(epochs=300, warmup=0.2, clip_grad_norm=2.5),
    # clip2.5 clipped 13-77 % of a learning net's steps at lr 0.1 (each epoch's largest norm 3-9): a lower
    # lr in disguise. 5 binds less; whether it still caps a fall's steps at lr 0.1 (at 0.05 they reached
    # 3.9-4.9) the history's grad_norm_max and clipped will say
    "noshort56-e300-w20-clip5": candidate(epochs=300, warmup=0.2, clip_grad_norm=5.0),
}


class Stop(Exception):
    """Raised after ``--stop-after`` epochs; the run stays resumable in the cache."""


def run(name: str, out: Path, cache: Path, stop_after: int | None, seed: int = 0) -> None:
    config = CANDIDATES[name].replace(seed=seed)
    name = name if seed == 0 else f"{name}@s{seed}"
    t0 = time.perf_counter()

    def record(epoch: int, row: dict) -> None:
        with open(out, "a") as fh:
            fh.write(json.dumps(dict(candidate=name, config_id=config.config_id, hash=config.config_hash[:12],
                                     **row)) + "\n")
        if stop_after is not None and epoch >= stop_after:
            raise Stop

    try:
        result = train(config, cache_dir=cache, progress=False, on_epoch_end=record)
    except Stop:
        print(f"{name}: stopped after {stop_after} epochs ({time.perf_counter() - t0:.0f} s); resumable", flush=True)
        return
    with open(out, "a") as fh:
        fh.write(json.dumps(dict(candidate=name, config_id=config.config_id, final=result.final)) + "\n")
    print(f"{name}: {result.final}", flush=True)


def table(rows: list[dict]) -> str:
    """One line per candidate: epochs done, the first epoch with train acc > 0.2 (off the plateau), train
    acc (train mode, the epoch's batches) at a few epochs, the falls (:func:`lossbench.train.falls`: first
    epoch of each), the share of steps clipped after the warm-up (with ``clip_grad_norm``; mean / largest
    over its epochs), and the final eval-mode errors when done."""
    out = ["| candidate | epochs run | left chance at epoch | train acc at 20 / 40 / 80 / 150 / 225 / 300 "
           "| falls at epoch | clipped after warm-up | final train / test acc (eval mode) | s / epoch |",
           "|---|---|---|---|---|---|---|---|---|"]
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    for name in sorted(names, key=lambda n: (list(CANDIDATES).index(n.split("@")[0]), n)):
        hist = {r["epoch"]: r for r in rows if r.get("candidate") == name and "epoch" in r}
        if not hist:
            continue
        final = next((r["final"] for r in rows if r.get("candidate") == name and "final" in r), None)
        left = next((e for e in sorted(hist) if hist[e]["train_acc"] > 0.2), None)
        accs = " / ".join(f"{hist[e]['train_acc']:.2f}" if e in hist else "-" for e in (20, 40, 80, 150, 225, 300))
        fin = f"{final['train_acc']:.3f} / {final['test_acc']:.3f}" if final else "-"
        secs = sum(r["seconds"] for r in hist.values()) / len(hist)
        fell = ", ".join(str(first) for first, _ in falls(list(hist.values()))) or "none"
        config = CANDIDATES[name.split("@")[0]]
        warm = config.warmup * config.epochs
        shares = [r["clipped"] for e, r in hist.items() if "clipped" in r and e > warm]
        clip = f"{sum(shares) / len(shares):.3f} / {max(shares):.2f}" if shares else "-"
        out.append(f"| {name} | {max(hist)} | {left or '-'} | {accs} | {fell} | {clip} | {fin} | {secs:.1f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file of epochs (appended)")
    parser.add_argument("--cache", type=Path, default=Path("/work/cache-authors"),
                        help="training cache (resumable; the matrix's training may continue from it)")
    parser.add_argument("--run", choices=list(CANDIDATES), action="append", default=[],
                        help="candidate(s) to train, in order")
    parser.add_argument("--stop-after", type=int, default=None, help="stop each run after this many epochs")
    parser.add_argument("--seed", type=int, default=0, help="training seed of the runs (default 0)")
    parser.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if args.table:
        rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
        print(table(rows))
        return
    torch.set_num_threads(TRAIN_THREADS)
    for name in args.run:
        run(name, args.out, args.cache, args.stop_after, args.seed)


if __name__ == "__main__":
    main()
